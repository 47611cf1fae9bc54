//! One RESP connection: commands are read as they arrive and handed on at once (pipelining),
//! and a writer task answers them in the order they came, whatever order they complete in.
//!
//! Order: a connection's writes reach the leader in order (the router keeps it); a read that
//! follows a write on the same connection waits until that write is answered, so it sees it
//! (Redis clients count on reading their own writes, pipelined or not). With READONLY a read
//! is served by the node itself, but never from a state older than the connection's last
//! answer (its revision and log position travel with the read).
//!
//! Memory: one command is at most `COMMAND_BYTES_MAX` (the parser refuses more before it is
//! buffered), and at most `SLOTS_MAX` answers wait; past that the connection stops reading,
//! so a client pipelining a million commands only fills its own socket.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use paxkv_core::kv::redis::{self, Handler};
use paxkv_proto::client::{
    client_request::Body as Request, client_response::Body as Response, Consistency, ErrorCode,
    RedisCommand, RedisRequest, RedisWatch,
};
use paxkv_proto::io::IoError;
use paxkv_proto::resp::{parse_command, Parsed, Protocol, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use super::pubsub::Subscriptions;
use super::Shared;
use crate::router::{Call, Pending};

/// Answers waiting to be written at most; the connection stops reading beyond.
const SLOTS_MAX: usize = 1024;
/// Pub/sub messages waiting to be written at most; a subscriber that does not read loses the
/// newest beyond (Redis disconnects it instead).
pub(super) const PUSHES_MAX: usize = 4096;
/// A request passed to the store (one command, or one EXEC) is at most this large.
const REQUEST_BYTES_MAX: usize = paxkv_proto::CLIENT_FRAME_BYTES_MAX - 64 * 1024;

/// Turns the store's answer into the reply the client gets.
pub(super) type Finish = Box<dyn FnOnce(Response) -> Reply + Send>;

/// An answer in the order the commands came.
pub(super) enum Slot {
    Ready(Reply, Protocol),
    Wait {
        pending: Box<Pending>,
        protocol: Protocol,
        finish: Finish,
        write: bool,
    },
    /// Write what came before, then close (QUIT).
    Close,
}

/// The newest state an answer on this connection came from.
#[derive(Default)]
pub(super) struct Seen {
    revision: AtomicU64,
    applied_index: AtomicU64,
}

/// A MULTI's queue.
#[derive(Default)]
struct Multi {
    queued: Vec<Vec<Vec<u8>>>,
    /// A command failed while queueing: EXEC aborts.
    dirty: bool,
}

pub(super) struct Conn {
    pub(super) shared: Arc<Shared>,
    pub(super) id: u64,
    pub(super) address: String,
    pub(super) protocol: Protocol,
    authenticated: bool,
    pub(super) name: Option<Vec<u8>>,
    multi: Option<Multi>,
    watched: Vec<RedisWatch>,
    pub(super) readonly: bool,
    slots: mpsc::Sender<Slot>,
    writes_submitted: u64,
    writes_done: watch::Receiver<u64>,
    seen: Arc<Seen>,
    pub(super) subscriptions: Subscriptions,
    closing: bool,
}

pub(super) async fn serve(stream: TcpStream, shared: Arc<Shared>) -> Result<(), IoError> {
    let address = stream.peer_addr()?.to_string();
    stream.set_nodelay(true)?;
    let (mut reader, writer) = tokio::io::split(stream);
    let (slots, slot_queue) = mpsc::channel(SLOTS_MAX);
    let (pushes, push_queue) = mpsc::channel(PUSHES_MAX);
    let (done, writes_done) = watch::channel(0u64);
    let seen = Arc::new(Seen::default());
    let writer = tokio::spawn(write_loop(
        writer,
        slot_queue,
        push_queue,
        done,
        seen.clone(),
    ));
    let id = shared.next_connection_id.fetch_add(1, Ordering::Relaxed);
    let mut conn = Conn {
        authenticated: shared.config.password.is_none(),
        subscriptions: Subscriptions::new(pushes),
        shared,
        id,
        address,
        protocol: Protocol::Resp2,
        name: None,
        multi: None,
        watched: Vec::new(),
        readonly: false,
        slots,
        writes_submitted: 0,
        writes_done,
        seen,
        closing: false,
    };
    let mut buffer: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut needed = 1;
    let result = 'connection: loop {
        while buffer.len() >= needed {
            match parse_command(&buffer) {
                Ok(Parsed::Command { arguments, used }) => {
                    buffer.drain(..used);
                    needed = 1;
                    if !arguments.is_empty() {
                        conn.handle(arguments).await;
                    }
                    if conn.closing {
                        break 'connection Ok(());
                    }
                }
                Ok(Parsed::Incomplete { needed: more }) => {
                    needed = more;
                    break;
                }
                Err(error) => {
                    // The stream can no longer be read in step: answer, then close (as Redis).
                    tracing::debug!(address = %conn.address, %error, "closing a RESP connection");
                    conn.reply(Reply::err(error)).await;
                    let _ = conn.slots.send(Slot::Close).await;
                    break 'connection Ok(());
                }
            }
        }
        buffer.reserve(needed.saturating_sub(buffer.len()).clamp(4096, 1 << 20));
        match reader.read_buf(&mut buffer).await {
            Ok(0) => break Ok(()),
            Ok(_) => {}
            Err(error) => break Err(IoError::from(error)),
        }
    };
    conn.clear_subscriptions();
    drop(conn);
    let _ = writer.await;
    result
}

