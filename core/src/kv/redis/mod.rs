//! Redis commands on the store: the one table of every command the RESP port knows, and how
//! each reads or changes the state. Commands that change something are applied from the log
//! like every other write, so a read-modify-write (INCR, APPEND, HSET, MSETNX, a MULTI / EXEC)
//! is one atomic step on every replica, never a loop in the port; commands that only read are
//! served as reads, at the consistency the request asks.
//!
//! A request is one command or the commands of one EXEC (`RedisRequest`); each command gets a
//! reply in RESP3's terms (`RedisReply`), which the port writes in the connection's protocol.
//! Errors carry Redis's own strings. Typed values: `value` (a type tag on the stored key).
//! Time: TTLs are log time like every TTL in paxkv. Absolute Unix times (EXPIREAT, PXAT,
//! EXPIRETIME) convert through an offset between Unix time and log time that the store keeps:
//! a write sets it from the wall clock of the node that received it (`unix_time_ms`, fixed in
//! the request so every replica converts alike) when it is unset or off by more than
//! `UNIX_OFFSET_SLACK_MS`. So a deadline given as Unix time reads back exactly, and stays
//! within that slack of the receiving nodes' clocks.

mod args;
pub mod glob;
mod hashes;
mod keys;
mod strings;
pub mod value;

use paxkv_proto::client::{
    client_response::Body as Response, redis_reply::Kind, ErrorCode, RedisNull, RedisReplies,
    RedisReply, RedisRequest, RedisResponse, ValueType,
};
use paxkv_proto::KEY_BYTES_MAX;

use super::errors::error_response;
use super::{KeyLease, KvStore, StoredValue, Ttl};

/// Commands in one request (one EXEC) at most.
pub const COMMANDS_PER_REQUEST_MAX: usize = 10_000;
/// How far the store's Unix offset may drift from a writer's clock before it is set anew.
pub const UNIX_OFFSET_SLACK_MS: i64 = 1000;
/// Bytes a read that lists keys (KEYS) answers at most; SCAN pages through more.
pub const LIST_BYTES_MAX: usize = 1024 * 1024;

type Args = [Vec<u8>];
type ReadFn = fn(&KvStore, &Args, &Context) -> RedisReply;
type WriteFn = fn(&mut KvStore, &Args, &Context) -> RedisReply;

/// What a command needs besides the store.
pub struct Context {
    /// The serving node's wall clock when the request arrived (Unix ms).
    pub unix_time_ms: u64,
    /// Unix time minus log time, to convert absolute times.
    unix_offset_ms: i64,
}

impl Context {
    fn of(kv: &KvStore, request: &RedisRequest) -> Context {
        let offset = match kv.unix_offset_ms {
            0 => i64::try_from(request.unix_time_ms).unwrap_or(i64::MAX) - kv.log_time_ms as i64,
            set => set,
        };
        Context {
            unix_time_ms: request.unix_time_ms,
            unix_offset_ms: offset,
        }
    }
}

/// Who serves a command.
pub enum Handler {
    /// The RESP port itself: connection state, transactions, pub/sub, server information.
    Port,
    /// A read of the store.
    Read(ReadFn),
    /// A change of the store, applied from the log.
    Write(WriteFn),
}

/// One command: its name, its arity as Redis counts it (the name included; negative: at
/// least that many) and where its keys are (for COMMAND's answer).
pub struct Spec {
    pub name: &'static str,
    pub arity: i32,
    pub handler: Handler,
    pub first_key: i32,
    pub last_key: i32,
    pub step: i32,
}

const fn port(name: &'static str, arity: i32) -> Spec {
    Spec {
        name,
        arity,
        handler: Handler::Port,
        first_key: 0,
        last_key: 0,
        step: 0,
    }
}

