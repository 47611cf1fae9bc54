//! The commands applied the way the log applies them, one entry per request.

use paxkv_proto::client::{RedisCommand, RedisWatch};
use paxkv_proto::peer::{command::Op, entry::Kind as EntryKind, Command, Entry};
use paxkv_proto::resp::{Protocol, Reply};

use super::*;

struct Store {
    kv: KvStore,
    index: u64,
    log_time_ms: u64,
    /// Unix time is log time plus this.
    unix_offset_ms: u64,
}

fn request(commands: &[&[&str]]) -> RedisRequest {
    RedisRequest {
        commands: commands
            .iter()
            .map(|args| RedisCommand {
                args: args.iter().map(|arg| arg.as_bytes().to_vec()).collect(),
            })
            .collect(),
        ..RedisRequest::default()
    }
}

/// A reply as redis-cli's raw RESP2 would show it, for short assertions.
fn text(reply: RedisReply) -> String {
    String::from_utf8_lossy(&Reply::from(reply).to_bytes(Protocol::Resp2)).into_owned()
}

impl Store {
    fn new() -> Store {
        Store {
            kv: KvStore::new(),
            index: 0,
            log_time_ms: 1_000,
            unix_offset_ms: 1_700_000_000_000,
        }
    }

    /// Applies the request as one log entry (reads too, as inside an EXEC).
    fn apply_request(&mut self, mut request: RedisRequest) -> RedisResponse {
        request.unix_time_ms = self.log_time_ms + self.unix_offset_ms;
        self.index += 1;
        let entry = Entry {
            log_time_ms: self.log_time_ms,
            kind: Some(EntryKind::Command(Command {
                client_id: 0,
                sequence: 0,
                op: Some(Op::Redis(request)),
            })),
        };
        match self.kv.apply(self.index, &entry) {
            Some(Response::Redis(response)) => response,
            other => panic!("{other:?}"),
        }
    }

    /// One command, applied; its reply as RESP2 text.
    fn run(&mut self, args: &[&str]) -> String {
        let response = self.apply_request(request(&[args]));
        text(response.replies.into_iter().next().unwrap())
    }

    /// One command served as a read.
    fn read(&self, args: &[&str]) -> String {
        let mut request = request(&[args]);
        request.unix_time_ms = self.log_time_ms + self.unix_offset_ms;
        assert!(is_read_only(&request), "{args:?}");
        match answer(&self.kv, &request) {
            Response::Redis(response) => text(response.replies.into_iter().next().unwrap()),
            other => panic!("{other:?}"),
        }
    }

    fn pass(&mut self, ms: u64) {
        self.log_time_ms += ms;
        self.run(&["get", "tick"]);
    }
}

#[test]
fn strings_answer_as_redis_does() {
    let mut s = Store::new();
    assert_eq!(s.run(&["SET", "k", "v"]), "+OK\r\n");
    assert_eq!(s.read(&["get", "k"]), "$1\r\nv\r\n");
    assert_eq!(s.run(&["set", "k", "w", "NX"]), "$-1\r\n");
    assert_eq!(s.run(&["set", "k", "w", "XX", "GET"]), "$1\r\nv\r\n");
    assert_eq!(s.run(&["set", "new", "w", "XX"]), "$-1\r\n");
    assert_eq!(
        s.run(&["set", "k", "w", "NX", "XX"]),
        "-ERR syntax error\r\n"
    );
    assert_eq!(
        s.run(&["set", "k", "w", "EX", "0"]),
        "-ERR invalid expire time in 'set' command\r\n"
    );
    assert_eq!(
        s.run(&["set", "k", "w", "EX", "x"]),
        "-ERR value is not an integer or out of range\r\n"
    );
    assert_eq!(s.run(&["incr", "n"]), ":1\r\n");
    assert_eq!(s.run(&["incrby", "n", "41"]), ":42\r\n");
    assert_eq!(s.run(&["decrby", "n", "2"]), ":40\r\n");
    assert_eq!(
        s.run(&["incr", "k"]),
        "-ERR value is not an integer or out of range\r\n"
    );
    s.run(&["set", "big", "9223372036854775807"]);
    assert_eq!(
        s.run(&["incr", "big"]),
        "-ERR increment or decrement would overflow\r\n"
    );
    assert_eq!(s.run(&["incrbyfloat", "f", "10.5"]), "$4\r\n10.5\r\n");
    assert_eq!(s.run(&["incrbyfloat", "f", "0.1"]), "$4\r\n10.6\r\n");
    assert_eq!(s.run(&["incrbyfloat", "g", "5.0e3"]), "$4\r\n5000\r\n");
    assert_eq!(s.run(&["append", "a", "Hello"]), ":5\r\n");
    assert_eq!(s.run(&["append", "a", " World"]), ":11\r\n");
    assert_eq!(s.read(&["strlen", "a"]), ":11\r\n");
    assert_eq!(s.read(&["getrange", "a", "0", "4"]), "$5\r\nHello\r\n");
    assert_eq!(s.read(&["getrange", "a", "-5", "-1"]), "$5\r\nWorld\r\n");
    assert_eq!(s.read(&["getrange", "a", "5", "2"]), "$0\r\n\r\n");
    assert_eq!(s.run(&["setrange", "r", "3", "ab"]), ":5\r\n");
    assert_eq!(s.read(&["get", "r"]), "$5\r\n\0\0\0ab\r\n");
    assert_eq!(
        s.run(&["setrange", "r", "-1", "x"]),
        "-ERR offset is out of range\r\n"
    );
    assert_eq!(s.run(&["getset", "k", "z"]), "$1\r\nw\r\n");
    assert_eq!(s.run(&["getdel", "k"]), "$1\r\nz\r\n");
    assert_eq!(s.read(&["exists", "k", "a", "a"]), ":2\r\n");
    assert_eq!(s.run(&["setnx", "k", "1"]), ":1\r\n");
    assert_eq!(s.run(&["setnx", "k", "2"]), ":0\r\n");
    assert_eq!(
        s.read(&["mget", "k", "nothing", "a"]),
        "*3\r\n$1\r\n1\r\n$-1\r\n$11\r\nHello World\r\n"
    );
}