/// Writes the answers in order, and pub/sub messages between them.
async fn write_loop(
    mut writer: tokio::io::WriteHalf<TcpStream>,
    mut slots: mpsc::Receiver<Slot>,
    mut pushes: mpsc::Receiver<(Reply, Protocol)>,
    done: watch::Sender<u64>,
    seen: Arc<Seen>,
) {
    let mut out = Vec::with_capacity(16 * 1024);
    let mut writes_done = 0u64;
    let mut pushes_open = true;
    loop {
        let slot = tokio::select! {
            biased;
            slot = slots.recv() => match slot {
                Some(slot) => slot,
                None => break,
            },
            push = pushes.recv(), if pushes_open => {
                match push {
                    Some((reply, protocol)) => reply.encode(protocol, &mut out),
                    None => pushes_open = false,
                }
                if slots.is_empty() && send(&mut writer, &mut out).await.is_err() {
                    return;
                }
                continue;
            }
        };
        match slot {
            Slot::Ready(reply, protocol) => reply.encode(protocol, &mut out),
            Slot::Wait {
                pending,
                protocol,
                finish,
                write,
            } => {
                let response = pending.answer().await;
                if let Some(header) = response.header() {
                    seen.revision.fetch_max(header.revision, Ordering::Relaxed);
                    seen.applied_index
                        .fetch_max(header.applied_index, Ordering::Relaxed);
                }
                finish(response).encode(protocol, &mut out);
                if write {
                    writes_done += 1;
                    done.send_replace(writes_done);
                }
            }
            Slot::Close => {
                let _ = send(&mut writer, &mut out).await;
                let _ = writer.shutdown().await;
                return;
            }
        }
        if slots.is_empty() && send(&mut writer, &mut out).await.is_err() {
            return;
        }
    }
    let _ = send(&mut writer, &mut out).await;
    let _ = writer.shutdown().await;
}

/// Writes out what is buffered (flushed: under the simulator bytes travel only then).
async fn send(
    writer: &mut tokio::io::WriteHalf<TcpStream>,
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    writer.write_all(out).await?;
    writer.flush().await?;
    out.clear();
    Ok(())
}

/// The reply to a one-command request.
fn single(response: Response) -> Reply {
    match response {
        Response::Redis(mut redis) => match redis.replies.pop() {
            Some(reply) => Reply::from(reply),
            None => Reply::err("the store gave no reply"),
        },
        other => error_reply(other),
    }
}

/// A paxkv error as a Redis error.
pub(super) fn error_reply(response: Response) -> Reply {
    let Response::Error(error) = response else {
        return Reply::err(format!("unexpected answer: {response:?}"));
    };
    let prefix = match ErrorCode::try_from(error.code) {
        Ok(ErrorCode::NotLeader) | Ok(ErrorCode::NoQuorum) => "no leader could be reached: ",
        Ok(ErrorCode::Timeout) => "timeout: ",
        Ok(ErrorCode::OutcomeUnknown) => "outcome unknown: ",
        Ok(ErrorCode::Busy) => "busy: ",
        _ => "",
    };
    Reply::err(format!("{prefix}{}", error.message))
}

fn unix_time_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

pub(super) fn is(arg: &[u8], name: &str) -> bool {
    arg.eq_ignore_ascii_case(name.as_bytes())
}