const fn read(name: &'static str, arity: i32, keys: (i32, i32, i32), run: ReadFn) -> Spec {
    Spec {
        name,
        arity,
        handler: Handler::Read(run),
        first_key: keys.0,
        last_key: keys.1,
        step: keys.2,
    }
}

const fn write(name: &'static str, arity: i32, keys: (i32, i32, i32), run: WriteFn) -> Spec {
    Spec {
        name,
        arity,
        handler: Handler::Write(run),
        first_key: keys.0,
        last_key: keys.1,
        step: keys.2,
    }
}

const ONE: (i32, i32, i32) = (1, 1, 1);
const ALL: (i32, i32, i32) = (1, -1, 1);
const PAIRS: (i32, i32, i32) = (1, -1, 2);
const TWO: (i32, i32, i32) = (1, 2, 1);
const NONE: (i32, i32, i32) = (0, 0, 0);

/// Every command paxkv's RESP port serves. Anything else is an unknown command.
pub static COMMANDS: &[Spec] = &[
    // Connection, server and transactions: the port's own.
    port("ping", -1),
    port("echo", 2),
    port("hello", -1),
    port("auth", -2),
    port("select", 2),
    port("client", -2),
    port("quit", -1),
    port("reset", 1),
    port("command", -1),
    port("info", -1),
    port("config", -2),
    port("readonly", 1),
    port("readwrite", 1),
    port("multi", 1),
    port("exec", 1),
    port("discard", 1),
    port("watch", -2),
    port("unwatch", 1),
    port("subscribe", -2),
    port("unsubscribe", -1),
    port("psubscribe", -2),
    port("punsubscribe", -1),
    port("publish", 3),
    port("scan", -2),
    port("flushdb", -1),
    port("flushall", -1),
    // Strings.
    read("get", 2, ONE, strings::get),
    write("set", -3, ONE, strings::set),
    write("setnx", 3, ONE, strings::setnx),
    write("setex", 4, ONE, strings::setex),
    write("psetex", 4, ONE, strings::psetex),
    write("getset", 3, ONE, strings::getset),
    write("getdel", 2, ONE, strings::getdel),
    write("getex", -2, ONE, strings::getex),
    read("mget", -2, ALL, strings::mget),
    write("mset", -3, PAIRS, strings::mset),
    write("msetnx", -3, PAIRS, strings::msetnx),
    write("incr", 2, ONE, strings::incr),
    write("incrby", 3, ONE, strings::incrby),
    write("decr", 2, ONE, strings::decr),
    write("decrby", 3, ONE, strings::decrby),
    write("incrbyfloat", 3, ONE, strings::incrbyfloat),
    write("append", 3, ONE, strings::append),
    read("strlen", 2, ONE, strings::strlen),
    read("getrange", 4, ONE, strings::getrange),
    read("substr", 4, ONE, strings::getrange),
    write("setrange", 4, ONE, strings::setrange),
    // Keys.
    write("del", -2, ALL, keys::del),
    write("unlink", -2, ALL, keys::del),
    read("exists", -2, ALL, keys::exists),
    read("type", 2, ONE, keys::key_type),
    write("expire", -3, ONE, keys::expire),
    write("pexpire", -3, ONE, keys::pexpire),
    write("expireat", -3, ONE, keys::expireat),
    write("pexpireat", -3, ONE, keys::pexpireat),
    read("ttl", 2, ONE, keys::ttl),
    read("pttl", 2, ONE, keys::pttl),
    read("expiretime", 2, ONE, keys::expiretime),
    read("pexpiretime", 2, ONE, keys::pexpiretime),
    write("persist", 2, ONE, keys::persist),
    write("rename", 3, TWO, keys::rename),
    write("renamenx", 3, TWO, keys::renamenx),
    write("copy", -3, TWO, keys::copy),
    read("keys", 2, NONE, keys::keys),
    read("dbsize", 1, NONE, keys::dbsize),
    read("randomkey", 1, NONE, keys::randomkey),
    // The port's SCAN and FLUSHDB, in pages the port drives (see `keys`).
    read("paxkv.scan", -3, NONE, keys::scan_page),
    write("paxkv.flush", 1, NONE, keys::flush_page),
    // Hashes.
    write("hset", -4, ONE, hashes::hset),
    write("hmset", -4, ONE, hashes::hmset),
    write("hsetnx", 4, ONE, hashes::hsetnx),
    read("hget", 3, ONE, hashes::hget),
    read("hmget", -3, ONE, hashes::hmget),
    read("hgetall", 2, ONE, hashes::hgetall),
    write("hdel", -3, ONE, hashes::hdel),
    read("hexists", 3, ONE, hashes::hexists),
    write("hincrby", 4, ONE, hashes::hincrby),
    write("hincrbyfloat", 4, ONE, hashes::hincrbyfloat),
    read("hlen", 2, ONE, hashes::hlen),
    read("hkeys", 2, ONE, hashes::hkeys),
    read("hvals", 2, ONE, hashes::hvals),
    read("hstrlen", 3, ONE, hashes::hstrlen),
    read("hscan", -3, ONE, hashes::hscan),
];

