//! Replies, written in the protocol version the connection chose (`HELLO 3` switches to
//! RESP3). A reply is built once in RESP3's terms; in RESP2 the types RESP2 lacks fall back as
//! Redis does: a map is a flat array of keys and values, a set an array, a double a bulk string,
//! a boolean the integer 1 or 0, every null the null bulk string (the null array where a
//! command's RESP2 reply is an array), a push an array.

/// The protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Resp2,
    Resp3,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `+OK`: a short status without CR or LF.
    Simple(String),
    /// `-ERR ...`, `-WRONGTYPE ...`: the first word is the error's kind.
    Error(String),
    Integer(i64),
    Bulk(Vec<u8>),
    /// No value: `$-1` in RESP2, `_` in RESP3.
    Null,
    /// No array (EXEC after a failed WATCH): `*-1` in RESP2, `_` in RESP3.
    NullArray,
    Array(Vec<Reply>),
    Map(Vec<(Reply, Reply)>),
    Set(Vec<Reply>),
    Double(f64),
    Boolean(bool),
    /// Out-of-band data (pub/sub messages): `>` in RESP3, an array in RESP2.
    Push(Vec<Reply>),
}

impl Reply {
    /// `+OK`.
    pub fn ok() -> Reply {
        Reply::Simple("OK".to_string())
    }

    /// An error of kind `ERR` with `message`.
    pub fn err(message: impl std::fmt::Display) -> Reply {
        Reply::Error(format!("ERR {message}"))
    }

    pub fn bulk(bytes: impl Into<Vec<u8>>) -> Reply {
        Reply::Bulk(bytes.into())
    }

    /// Appends the reply to `out` as `protocol` writes it.
    pub fn encode(&self, protocol: Protocol, out: &mut Vec<u8>) {
        let resp3 = protocol == Protocol::Resp3;
        match self {
            Reply::Simple(text) => line(out, b'+', &one_line(text)),
            Reply::Error(text) => line(out, b'-', &one_line(text)),
            Reply::Integer(value) => line(out, b':', &value.to_string()),
            Reply::Bulk(bytes) => {
                line(out, b'$', &bytes.len().to_string());
                out.extend_from_slice(bytes);
                out.extend_from_slice(b"\r\n");
            }
            Reply::Null if resp3 => out.extend_from_slice(b"_\r\n"),
            Reply::Null => out.extend_from_slice(b"$-1\r\n"),
            Reply::NullArray if resp3 => out.extend_from_slice(b"_\r\n"),
            Reply::NullArray => out.extend_from_slice(b"*-1\r\n"),
            Reply::Array(items) => aggregate(out, b'*', items, protocol),
            Reply::Set(items) if resp3 => aggregate(out, b'~', items, protocol),
            Reply::Set(items) => aggregate(out, b'*', items, protocol),
            Reply::Push(items) if resp3 => aggregate(out, b'>', items, protocol),
            Reply::Push(items) => aggregate(out, b'*', items, protocol),
            Reply::Map(pairs) => {
                if resp3 {
                    line(out, b'%', &pairs.len().to_string());
                } else {
                    line(out, b'*', &(2 * pairs.len()).to_string());
                }
                for (key, value) in pairs {
                    key.encode(protocol, out);
                    value.encode(protocol, out);
                }
            }
            Reply::Double(value) if resp3 => line(out, b',', &double(*value)),
            Reply::Double(value) => Reply::Bulk(double(*value).into_bytes()).encode(protocol, out),
            Reply::Boolean(value) if resp3 => line(out, b'#', if *value { "t" } else { "f" }),
            Reply::Boolean(value) => Reply::Integer(i64::from(*value)).encode(protocol, out),
        }
    }

    /// The reply as `protocol` writes it.
    pub fn to_bytes(&self, protocol: Protocol) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(protocol, &mut out);
        out
    }
}