#[test]
fn msetnx_sets_all_or_nothing_and_mset_checks_its_pairs() {
    let mut s = Store::new();
    assert_eq!(s.run(&["msetnx", "x", "1", "y", "2"]), ":1\r\n");
    assert_eq!(s.run(&["msetnx", "z", "3", "y", "4"]), ":0\r\n");
    assert_eq!(s.read(&["exists", "z"]), ":0\r\n");
    assert_eq!(s.read(&["get", "y"]), "$1\r\n2\r\n");
    assert_eq!(
        s.run(&["mset", "a", "1", "b"]),
        "-ERR wrong number of arguments for 'mset' command\r\n"
    );
    assert_eq!(
        s.read(&["exists", "a"]),
        ":0\r\n",
        "nothing of a bad MSET applies"
    );
}

#[test]
fn ttls_follow_log_time_and_absolute_times_convert_through_the_request_clock() {
    let mut s = Store::new();
    s.run(&["set", "k", "v", "PX", "500"]);
    assert_eq!(s.read(&["pttl", "k"]), ":500\r\n");
    assert_eq!(s.read(&["ttl", "k"]), ":1\r\n");
    let unix_deadline = s.log_time_ms + s.unix_offset_ms + 500;
    assert_eq!(
        s.read(&["pexpiretime", "k"]),
        format!(":{unix_deadline}\r\n")
    );
    // INCR-like changes keep the TTL; KEEPTTL keeps it; a plain SET clears it.
    s.run(&["append", "k", "w"]);
    assert_eq!(s.read(&["pttl", "k"]), ":500\r\n");
    s.run(&["set", "k", "x", "KEEPTTL"]);
    assert_eq!(s.read(&["pttl", "k"]), ":500\r\n");
    s.pass(499);
    assert_eq!(s.read(&["get", "k"]), "$1\r\nx\r\n");
    s.pass(1);
    assert_eq!(s.read(&["get", "k"]), "$-1\r\n");
    assert_eq!(s.read(&["ttl", "k"]), ":-2\r\n");
    s.run(&["set", "k", "v"]);
    assert_eq!(s.read(&["ttl", "k"]), ":-1\r\n");
    // EXPIREAT in Unix seconds: 10 s from the request's clock.
    let at = (s.log_time_ms + s.unix_offset_ms) / 1000 + 10;
    assert_eq!(s.run(&["expireat", "k", &at.to_string()]), ":1\r\n");
    assert_eq!(s.read(&["expiretime", "k"]), format!(":{at}\r\n"));
    assert_eq!(s.run(&["expire", "k", "100", "GT"]), ":1\r\n");
    assert_eq!(s.run(&["expire", "k", "5", "GT"]), ":0\r\n");
    assert_eq!(s.run(&["expire", "k", "5", "LT"]), ":1\r\n");
    assert_eq!(s.run(&["expire", "k", "50", "NX"]), ":0\r\n");
    assert_eq!(
        s.run(&["expire", "k", "50", "NX", "GT"]),
        "-ERR NX and XX, GT or LT options at the same time are not compatible\r\n"
    );
    // A Unix deadline reads back exactly, later and through a node whose clock is 300 ms off.
    let at_ms = s.log_time_ms + s.unix_offset_ms + 60_000;
    s.run(&["pexpireat", "k", &at_ms.to_string()]);
    s.pass(1234);
    s.unix_offset_ms += 300;
    assert_eq!(s.read(&["pexpiretime", "k"]), format!(":{at_ms}\r\n"));
    s.run(&["set", "px", "v", "PXAT", &at_ms.to_string()]);
    assert_eq!(s.read(&["pexpiretime", "px"]), format!(":{at_ms}\r\n"));
    // A writer whose clock is off by more than the slack sets the offset anew.
    s.unix_offset_ms += 5_000;
    s.run(&["set", "other", "v"]);
    assert_eq!(
        s.read(&["pexpiretime", "k"]),
        format!(":{}\r\n", at_ms + 5_300)
    );
    assert_eq!(s.run(&["persist", "k"]), ":1\r\n");
    assert_eq!(s.run(&["persist", "k"]), ":0\r\n");
    assert_eq!(
        s.run(&["expire", "k", "50", "GT"]),
        ":0\r\n",
        "no TTL is infinite"
    );
    // A deadline in the past deletes the key.
    assert_eq!(s.run(&["pexpireat", "k", "1"]), ":1\r\n");
    assert_eq!(s.read(&["exists", "k"]), ":0\r\n");
    s.run(&["set", "g", "v", "EX", "100"]);
    assert_eq!(s.run(&["getex", "g", "PERSIST"]), "$1\r\nv\r\n");
    assert_eq!(s.read(&["ttl", "g"]), ":-1\r\n");
    s.run(&["getex", "g", "PX", "300"]);
    assert_eq!(s.read(&["pttl", "g"]), ":300\r\n");
}

