//! Accepting connections with a bound on how many are open at once.

use std::future::Future;
use std::sync::Arc;

use paxkv_proto::io::IoError;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Accepts connections until `shutdown` turns true, serving each in its own task; beyond
/// `connections_max` open at once, new ones are refused (closed) and logged.
pub async fn accept_bounded<F, Fut>(
    listener: TcpListener,
    connections_max: usize,
    what: &'static str,
    shutdown: crate::shutdown::Shutdown,
    serve: F,
) where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = Result<(), IoError>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(connections_max));
    loop {
        let accepted = tokio::select! {
            biased;
            accepted = listener.accept() => accepted,
            _ = shutdown.stopped() => return,
        };
        let Ok((stream, remote)) = accepted else {
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%remote, "too many {what} connections; refusing one");
            continue;
        };
        let connection = serve(stream);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%remote, %error, "{what} connection ended");
            }
            drop(permit);
        });
    }
}