/// A reply the state machine gave (it travels between nodes as a protobuf message).
impl From<crate::client::RedisReply> for Reply {
    fn from(reply: crate::client::RedisReply) -> Reply {
        use crate::client::redis_reply::Kind;
        let items = |list: crate::client::RedisReplies| -> Vec<Reply> {
            list.items.into_iter().map(Reply::from).collect()
        };
        match reply.kind {
            Some(Kind::Simple(text)) => Reply::Simple(text),
            Some(Kind::Error(text)) => Reply::Error(text),
            Some(Kind::Integer(value)) => Reply::Integer(value),
            Some(Kind::Bulk(bytes)) => Reply::Bulk(bytes),
            Some(Kind::Null(_)) | None => Reply::Null,
            Some(Kind::NullArray(_)) => Reply::NullArray,
            Some(Kind::Array(list)) => Reply::Array(items(list)),
            Some(Kind::Map(list)) => {
                let mut flat = items(list).into_iter();
                let mut pairs = Vec::new();
                while let (Some(key), Some(value)) = (flat.next(), flat.next()) {
                    pairs.push((key, value));
                }
                Reply::Map(pairs)
            }
            Some(Kind::Double(value)) => Reply::Double(value),
        }
    }
}

fn line(out: &mut Vec<u8>, kind: u8, text: &str) {
    out.push(kind);
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn aggregate(out: &mut Vec<u8>, kind: u8, items: &[Reply], protocol: Protocol) {
    line(out, kind, &items.len().to_string());
    for item in items {
        item.encode(protocol, out);
    }
}

/// A status or error must stay on one line: CR and LF become spaces.
fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

/// A double as Redis writes it: `inf`, `-inf`, `nan`, or the shortest decimal that reads back
/// the same value (`1.5`, `3`, `1e+300`).
fn double(value: f64) -> String {
    if value.is_nan() {
        "nan".to_string()
    } else if value.is_infinite() {
        if value > 0.0 { "inf" } else { "-inf" }.to_string()
    } else if value == value.trunc() && value.abs() < 1e17 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(reply: Reply) -> (String, String) {
        let text = |protocol| String::from_utf8(reply.to_bytes(protocol)).unwrap();
        (text(Protocol::Resp2), text(Protocol::Resp3))
    }

    #[test]
    fn simple_types_are_the_same_in_both_versions() {
        assert_eq!(both(Reply::ok()).0, "+OK\r\n");
        assert_eq!(
            both(Reply::err("unknown command")).1,
            "-ERR unknown command\r\n"
        );
        assert_eq!(both(Reply::Integer(-3)).0, ":-3\r\n");
        assert_eq!(both(Reply::bulk("a\r\nb")).1, "$4\r\na\r\nb\r\n");
        assert_eq!(
            both(Reply::Error("ERR two\r\nlines".into())).0,
            "-ERR two  lines\r\n"
        );
    }

    #[test]
    fn resp3_types_fall_back_in_resp2_as_redis_does() {
        assert_eq!(both(Reply::Null), ("$-1\r\n".into(), "_\r\n".into()));
        assert_eq!(both(Reply::NullArray), ("*-1\r\n".into(), "_\r\n".into()));
        let map = Reply::Map(vec![(Reply::bulk("server"), Reply::bulk("paxkv"))]);
        assert_eq!(
            both(map),
            (
                "*2\r\n$6\r\nserver\r\n$5\r\npaxkv\r\n".into(),
                "%1\r\n$6\r\nserver\r\n$5\r\npaxkv\r\n".into()
            )
        );
        assert_eq!(both(Reply::Set(vec![Reply::Integer(1)])).1, "~1\r\n:1\r\n");
        assert_eq!(
            both(Reply::Double(1.5)),
            ("$3\r\n1.5\r\n".into(), ",1.5\r\n".into())
        );
        assert_eq!(both(Reply::Double(3.0)).1, ",3\r\n");
        assert_eq!(both(Reply::Double(f64::INFINITY)).1, ",inf\r\n");
        assert_eq!(
            both(Reply::Boolean(true)),
            (":1\r\n".into(), "#t\r\n".into())
        );
        assert_eq!(
            both(Reply::Push(vec![Reply::bulk("message")])),
            (
                "*1\r\n$7\r\nmessage\r\n".into(),
                ">1\r\n$7\r\nmessage\r\n".into()
            )
        );
    }
}