#[test]
fn hashes_have_their_own_type_and_wrong_types_are_refused() {
    let mut s = Store::new();
    assert_eq!(s.run(&["hset", "h", "name", "ada", "age", "36"]), ":2\r\n");
    assert_eq!(s.run(&["hset", "h", "name", "grace"]), ":0\r\n");
    assert_eq!(s.read(&["hget", "h", "name"]), "$5\r\ngrace\r\n");
    assert_eq!(s.read(&["type", "h"]), "+hash\r\n");
    assert_eq!(s.read(&["hlen", "h"]), ":2\r\n");
    assert_eq!(
        s.read(&["hgetall", "h"]),
        "*4\r\n$3\r\nage\r\n$2\r\n36\r\n$4\r\nname\r\n$5\r\ngrace\r\n"
    );
    assert_eq!(s.run(&["hincrby", "h", "age", "1"]), ":37\r\n");
    assert_eq!(
        s.run(&["hincrby", "h", "name", "1"]),
        "-ERR hash value is not an integer\r\n"
    );
    let wrong = "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";
    assert_eq!(s.read(&["get", "h"]), wrong);
    assert_eq!(s.run(&["incr", "h"]), wrong);
    s.run(&["set", "s", "v"]);
    assert_eq!(s.read(&["hget", "s", "f"]), wrong);
    assert_eq!(s.run(&["hset", "s", "f", "v"]), wrong);
    assert_eq!(s.read(&["type", "s"]), "+string\r\n");
    // A plain SET replaces a hash; RENAME and COPY keep the type.
    assert_eq!(s.run(&["copy", "h", "h2"]), ":1\r\n");
    assert_eq!(s.run(&["rename", "h2", "h3"]), "+OK\r\n");
    assert_eq!(s.read(&["hget", "h3", "age"]), "$2\r\n37\r\n");
    assert_eq!(s.run(&["rename", "nothing", "x"]), "-ERR no such key\r\n");
    assert_eq!(s.run(&["hdel", "h3", "age", "name", "other"]), ":2\r\n");
    assert_eq!(
        s.read(&["exists", "h3"]),
        ":0\r\n",
        "a hash's last field takes the key"
    );
    assert_eq!(s.read(&["type", "h3"]), "+none\r\n");
    s.run(&["set", "h", "plain"]);
    assert_eq!(s.read(&["type", "h"]), "+string\r\n");
    // The type survives a snapshot.
    s.run(&["hset", "kept", "f", "v"]);
    let restored = KvStore::from_snapshot(s.kv.to_snapshot());
    assert_eq!(restored.state_hash(), s.kv.state_hash());
    assert_eq!(restored.get(b"kept").unwrap().value_type(), ValueType::Hash);
}

