//! Clients that speak the Redis protocol to a node's RESP port, under the nemesis: the port's
//! router (a follower passes writes and linearizable reads to the leader), its answers, and
//! the Redis commands the state machine runs. They share keys of their own (`r0`, `r1`, ...):
//! Redis replies carry no revisions, and writes without one mixed into the native clients'
//! keys made the checker's search explode (a seed gave up after 5,000,000 configurations).
//! The read-back at the end reads them through the native port.
//!
//! A process sends one command at a time and records it as the history's operations: SET as a
//! put, SET NX as a compare-and-set against absence, GET as a linearizable get, DEL as a
//! delete. Redis replies carry no revision or log time; the checker judges such lines by their
//! values and order alone. So no TTLs here: without the log time of each operation, the
//! checker cannot tell whether a deadline had passed (a seed showed a key gone after an
//! unknown PEXPIRE as a violation). Redis TTLs are judged by the named tests instead. An error reply or a lost
//! connection leaves a write's outcome unknown; a refusal before anything happened ("no
//! leader could be reached") is a failure.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::options::pick_weighted;
use super::workload::{new_value, ClientState};
use super::*;

/// The port every simulated node serves the Redis protocol on (when a seed has RESP clients).
pub(super) const RESP_PORT: u16 = 6379;

/// The RESP address of slot `index`.
pub(super) fn resp_endpoint(index: usize) -> SocketAddr {
    SocketAddr::new(node_ip(index), RESP_PORT)
}

/// How long one command may take before the connection is given up (a frozen node): longer
/// than a node waits for a leader (`paxkv_server::router::REQUEST_TIMEOUT`), so that a node
/// cut off from the leader answers with its refusal (a definite failure) before the client
/// gives up on it (an unknown outcome).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(12);

/// A reply, as much of it as the workload reads.
#[derive(Debug, Clone, PartialEq)]
enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

/// One connection and the bytes read past the last reply.
struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Connection {
    async fn open(address: SocketAddr) -> Option<Connection> {
        let stream = tokio::time::timeout(COMMAND_TIMEOUT, TcpStream::connect(address))
            .await
            .ok()?
            .ok()?;
        Some(Connection {
            stream,
            buffer: Vec::new(),
        })
    }

    /// Sends one command and reads its reply; None if the connection failed or timed out.
    async fn call(&mut self, args: &[&[u8]]) -> Option<Reply> {
        let mut frame = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            frame.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            frame.extend_from_slice(arg);
            frame.extend_from_slice(b"\r\n");
        }
        let exchange = async {
            self.stream.write_all(&frame).await.ok()?;
            self.stream.flush().await.ok()?;
            self.reply().await
        };
        tokio::time::timeout(COMMAND_TIMEOUT, exchange).await.ok()?
    }

    async fn reply(&mut self) -> Option<Reply> {
        loop {
            if let Some((reply, used)) = parse(&self.buffer) {
                self.buffer.drain(..used);
                return Some(reply);
            }
            let mut chunk = [0u8; 16 * 1024];
            let read = self.stream.read(&mut chunk).await.ok()?;
            if read == 0 {
                return None;
            }
            self.buffer.extend_from_slice(&chunk[..read]);
        }
    }
}

/// A whole reply at the front of `bytes`, and its length; None if more is needed.
fn parse(bytes: &[u8]) -> Option<(Reply, usize)> {
    let end = bytes.windows(2).position(|pair| pair == b"\r\n")?;
    let line = std::str::from_utf8(&bytes[1..end]).ok()?;
    let after = end + 2;
    match bytes.first()? {
        b'+' => Some((Reply::Simple(line.to_string()), after)),
        b'-' => Some((Reply::Error(line.to_string()), after)),
        b':' => Some((Reply::Integer(line.parse().ok()?), after)),
        b'$' => {
            let length: i64 = line.parse().ok()?;
            if length < 0 {
                return Some((Reply::Bulk(None), after));
            }
            let length = length as usize;
            if bytes.len() < after + length + 2 {
                return None;
            }
            let value = bytes[after..after + length].to_vec();
            Some((Reply::Bulk(Some(value)), after + length + 2))
        }
        b'*' => {
            let count: i64 = line.parse().ok()?;
            let mut items = Vec::new();
            let mut used = after;
            for _ in 0..count.max(0) {
                let (item, length) = parse(&bytes[used..])?;
                items.push(item);
                used += length;
            }
            Some((Reply::Array(items), used))
        }
        _ => Some((Reply::Error(format!("unreadable reply {line}")), after)),
    }
}

/// The name a stored value carries before its padding.
fn name_of(bytes: &[u8]) -> String {
    let name = bytes.split(|byte| *byte == b'#').next().unwrap_or_default();
    String::from_utf8_lossy(name).to_string()
}