/// The command named `name` (any case). Looked up in an index of the table: every command
/// is checked several times on its way (the port, routing, proposing, applying).
pub fn spec(name: &[u8]) -> Option<&'static Spec> {
    static INDEX: std::sync::OnceLock<std::collections::BTreeMap<&'static [u8], &'static Spec>> =
        std::sync::OnceLock::new();
    let mut lower = [0u8; NAME_BYTES_MAX];
    let lower = lower.get_mut(..name.len())?;
    lower.copy_from_slice(name);
    lower.make_ascii_lowercase();
    let index = INDEX.get_or_init(|| {
        COMMANDS
            .iter()
            .map(|spec| (spec.name.as_bytes(), spec))
            .collect()
    });
    index.get(&*lower).copied()
}

/// Bytes of the longest command name there could be (longer names are unknown at once).
const NAME_BYTES_MAX: usize = 32;

/// The command `args` calls, if it is known and has a valid number of arguments; otherwise
/// Redis's error for it (what EXEC aborts for when it happened while queueing).
pub fn check(args: &[Vec<u8>]) -> Result<&'static Spec, RedisReply> {
    let Some(name) = args.first() else {
        return Err(error("ERR empty command"));
    };
    let Some(spec) = spec(name) else {
        let mut message = format!(
            "ERR unknown command '{}', with args beginning with: ",
            lossy(name, 128)
        );
        for arg in &args[1..] {
            message.push_str(&format!("'{}' ", lossy(arg, 128)));
        }
        return Err(error(message));
    };
    let count = args.len() as i32;
    let fits = if spec.arity >= 0 {
        count == spec.arity
    } else {
        count >= -spec.arity
    };
    if !fits {
        return Err(wrong_arguments(spec.name));
    }
    Ok(spec)
}

fn lossy(bytes: &[u8], limit: usize) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(limit)]).into_owned()
}