#[test]
fn an_exec_runs_whole_and_a_changed_watched_key_runs_nothing() {
    let mut s = Store::new();
    s.run(&["set", "w", "1"]);
    let seen = s.kv.revision();
    let exec = |watched_at: u64| {
        let mut exec = request(&[&["incr", "w"], &["set", "other", "x"], &["get", "w"]]);
        exec.transaction = true;
        exec.watched = vec![RedisWatch {
            key: b"w".to_vec(),
            mod_revision: watched_at,
        }];
        exec
    };
    let response = s.apply_request(exec(seen));
    assert!(!response.aborted);
    let replies: Vec<String> = response.replies.into_iter().map(text).collect();
    assert_eq!(replies, [":2\r\n", "+OK\r\n", "$1\r\n2\r\n"]);
    // Watched before that EXEC: it changed since.
    let response = s.apply_request(exec(seen));
    assert!(response.aborted && response.replies.is_empty());
    assert_eq!(s.read(&["get", "w"]), "$1\r\n2\r\n");
    // An absent key that appeared and went again between WATCH and EXEC counts as changed.
    let seen = s.kv.revision();
    s.run(&["set", "gone", "1"]);
    s.run(&["del", "gone"]);
    let mut exec = request(&[&["set", "x", "1"]]);
    exec.watched = vec![RedisWatch {
        key: b"gone".to_vec(),
        mod_revision: seen,
    }];
    assert!(s.apply_request(exec.clone()).aborted);
    exec.watched[0].mod_revision = s.kv.revision();
    assert!(!s.apply_request(exec.clone()).aborted);
    // A new deadline touches a key as Redis counts it.
    s.run(&["set", "gone", "1"]);
    exec.watched[0].mod_revision = s.kv.revision();
    s.run(&["expire", "gone", "100"]);
    assert!(s.apply_request(exec).aborted);
}

#[test]
fn unknown_commands_and_wrong_arities_get_redis_errors_and_are_refused_before_the_log() {
    let unknown = check(&[b"FOOBAR".to_vec(), b"x".to_vec()]).err().unwrap();
    assert_eq!(
        text(unknown),
        "-ERR unknown command 'FOOBAR', with args beginning with: 'x' \r\n"
    );
    let arity = check(&[b"get".to_vec()]).err().unwrap();
    assert_eq!(
        text(arity),
        "-ERR wrong number of arguments for 'get' command\r\n"
    );
    assert!(validate(&request(&[&["get"]])).is_err());
    assert!(validate(&request(&[&["multi"]])).is_err(), "the port's own");
    assert!(validate(&request(&[])).is_err());
    assert!(validate(&request(&[&["get", "k"], &["set", "k", "v"]])).is_ok());
    assert!(!is_read_only(&request(&[
        &["get", "k"],
        &["set", "k", "v"]
    ])));
    assert!(is_read_only(&request(&[&["get", "k"], &["hgetall", "h"]])));
}

#[test]
fn scan_pages_resume_after_the_last_key_looked_at() {
    let mut s = Store::new();
    for key in ["a", "user:1", "user:2", "user:3", "zz"] {
        s.run(&["set", key, "v"]);
    }
    s.run(&["hset", "user:h", "f", "v"]);
    assert_eq!(
        s.read(&["paxkv.scan", "", "2"]),
        "*2\r\n$6\r\nuser:2\r\n*2\r\n$1\r\na\r\n$6\r\nuser:1\r\n"
    );
    assert_eq!(
        s.read(&[
            "paxkv.scan",
            "user:2",
            "10",
            "MATCH",
            "user:*",
            "TYPE",
            "string"
        ]),
        "*2\r\n$-1\r\n*2\r\n$6\r\nuser:2\r\n$6\r\nuser:3\r\n"
    );
    assert_eq!(
        s.read(&["keys", "user:[12]"]),
        "*2\r\n$6\r\nuser:1\r\n$6\r\nuser:2\r\n"
    );
    assert_eq!(s.read(&["dbsize"]), ":6\r\n");
    assert_eq!(s.run(&["paxkv.flush"]), ":0\r\n");
    assert_eq!(s.read(&["dbsize"]), ":0\r\n");
    assert_eq!(s.read(&["randomkey"]), "$-1\r\n");
}

#[test]
fn every_command_of_the_table_is_found_by_its_name_in_any_case() {
    let mut names = std::collections::BTreeSet::new();
    for command in COMMANDS {
        assert!(names.insert(command.name), "{} twice", command.name);
        let upper = command.name.to_ascii_uppercase();
        assert_eq!(
            spec(upper.as_bytes()).map(|found| found.name),
            Some(command.name)
        );
    }
    assert!(spec(&[b'g'; 100]).is_none());
}
