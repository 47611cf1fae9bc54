//! `kvctl txn`: the JSON a transaction is written in, read with serde and checked whole before
//! anything is sent (a mistake is named with where it is), and the `Txn` it becomes.
//!
//! ```json
//! {"compare": [{"key": "a", "target": "value", "op": "=", "value": "1"},
//!              {"key": "b", "target": "mod_revision", "op": "<", "number": 5},
//!              {"key": "c", "target": "exists", "op": "!="}],
//!  "success": [{"put": {"key": "a", "value": "2", "ttl_ms": 60000, "lease": 7}},
//!              {"delete": {"key": "b"}},
//!              {"delete": {"prefix": "tmp/"}},
//!              {"delete": {"key": "log/1", "range_end": "log/5"}},
//!              {"get": {"key": "a"}}],
//!  "failure": [{"get": {"key": "a"}}]}
//! ```
//!
//! Keys and values are strings (UTF-8) or `{"base64": "..."}`, as kvctl prints them.

use base64::Engine;
use paxkv_client::{Compare, CompareOn, PutOptions, Txn, TxnOp};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::outcome::TxnStep;

/// The format, for `kvctl txn --help`.
pub const FORMAT_HELP: &str = r#"The transaction is a JSON object; every part may be left out:

  {"compare": [{"key": "a", "target": "value", "op": "=", "value": "1"},
               {"key": "b", "target": "mod_revision", "op": "<", "number": 5},
               {"key": "c", "target": "exists", "op": "!="}],
   "success": [{"put": {"key": "a", "value": "2", "ttl_ms": 60000, "lease": 7}},
               {"delete": {"key": "b"}},
               {"delete": {"prefix": "tmp/"}},
               {"delete": {"key": "log/1", "range_end": "log/5"}},
               {"get": {"key": "a"}}],
   "failure": [{"get": {"key": "a"}}]}

Compare targets: value (with "value"), mod_revision, create_revision, version, lease (with
"number"; 0 when the key does not exist), exists ("op" "=": the key exists, "!=": it does
not). Operators: = (or ==), !=, >, <. A put takes "ttl_ms", "lease" or "keep_ttl": true
like `kvctl put`; a branch writes each key once. Keys and values are strings (UTF-8) or
{"base64": "..."}.

Printed: SUCCEEDED or FAILED with the revision, then each operation of the branch that ran
with its result; with --json, {"succeeded", "revision", "results": [...]}, each result shaped
as its operation ({"put": {"key", "revision"}}, {"delete": {..., "deleted"}},
{"get": {"key", "kv"}})."#;

/// The most bytes a transaction file may have: a transaction travels in one client frame
/// (2 MiB), which base64 and JSON may take four times as many bytes to write.
pub const TXN_FILE_BYTES_MAX: usize = 8 << 20;

/// A transaction ready to send, and what each branch's operations are (to show their results).
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedTxn {
    pub txn: Txn,
    pub success: Vec<TxnStep>,
    pub failure: Vec<TxnStep>,
}

/// Reads a transaction from its JSON; the error says what is wrong and where.
pub fn parse(json: &[u8]) -> Result<PreparedTxn, String> {
    if json.len() > TXN_FILE_BYTES_MAX {
        return Err(format!(
            "the transaction has more than {TXN_FILE_BYTES_MAX} bytes"
        ));
    }
    let file = parse_object(json).map_err(|error| error.to_string())?;
    let mut txn = Txn::new();
    for (index, spec) in file.compare.into_iter().enumerate() {
        let key = String::from_utf8_lossy(&spec.key.0).into_owned();
        let compare =
            compare(spec).map_err(|error| format!("compare[{index}] ({key:?}): {error}"))?;
        txn = txn.when([compare]);
    }
    let (success_ops, success) = branch("success", file.success)?;
    let (failure_ops, failure) = branch("failure", file.failure)?;
    Ok(PreparedTxn {
        txn: txn.and_then(success_ops).or_else(failure_ops),
        success,
        failure,
    })
}