pub fn wrong_arguments(name: &str) -> RedisReply {
    error(format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

/// True if every command of the request only reads: it is served as a read.
pub fn is_read_only(request: &RedisRequest) -> bool {
    request.commands.iter().all(|command| {
        matches!(
            check(&command.args).map(|spec| &spec.handler),
            Ok(Handler::Read(_))
        )
    })
}

/// Refuses a request no replica would run: empty, too many commands, or a command the port
/// serves itself or does not know. (A command that fails its own checks is answered with its
/// error; only the request's shape is refused here.)
#[allow(clippy::result_large_err)] // the error is the answer itself
pub fn validate(request: &RedisRequest) -> Result<(), Response> {
    let refuse = |message: String| Err(error_response(ErrorCode::BadRequest, message));
    if request.commands.is_empty() {
        return refuse("a Redis request needs at least one command".into());
    }
    if request.commands.len() > COMMANDS_PER_REQUEST_MAX {
        return refuse(format!(
            "a Redis request carries {} commands; the limit is {COMMANDS_PER_REQUEST_MAX}",
            request.commands.len()
        ));
    }
    for command in &request.commands {
        match check(&command.args) {
            Err(reply) => return refuse(reply_text(&reply)),
            Ok(spec) if matches!(spec.handler, Handler::Port) => {
                return refuse(format!(
                    "{} is served by the RESP port, not the store",
                    spec.name
                ))
            }
            Ok(_) => {}
        }
    }
    Ok(())
}

fn reply_text(reply: &RedisReply) -> String {
    match &reply.kind {
        Some(Kind::Error(text)) | Some(Kind::Simple(text)) => text.clone(),
        other => format!("{other:?}"),
    }
}

/// Serves a request that only reads (`is_read_only`).
pub fn answer(kv: &KvStore, request: &RedisRequest) -> Response {
    let context = Context::of(kv, request);
    if kv.watch_broken(request) {
        return kv.aborted();
    }
    let replies = request
        .commands
        .iter()
        .map(|command| match check(&command.args) {
            Ok(Spec {
                handler: Handler::Read(run),
                ..
            }) => run(kv, &command.args, &context),
            Ok(_) => error("ERR this command changes the store; it cannot be served as a read"),
            Err(reply) => reply,
        })
        .collect();
    Response::Redis(RedisResponse {
        header: kv.header(),
        replies,
        aborted: false,
    })
}

impl KvStore {
    /// Applies a request from the log: every command in order, each with its own revision,
    /// all within one entry (nothing else runs between them, on any replica).
    pub(super) fn redis(&mut self, request: &RedisRequest) -> Response {
        if request.unix_time_ms != 0 {
            let offset =
                i64::try_from(request.unix_time_ms).unwrap_or(i64::MAX) - self.log_time_ms as i64;
            if self.unix_offset_ms == 0
                || (offset - self.unix_offset_ms).abs() > UNIX_OFFSET_SLACK_MS
            {
                self.unix_offset_ms = offset;
            }
        }
        let context = Context::of(self, request);
        if self.watch_broken(request) {
            return self.aborted();
        }
        let replies = request
            .commands
            .iter()
            .map(|command| match check(&command.args) {
                Ok(Spec {
                    handler: Handler::Read(run),
                    ..
                }) => run(self, &command.args, &context),
                Ok(Spec {
                    handler: Handler::Write(run),
                    ..
                }) => run(self, &command.args, &context),
                Ok(_) => error("ERR this command is served by the RESP port"),
                Err(reply) => reply,
            })
            .collect();
        Response::Redis(RedisResponse {
            header: self.header(),
            replies,
            aborted: false,
        })
    }

    fn aborted(&self) -> Response {
        Response::Redis(RedisResponse {
            header: self.header(),
            replies: Vec::new(),
            aborted: true,
        })
    }

    /// True if a key the request WATCHes changed after the revision WATCH saw: the history
    /// shows a change of it since (a write, a delete, an expiry, a new deadline: whatever
    /// Redis counts as touching it). If the history no longer reaches back that far, a key
    /// still there counts as changed if its mod revision is newer, and a key gone as changed
    /// (nothing can be said, and changed is the safe answer: the client retries).
    fn watch_broken(&self, request: &RedisRequest) -> bool {
        request.watched.iter().any(|watch| {
            let seen = watch.mod_revision;
            if seen >= self.history_first_revision() {
                return self
                    .history
                    .since(seen)
                    .any(|change| change.key() == watch.key.as_slice());
            }
            self.live(&watch.key)
                .is_none_or(|stored| stored.mod_revision() > seen)
        })
    }

    /// The key's stored value if it is a string; WRONGTYPE if it is another type.
    fn string_value(&self, key: &[u8]) -> Result<Option<&StoredValue>, RedisReply> {
        match self.live(key) {
            None => Ok(None),
            Some(stored) if stored.value_type() == ValueType::String => Ok(Some(stored)),
            Some(_) => Err(wrong_type()),
        }
    }

    /// Gives `key` (which exists) the deadline `expires_at_ms` of log time (0: none); a
    /// deadline already past deletes it.
    fn set_deadline(&mut self, key: &[u8], expires_at_ms: u64) {
        if expires_at_ms != 0 && expires_at_ms <= self.log_time_ms {
            self.delete_key(key);
            return;
        }
        self.take_revision();
        self.set_key_deadline(key, expires_at_ms);
    }

    /// Log time at the Unix time `unix_ms` (the current log time if that is past).
    fn log_time_at(&self, unix_ms: i128, context: &Context) -> u64 {
        let at = (unix_ms - i128::from(context.unix_offset_ms)).max(i128::from(self.log_time_ms));
        u64::try_from(at).unwrap_or(u64::MAX)
    }

    /// Unix time (ms) at the log time `log_ms`.
    fn unix_time_at(&self, log_ms: u64, context: &Context) -> i64 {
        let at = i128::from(log_ms) + i128::from(context.unix_offset_ms);
        i64::try_from(at).unwrap_or(i64::MAX)
    }
}

/// Checks a key as paxkv stores keys (Redis allows empty keys; paxkv does not).
fn valid_key(key: &[u8]) -> Result<(), RedisReply> {
    if key.is_empty() {
        return Err(error(
            "ERR empty keys are not supported: a key needs at least one byte",
        ));
    }
    if key.len() > KEY_BYTES_MAX {
        return Err(error(format!(
            "ERR the key has {} bytes; paxkv's limit is {KEY_BYTES_MAX}",
            key.len()
        )));
    }
    Ok(())
}

/// Checks a value's size against what one key holds.
fn valid_size(bytes: usize) -> Result<(), RedisReply> {
    if bytes > paxkv_proto::VALUE_BYTES_MAX {
        return Err(error(
            "ERR string exceeds maximum allowed size (paxkv stores at most 1 MiB per key)",
        ));
    }
    Ok(())
}

// Replies.

pub(crate) fn reply(kind: Kind) -> RedisReply {
    RedisReply { kind: Some(kind) }
}

pub(crate) fn ok() -> RedisReply {
    reply(Kind::Simple("OK".into()))
}

pub(crate) fn simple(text: &str) -> RedisReply {
    reply(Kind::Simple(text.into()))
}

pub(crate) fn error(text: impl Into<String>) -> RedisReply {
    reply(Kind::Error(text.into()))
}

pub(crate) fn integer(value: i64) -> RedisReply {
    reply(Kind::Integer(value))
}

pub(crate) fn flag(value: bool) -> RedisReply {
    integer(i64::from(value))
}

pub(crate) fn bulk(bytes: impl Into<Vec<u8>>) -> RedisReply {
    reply(Kind::Bulk(bytes.into()))
}

pub(crate) fn null() -> RedisReply {
    reply(Kind::Null(RedisNull {}))
}

pub(crate) fn array(items: Vec<RedisReply>) -> RedisReply {
    reply(Kind::Array(RedisReplies { items }))
}

pub(crate) fn map(items: Vec<RedisReply>) -> RedisReply {
    reply(Kind::Map(RedisReplies { items }))
}

pub(crate) fn wrong_type() -> RedisReply {
    error("WRONGTYPE Operation against a key holding the wrong kind of value")
}

pub(crate) fn syntax_error() -> RedisReply {
    error("ERR syntax error")
}

/// Returns the error reply from the enclosing command.
macro_rules! attempt {
    ($result:expr) => {
        match $result {
            Ok(value) => value,
            Err(reply) => return reply,
        }
    };
}
pub(crate) use attempt;

#[cfg(test)]
mod tests;