impl Conn {
    /// Queues a reply that is ready now.
    pub(super) async fn reply(&mut self, reply: Reply) {
        if self
            .slots
            .send(Slot::Ready(reply, self.protocol))
            .await
            .is_err()
        {
            self.closing = true;
        }
    }

    /// Writes what came before, then closes.
    pub(super) async fn close(&mut self) {
        let _ = self.slots.send(Slot::Close).await;
        self.closing = true;
    }

    async fn handle(&mut self, args: Vec<Vec<u8>>) {
        let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
        let name = name.as_str();
        if !self.authenticated && !matches!(name, "auth" | "hello" | "quit" | "reset") {
            return self
                .reply(Reply::Error("NOAUTH Authentication required.".into()))
                .await;
        }
        let spec = match redis::check(&args) {
            Ok(spec) => spec,
            Err(reply) => {
                if let Some(multi) = &mut self.multi {
                    multi.dirty = true;
                }
                return self.reply(Reply::from(reply)).await;
            }
        };
        if self.subscriptions.active()
            && self.protocol == Protocol::Resp2
            && !matches!(
                name,
                "subscribe"
                    | "psubscribe"
                    | "unsubscribe"
                    | "punsubscribe"
                    | "ping"
                    | "quit"
                    | "reset"
            )
        {
            let message = format!(
                "Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / \
                 RESET are allowed in this context"
            );
            return self.reply(Reply::err(message)).await;
        }
        if let Some(multi) = &mut self.multi {
            if !matches!(
                name,
                "exec" | "discard" | "multi" | "watch" | "quit" | "reset"
            ) {
                let reply = match spec.handler {
                    Handler::Port => {
                        multi.dirty = true;
                        Reply::err(format!("{name} inside MULTI is not supported by paxkv"))
                    }
                    _ => {
                        multi.queued.push(args);
                        Reply::Simple("QUEUED".into())
                    }
                };
                return self.reply(reply).await;
            }
        }
        match spec.handler {
            Handler::Port => self.port_command(name, args).await,
            Handler::Read(_) => self.data(args, false).await,
            Handler::Write(_) => self.data(args, true).await,
        }
    }

    /// The consistency of this connection's reads, and the point they must not be older than.
    fn read_point(&self) -> (Consistency, u64, u64) {
        let planted = paxkv_core::planted::active(paxkv_core::planted::Bug::RespReadsStale);
        if self.readonly || planted {
            (
                Consistency::AtLeastRevision,
                self.seen.revision.load(Ordering::Relaxed),
                self.seen.applied_index.load(Ordering::Relaxed),
            )
        } else {
            (Consistency::Linearizable, 0, 0)
        }
    }

    pub(super) fn request(&self, commands: Vec<Vec<Vec<u8>>>) -> RedisRequest {
        let (consistency, min_revision, min_applied_index) = self.read_point();
        RedisRequest {
            commands: commands
                .into_iter()
                .map(|args| RedisCommand { args })
                .collect(),
            watched: Vec::new(),
            unix_time_ms: unix_time_ms(),
            consistency: consistency as i32,
            min_revision,
            min_applied_index,
            transaction: false,
        }
    }

    /// One data command, answered in its turn.
    async fn data(&mut self, args: Vec<Vec<u8>>, write: bool) {
        let request = self.request(vec![args]);
        self.submit(request, write, Box::new(single)).await;
    }

    /// Waits until every write this connection sent is answered (a read after them must see
    /// them).
    pub(super) async fn wait_for_writes(&mut self) {
        let submitted = self.writes_submitted;
        let _ = self.writes_done.wait_for(|done| *done >= submitted).await;
    }

    /// Sends a request on its way and queues its answer.
    pub(super) async fn submit(&mut self, request: RedisRequest, write: bool, finish: Finish) {
        if !write {
            self.wait_for_writes().await;
        }
        let body = Request::Redis(request);
        let size = body.encoded_len();
        if size > REQUEST_BYTES_MAX {
            let message = format!(
                "the request is {size} bytes; paxkv takes at most {REQUEST_BYTES_MAX} in one \
                 command or one EXEC (split it)"
            );
            return self.reply(Reply::err(message)).await;
        }
        let pending = self.shared.router.submit(call(body)).await;
        if write {
            self.writes_submitted += 1;
        }
        let slot = Slot::Wait {
            pending: Box::new(pending),
            protocol: self.protocol,
            finish,
            write,
        };
        if self.slots.send(slot).await.is_err() {
            self.closing = true;
        }
    }