/// The file as a JSON object (serde's derive would also take one written as an array).
fn parse_object(json: &[u8]) -> Result<TxnFile, serde_json::Error> {
    struct ObjectOnly;
    impl<'de> Visitor<'de> for ObjectOnly {
        type Value = TxnFile;

        fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            formatter.write_str("an object with \"compare\", \"success\" and \"failure\"")
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TxnFile, A::Error> {
            TxnFile::deserialize(de::value::MapAccessDeserializer::new(map))
        }
    }
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let file = (&mut deserializer).deserialize_map(ObjectOnly)?;
    deserializer.end()?;
    Ok(file)
}

/// The file: every part may be left out (no compares: the success branch runs).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TxnFile {
    #[serde(default)]
    compare: Vec<CompareSpec>,
    #[serde(default)]
    success: Vec<OpSpec>,
    #[serde(default)]
    failure: Vec<OpSpec>,
}

/// Bytes as kvctl's JSON writes them: a string (its UTF-8) or `{"base64": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct JsonBytes(Vec<u8>);

impl<'de> Deserialize<'de> for JsonBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<JsonBytes, D::Error> {
        deserializer.deserialize_any(JsonBytesVisitor)
    }
}

struct JsonBytesVisitor;

impl<'de> Visitor<'de> for JsonBytesVisitor {
    type Value = JsonBytes;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a string or {\"base64\": \"...\"}")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<JsonBytes, E> {
        Ok(JsonBytes(text.as_bytes().to_vec()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonBytes, A::Error> {
        let mut decoded = None;
        while let Some(name) = map.next_key::<String>()? {
            if name != "base64" || decoded.is_some() {
                return Err(de::Error::custom(format!(
                    "bytes are a string or {{\"base64\": \"...\"}}, not an object with {name:?}"
                )));
            }
            let text: String = map.next_value()?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text.as_bytes())
                .map_err(|error| de::Error::custom(format!("{text:?} is not base64: {error}")))?;
            decoded = Some(bytes);
        }
        decoded
            .map(JsonBytes)
            .ok_or_else(|| de::Error::custom("bytes are a string or {\"base64\": \"...\"}, not {}"))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompareSpec {
    key: JsonBytes,
    target: Target,
    op: Operator,
    /// The operand of a value compare.
    value: Option<JsonBytes>,
    /// The operand of a revision, version or lease compare.
    number: Option<u64>,
}

/// What of the key a compare looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Target {
    Value,
    ModRevision,
    CreateRevision,
    Version,
    Lease,
    Exists,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
enum Operator {
    #[serde(rename = "=", alias = "==")]
    Equal,
    #[serde(rename = "!=")]
    NotEqual,
    #[serde(rename = ">")]
    Greater,
    #[serde(rename = "<")]
    Less,
}

fn compare(spec: CompareSpec) -> Result<Compare, String> {
    let CompareSpec {
        key,
        target,
        op,
        value,
        number,
    } = spec;
    let key = key.0;
    let by_number = |on: CompareOn<u64>, number| match op {
        Operator::Equal => on.eq(number),
        Operator::NotEqual => on.ne(number),
        Operator::Greater => on.gt(number),
        Operator::Less => on.lt(number),
    };
    match (target, value, number) {
        (Target::Value, Some(JsonBytes(value)), None) => {
            let on = Compare::value(&key);
            Ok(match op {
                Operator::Equal => on.eq(&value),
                Operator::NotEqual => on.ne(&value),
                Operator::Greater => on.gt(&value),
                Operator::Less => on.lt(&value),
            })
        }
        (Target::Value, ..) => Err(
            "a value compare takes \"value\" (a string or {\"base64\": ...}), not \"number\""
                .into(),
        ),
        (Target::Exists, None, None) => match op {
            Operator::Equal => Ok(Compare::exists(&key)),
            Operator::NotEqual => Ok(Compare::absent(&key)),
            _ => Err(
                "an exists compare takes \"op\": \"=\" (the key exists) or \"!=\" (it does not)"
                    .into(),
            ),
        },
        (Target::Exists, ..) => Err("an exists compare takes no \"value\" or \"number\"".into()),
        (target, None, Some(number)) => Ok(by_number(
            match target {
                Target::ModRevision => Compare::mod_revision(&key),
                Target::CreateRevision => Compare::create_revision(&key),
                Target::Version => Compare::version(&key),
                _ => Compare::lease(&key),
            },
            number,
        )),
        (target, ..) => Err(format!(
            "a {} compare takes \"number\", not \"value\"",
            target_name(target)
        )),
    }
}

fn target_name(target: Target) -> &'static str {
    match target {
        Target::Value => "value",
        Target::ModRevision => "mod_revision",
        Target::CreateRevision => "create_revision",
        Target::Version => "version",
        Target::Lease => "lease",
        Target::Exists => "exists",
    }
}

/// One operation: `{"put": {...}}`, `{"delete": {...}}` or `{"get": {...}}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum OpSpec {
    Put(PutSpec),
    Delete(DeleteSpec),
    Get(GetSpec),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PutSpec {
    key: JsonBytes,
    value: JsonBytes,
    ttl_ms: Option<u64>,
    lease: Option<u64>,
    #[serde(default)]
    keep_ttl: bool,
}

/// `{"key": k}` one key, `{"prefix": p}` every key under p, `{"key": a, "range_end": b}`
/// every key from a up to b (excluded).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteSpec {
    key: Option<JsonBytes>,
    prefix: Option<JsonBytes>,
    range_end: Option<JsonBytes>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GetSpec {
    key: JsonBytes,
}

/// A branch's operations and what each is.
fn branch(name: &str, specs: Vec<OpSpec>) -> Result<(Vec<TxnOp>, Vec<TxnStep>), String> {
    let mut ops = Vec::with_capacity(specs.len());
    let mut steps = Vec::with_capacity(specs.len());
    for (index, spec) in specs.into_iter().enumerate() {
        let (op, step) = operation(spec).map_err(|error| format!("{name}[{index}]: {error}"))?;
        ops.push(op);
        steps.push(step);
    }
    Ok((ops, steps))
}

fn operation(spec: OpSpec) -> Result<(TxnOp, TxnStep), String> {
    match spec {
        OpSpec::Put(put) => {
            let mut options = PutOptions::new();
            match (put.ttl_ms, put.keep_ttl) {
                (Some(0), _) => return Err("\"ttl_ms\" must be more than 0".into()),
                (Some(_), true) => return Err("give \"ttl_ms\" or \"keep_ttl\", not both".into()),
                (Some(ttl_ms), false) => options = options.ttl_ms(ttl_ms),
                (None, true) => options = options.keep_ttl(),
                (None, false) => {}
            }
            if let Some(lease) = put.lease {
                options = options.lease(lease);
            }
            let op = TxnOp::put(&put.key.0, &put.value.0, options);
            Ok((op, TxnStep::Put { key: put.key.0 }))
        }
        OpSpec::Delete(DeleteSpec {
            key: Some(JsonBytes(key)),
            prefix: None,
            range_end: None,
        }) => Ok((TxnOp::delete(&key), TxnStep::Delete { key })),
        OpSpec::Delete(DeleteSpec {
            key: None,
            prefix: Some(JsonBytes(prefix)),
            range_end: None,
        }) => {
            if prefix.is_empty() {
                return Err("an empty prefix would delete every key; name a prefix".into());
            }
            Ok((
                TxnOp::delete_prefix(&prefix),
                TxnStep::DeletePrefix { prefix },
            ))
        }
        OpSpec::Delete(DeleteSpec {
            key: Some(JsonBytes(start)),
            prefix: None,
            range_end: Some(JsonBytes(end)),
        }) => {
            check_range(&start, &end)?;
            Ok((
                TxnOp::delete_range(&start, &end),
                TxnStep::DeleteRange { start, end },
            ))
        }
        OpSpec::Delete(_) => Err(
            "a delete takes \"key\" (one key), \"prefix\" (every key under it), or \"key\" and \
             \"range_end\" (every key from one up to the other)"
                .into(),
        ),
        OpSpec::Get(get) => Ok((TxnOp::get(&get.key.0), TxnStep::Get { key: get.key.0 })),
    }
}

/// A range runs from `start` (not empty) up to `end` (after it). The cluster reads an empty
/// end as "the key `start` alone", which a range delete must never become.
pub fn check_range(start: &[u8], end: &[u8]) -> Result<(), String> {
    if start.is_empty() {
        return Err("a range starts at a key; name one".into());
    }
    if end <= start {
        return Err(format!(
            "the range's end {:?} must come after its start {:?}",
            String::from_utf8_lossy(end),
            String::from_utf8_lossy(start)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(json: &str) -> String {
        parse(json.as_bytes()).expect_err("the transaction is refused")
    }

    #[test]
    fn a_full_transaction_becomes_the_txn_the_client_builder_makes() {
        let json = r#"{
            "compare": [{"key": "a", "target": "value", "op": "=", "value": "1"},
                        {"key": {"base64": "/wA="}, "target": "mod_revision", "op": "<", "number": 5},
                        {"key": "c", "target": "exists", "op": "!="}],
            "success": [{"put": {"key": "a", "value": "2", "ttl_ms": 1000, "lease": 7}},
                        {"delete": {"key": "b"}},
                        {"delete": {"prefix": "p/"}},
                        {"delete": {"key": "l/1", "range_end": "l/5"}},
                        {"get": {"key": "a"}}],
            "failure": [{"get": {"key": "a"}}]
        }"#;
        let prepared = parse(json.as_bytes()).unwrap();
        let expected = Txn::new()
            .when([
                Compare::value(b"a").eq(b"1"),
                Compare::mod_revision(&[0xff, 0x00]).lt(5),
                Compare::absent(b"c"),
            ])
            .and_then([
                TxnOp::put(b"a", b"2", PutOptions::new().ttl_ms(1000).lease(7)),
                TxnOp::delete(b"b"),
                TxnOp::delete_prefix(b"p/"),
                TxnOp::delete_range(b"l/1", b"l/5"),
                TxnOp::get(b"a"),
            ])
            .or_else([TxnOp::get(b"a")]);
        assert_eq!(prepared.txn, expected);
        assert_eq!(
            prepared.success[3],
            TxnStep::DeleteRange {
                start: b"l/1".to_vec(),
                end: b"l/5".to_vec()
            }
        );
        assert_eq!(prepared.failure, [TxnStep::Get { key: b"a".to_vec() }]);
        // Every part may be left out.
        assert_eq!(parse(b"{}").unwrap().txn, Txn::new());
    }

    #[test]
    fn mistakes_are_named_with_where_they_are() {
        let cases = [
            ("", "EOF while parsing"),
            ("[]", "expected an object with \"compare\""),
            ("{} {}", "trailing characters"),
            (r#"{"compares": []}"#, "unknown field `compares`"),
            (
                r#"{"compare": [{"key": "a", "target": "value", "op": "=~", "value": "1"}]}"#,
                "unknown variant `=~`",
            ),
            (
                r#"{"compare": [{"key": "a", "target": "size", "op": "=", "number": 1}]}"#,
                "unknown variant `size`",
            ),
            (
                r#"{"compare": [{"key": "a", "target": "value", "op": "=", "number": 1}]}"#,
                "compare[0] (\"a\"): a value compare takes \"value\"",
            ),
            (
                r#"{"compare": [{"key": "a", "target": "version", "op": "=", "value": "1"}]}"#,
                "a version compare takes \"number\"",
            ),
            (
                r#"{"compare": [{"key": "a", "target": "exists", "op": ">"}]}"#,
                "an exists compare takes \"op\": \"=\"",
            ),
            (
                r#"{"compare": [{"key": 5, "target": "exists", "op": "="}]}"#,
                "expected a string or {\"base64\": \"...\"}",
            ),
            (
                r#"{"compare": [{"key": {"base64": "!!"}, "target": "exists", "op": "="}]}"#,
                "is not base64",
            ),
            (r#"{"success": [{"putt": {}}]}"#, "unknown variant `putt`"),
            (
                r#"{"success": [{"get": {"key": "a"}}, {"delete": {"key": "a", "prefix": "b"}}]}"#,
                "success[1]: a delete takes \"key\"",
            ),
            (
                r#"{"failure": [{"delete": {"key": "b", "range_end": "a"}}]}"#,
                "failure[0]: the range's end \"a\" must come after its start \"b\"",
            ),
            (
                r#"{"success": [{"delete": {"prefix": ""}}]}"#,
                "an empty prefix would delete every key",
            ),
            (
                r#"{"success": [{"put": {"key": "a", "value": "1", "ttl_ms": 5, "keep_ttl": true}}]}"#,
                "not both",
            ),
            (
                r#"{"success": [{"put": {"key": "a", "value": "1", "ttl": 5}}]}"#,
                "unknown field `ttl`",
            ),
        ];
        for (json, expected) in cases {
            let message = error(json);
            assert!(message.contains(expected), "{json}: {message}");
        }
    }
}