/// One RESP client process: pinned to one node like an application given one address, it
/// moves on to the next only when that node cannot be reached.
pub(super) async fn resp_client_loop(
    process: u64,
    first_slot: usize,
    shared: Arc<Shared>,
    workload_end: Duration,
) {
    let mut state = ClientState::new(process);
    let mut slot = first_slot;
    let mut connection: Option<Connection> = None;
    while !shared.done_working(process, workload_end) {
        if connection.is_none() {
            connection = Connection::open(resp_endpoint(slot)).await;
            if connection.is_none() {
                // Unreachable (down, cut off, removed): the next node that is a member.
                slot = next_slot(&shared, slot, first_slot);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        }
        let open = connection.as_mut().expect("opened above");
        let (completed, broken) = operation(open, &mut state, &shared).await;
        if broken {
            // A node that stopped answering: the next one, as an application with a list of
            // addresses would.
            connection = None;
            slot = next_slot(&shared, slot, first_slot);
        }
        // An application between two commands: writes whose outcome is unknown (and whose
        // replies carry no revision) make the checker's search grow fast with their number,
        // so these clients ask less often than the native ones.
        let pause = if broken {
            300
        } else {
            thread_rng().gen_range(5..20)
        };
        tokio::time::sleep(Duration::from_millis(pause)).await;
        if completed {
            shared.note_completed(process);
        }
    }
}

/// The member slot after `slot` (wrapping around), or `first_slot` if none is a member.
fn next_slot(shared: &Shared, slot: usize, first_slot: usize) -> usize {
    let active = shared.active_slots();
    active
        .iter()
        .copied()
        .find(|other| *other > slot)
        .or_else(|| active.first().copied())
        .unwrap_or(first_slot)
}

/// Runs one command and records it; (completed, connection broken).
async fn operation(
    connection: &mut Connection,
    state: &mut ClientState,
    shared: &Shared,
) -> (bool, bool) {
    let options = &shared.options;
    let mut rng = thread_rng();
    let key = format!("r{}", rng.gen_range(0..options.shared_keys));
    let (value, stored) = new_value(state, options);
    let kind = pick_weighted(&options.operation_weights, &mut rng).expect("puts and gets");
    let (args, invoke): (Vec<Vec<u8>>, Value) = match kind {
        OperationKind::Put | OperationKind::Transaction | OperationKind::Lease => (
            vec![b"SET".to_vec(), key.clone().into_bytes(), stored],
            json!({"f": "put", "key": key, "value": value}),
        ),
        OperationKind::CompareAndSet => (
            vec![
                b"SET".to_vec(),
                key.clone().into_bytes(),
                stored,
                b"NX".to_vec(),
            ],
            json!({"f": "cas", "key": key, "value": value, "expected_revision": 0}),
        ),
        OperationKind::Delete => (
            vec![b"DEL".to_vec(), key.clone().into_bytes()],
            json!({"f": "delete", "key": key}),
        ),
        _ => (
            vec![b"GET".to_vec(), key.clone().into_bytes()],
            json!({"f": "get", "key": key, "consistency": "linearizable"}),
        ),
    };
    let f = invoke["f"].as_str().unwrap_or_default().to_string();
    let is_read = f == "get";
    let mut line = invoke;
    line["process"] = json!(state.process);
    line["type"] = json!("invoke");
    line["port"] = json!("resp");
    if let Value::Object(map) = &mut line {
        map.retain(|_, field| !field.is_null());
    }
    shared.record(line);
    let argv: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
    let reply = connection.call(&argv).await;
    let broken = reply.is_none();
    let mut done = match (&f[..], reply) {
        (_, None) if is_read => json!({"type": "fail", "error": "connection lost"}),
        (_, None) => json!({"type": "info", "error": "connection lost"}),
        (_, Some(Reply::Error(error)))
            if is_read || error.contains("no leader could be reached") =>
        {
            json!({"type": "fail", "error": error})
        }
        (_, Some(Reply::Error(error))) => json!({"type": "info", "error": error}),
        ("put", Some(Reply::Simple(ok))) if ok == "OK" => json!({"type": "ok"}),
        ("cas", Some(Reply::Simple(ok))) if ok == "OK" => {
            json!({"type": "ok", "succeeded": true})
        }
        ("cas", Some(Reply::Bulk(None))) => json!({"type": "ok", "succeeded": false}),
        ("delete", Some(Reply::Integer(count))) => {
            json!({"type": "ok", "succeeded": count == 1})
        }
        ("get", Some(Reply::Bulk(Some(bytes)))) => {
            json!({"type": "ok", "value": name_of(&bytes)})
        }
        ("get", Some(Reply::Bulk(None))) => json!({"type": "ok"}),
        (_, Some(other)) => {
            json!({"type": "info", "error": format!("unexpected reply {other:?}")})
        }
    };
    let completed = done["type"] == "ok";
    done["f"] = json!(f);
    done["process"] = json!(state.process);
    shared.record(done);
    (completed, broken)
}