    /// Asks the store and waits for the answer here (for what the connection itself needs
    /// before it goes on: WATCH's revision, SCAN's pages, FLUSHDB's rounds).
    pub(super) async fn ask(&mut self, request: RedisRequest) -> Response {
        self.wait_for_writes().await;
        self.shared
            .router
            .serve(call(Request::Redis(request)))
            .await
    }

    pub(super) fn authenticate(&mut self, user: Option<&[u8]>, password: &[u8]) -> Reply {
        let Some(expected) = &self.shared.config.password else {
            return Reply::err(
                "AUTH <password> called without any password configured for the default user. \
                 Are you sure your configuration is correct?",
            );
        };
        let user_ok = user.is_none_or(|user| user == b"default");
        if user_ok && constant_time_eq(password, expected.as_bytes()) {
            self.authenticated = true;
            Reply::ok()
        } else {
            Reply::Error("WRONGPASS invalid username-password pair or user is disabled.".into())
        }
    }

    pub(super) fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    /// RESET: back to a new connection's state.
    pub(super) fn reset(&mut self) {
        self.protocol = Protocol::Resp2;
        self.authenticated = self.shared.config.password.is_none();
        self.name = None;
        self.multi = None;
        self.watched.clear();
        self.readonly = false;
        self.clear_subscriptions();
    }

    pub(super) fn multi(&mut self) -> Reply {
        if self.multi.is_some() {
            return Reply::err("MULTI calls can not be nested");
        }
        self.multi = Some(Multi::default());
        Reply::ok()
    }

    pub(super) fn discard(&mut self) -> Reply {
        match self.multi.take() {
            None => Reply::err("DISCARD without MULTI"),
            Some(_) => {
                self.watched.clear();
                Reply::ok()
            }
        }
    }

    /// EXEC: the queue as one request, run whole by the state machine; a null array if a
    /// WATCHed key changed.
    pub(super) async fn exec(&mut self) {
        let Some(multi) = self.multi.take() else {
            return self.reply(Reply::err("EXEC without MULTI")).await;
        };
        let watched = std::mem::take(&mut self.watched);
        if multi.dirty {
            let reply =
                Reply::Error("EXECABORT Transaction discarded because of previous errors.".into());
            return self.reply(reply).await;
        }
        if multi.queued.is_empty() && watched.is_empty() {
            return self.reply(Reply::Array(Vec::new())).await;
        }
        let mut request = self.request(multi.queued);
        request.watched = watched;
        request.transaction = true;
        // A transaction reads at the leader, whatever READONLY says: WATCH promises it.
        request.consistency = Consistency::Linearizable as i32;
        if request.commands.is_empty() {
            // Nothing to run, but the watches still decide between an empty array and null.
            request.commands.push(RedisCommand {
                args: vec![b"exists".to_vec(), request.watched[0].key.clone()],
            });
            let finish: Finish = Box::new(|response| match response {
                Response::Redis(redis) if redis.aborted => Reply::NullArray,
                Response::Redis(_) => Reply::Array(Vec::new()),
                other => error_reply(other),
            });
            return self.submit(request, false, finish).await;
        }
        let write = !redis::is_read_only(&request);
        let finish: Finish = Box::new(|response| match response {
            Response::Redis(redis) if redis.aborted => Reply::NullArray,
            Response::Redis(redis) => {
                Reply::Array(redis.replies.into_iter().map(Reply::from).collect())
            }
            other => error_reply(other),
        });
        self.submit(request, write, finish).await;
    }

    /// WATCH: remembers the revision the keys are at now (read at the leader).
    pub(super) async fn watch(&mut self, keys: &[Vec<u8>]) -> Reply {
        if self.multi.is_some() {
            return Reply::err("WATCH inside MULTI is not allowed");
        }
        let mut request = self.request(vec![std::iter::once(b"exists".to_vec())
            .chain(keys.iter().cloned())
            .collect()]);
        request.consistency = Consistency::Linearizable as i32;
        match self.ask(request).await {
            Response::Redis(redis) => {
                let revision = redis.header.map_or(0, |header| header.revision);
                for key in keys {
                    self.watched.push(RedisWatch {
                        key: key.clone(),
                        mod_revision: revision,
                    });
                }
                Reply::ok()
            }
            other => error_reply(other),
        }
    }

    pub(super) fn unwatch(&mut self) -> Reply {
        self.watched.clear();
        Reply::ok()
    }
}

fn call(body: Request) -> Call {
    Call {
        client_id: 0,
        sequence: 0,
        body: Some(body),
        forwarded: false,
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
