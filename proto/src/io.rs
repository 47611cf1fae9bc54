//! Frames on async byte streams: read one message, write one message (flushed, so it leaves
//! at once, also under the simulator).

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::frame::{FrameCodec, FrameError};

#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    #[error("connection closed")]
    Closed,
}

/// Reads frames from one stream, keeping what arrived beyond the current frame.
pub struct FrameReader<R> {
    stream: R,
    codec: FrameCodec,
    buffer: BytesMut,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(stream: R, codec: FrameCodec) -> FrameReader<R> {
        FrameReader {
            stream,
            codec,
            buffer: BytesMut::with_capacity(8 * 1024),
        }
    }

    /// The next message; `IoError::Closed` once the other side closed between frames.
    pub async fn read<M: prost::Message + Default>(&mut self) -> Result<M, IoError> {
        loop {
            if let Some(message) = self.codec.decode(&mut self.buffer)? {
                return Ok(message);
            }
            if self.stream.read_buf(&mut self.buffer).await? == 0 {
                return Err(if self.buffer.is_empty() {
                    IoError::Closed
                } else {
                    IoError::Io(std::io::ErrorKind::UnexpectedEof.into())
                });
            }
        }
    }
}

/// Bytes of frames gathered for one write before it goes out.
pub const WRITE_BATCH_BYTES: usize = 256 * 1024;

/// Writes `first` and, in the same write, the messages `more` has ready at once (until it
/// returns `None` or about [`WRITE_BATCH_BYTES`] are gathered), then flushes: a burst of
/// answers or replication messages costs one system call, not one each.
pub async fn write_frames<W: AsyncWrite + Unpin, M: prost::Message>(
    stream: &mut W,
    codec: &FrameCodec,
    first: &M,
    mut more: impl FnMut() -> Option<M>,
) -> Result<(), IoError> {
    let mut buffer = BytesMut::new();
    codec.encode(first, &mut buffer)?;
    while buffer.len() < WRITE_BATCH_BYTES {
        let Some(message) = more() else { break };
        codec.encode(&message, &mut buffer)?;
    }
    stream.write_all(&buffer).await?;
    stream.flush().await?;
    Ok(())
}

/// Writes one message as a frame and flushes it.
pub async fn write_frame<W: AsyncWrite + Unpin, M: prost::Message>(
    stream: &mut W,
    codec: &FrameCodec,
    message: &M,
) -> Result<(), IoError> {
    write_frames(stream, codec, message, || None).await
}
