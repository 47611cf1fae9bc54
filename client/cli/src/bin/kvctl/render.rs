//! The one place kvctl's output is decided: an outcome (or error) becomes the text or JSON to
//! print and the exit code.
//!
//! Exit codes: 0 done; 1 error (also `status` when a node did not answer); 3 not found (no
//! such key or lease); 4 conflict (a `cas` or `del --expected-rev` found the key at another
//! revision, the condition of `expire --nx/--xx/--gt/--lt` did not hold, or a `txn` ran its
//! failure branch). Bad usage (2) is clap's, or a `txn` file or a `del --range` refused before
//! anything is sent (`EXIT_USAGE`), before any of this.
//!
//! JSON: keys and values are strings when they are UTF-8, else `{"base64": "..."}`.

use base64::Engine;
use paxkv_client::{
    ClientError, DeleteResult, EventKind, KeyValue, LeaseSummary, MembersResponse, StatusResponse,
    TtlState, TxnOpResult, WatchEvent,
};
use serde_json::{json, Value};

use crate::outcome::{Outcome, TxnStep};

pub const EXIT_OK: u8 = 0;
pub const EXIT_ERROR: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_NOT_FOUND: u8 = 3;
pub const EXIT_CONFLICT: u8 = 4;

/// How answers are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// What to print where, and the code to exit with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Printed with a newline unless empty. Bytes, not text: `get` prints a value as it is
    /// stored, so that `kvctl get k > file` gives back what `kvctl put k - < file` stored.
    pub stdout: Vec<u8>,
    /// Printed with a newline unless empty.
    pub stderr: String,
    pub exit_code: u8,
}

impl Rendered {
    pub fn print(&self) {
        use std::io::Write;
        if !self.stdout.is_empty() {
            let mut out = std::io::stdout().lock();
            // A closed pipe (`kvctl scan p | head`) is not an error worth a panic.
            let _ = out
                .write_all(&self.stdout)
                .and_then(|()| out.write_all(b"\n"));
            let _ = out.flush();
        }
        if !self.stderr.is_empty() {
            eprintln!("{}", self.stderr);
        }
    }
}

/// Renders the result of a command.
pub fn render(result: &Result<Outcome, ClientError>, format: Format) -> Rendered {
    match result {
        Ok(outcome) => Rendered {
            stdout: match format {
                Format::Text => text(outcome),
                Format::Json => json(outcome).to_string().into_bytes(),
            },
            stderr: String::new(),
            exit_code: exit_code(outcome),
        },
        Err(error) => {
            let (message, exit_code) = match error {
                // The message alone: "not found" would say it twice.
                ClientError::NotFound(detail) => (detail.message.clone(), EXIT_NOT_FOUND),
                error => (error.to_string(), EXIT_ERROR),
            };
            Rendered {
                stdout: Vec::new(),
                stderr: format!("kvctl: {message}"),
                exit_code,
            }
        }
    }
}

/// Prints why a command that streams (`watch`) stopped, and returns its exit code: 4 when
/// the revision asked for is older than the history (a conflict with what the cluster keeps).
pub fn failure(error: &ClientError) -> u8 {
    let rendered = render(&Err(error.clone()), Format::Text);
    rendered.print();
    match error {
        ClientError::Compacted(_) => EXIT_CONFLICT,
        _ => rendered.exit_code,
    }
}

/// One watch event as a line: `PUT key = value (revision N)`, or JSON.
pub fn event_line(event: &WatchEvent, format: Format) -> Vec<u8> {
    let kind = match event.kind() {
        EventKind::Put => "put",
        EventKind::Delete => "delete",
        EventKind::Expire => "expire",
    };
    let empty = KeyValue::default();
    let kv = event.kv.as_ref().unwrap_or(&empty);
    match format {
        Format::Json => {
            let mut line =
                json!({"kind": kind, "revision": event.revision, "key": bytes_json(&kv.key)});
            if event.kind() == EventKind::Put {
                line["value"] = bytes_json(&kv.value);
                line["lease"] = json!(kv.lease_id);
            }
            if let Some(previous) = &event.prev_kv {
                line["prev_kv"] = kv_json(previous, false);
            }
            line.to_string().into_bytes()
        }
        Format::Text => {
            let mut line = match event.kind() {
                EventKind::Put => format!(
                    "PUT {} = {} (revision {})",
                    printable(&kv.key),
                    printable(&kv.value),
                    event.revision
                ),
                _ => format!(
                    "{} {} (revision {})",
                    kind.to_uppercase(),
                    printable(&kv.key),
                    event.revision
                ),
            };
            if let Some(previous) = &event.prev_kv {
                line.push_str(&format!("; was {}", printable(&previous.value)));
            }
            line.into_bytes()
        }
    }
}

/// Prints one watch event and flushes, so that a pipe sees it at once.
pub fn print_event(event: &WatchEvent, format: Format) {
    Rendered {
        stdout: event_line(event, format),
        stderr: String::new(),
        exit_code: EXIT_OK,
    }
    .print();
}

fn exit_code(outcome: &Outcome) -> u8 {
    let found = match outcome {
        Outcome::Value { kv, .. } => kv.is_some(),
        Outcome::Deleted { delete, .. } if !delete.deleted && delete.previous.is_some() => {
            return EXIT_CONFLICT
        }
        Outcome::Deleted { delete, .. } => delete.deleted,
        Outcome::DeletedPrefix { count } | Outcome::DeletedRange { count } => *count > 0,
        Outcome::Txn {
            succeeded: false, ..
        } => return EXIT_CONFLICT,
        Outcome::Ttl(ttl) => ttl.state != TtlState::NoKey,
        Outcome::Expired {
            applied: false,
            exists: true,
            ..
        } => return EXIT_CONFLICT,
        Outcome::Expired { applied, .. } => *applied,
        Outcome::CompareAndSet { cas, .. } if !cas.succeeded => return EXIT_CONFLICT,
        // Like a health check: any node that did not answer fails the command.
        Outcome::Status(nodes) if nodes.iter().any(|(_, status)| status.is_err()) => {
            return EXIT_ERROR
        }
        _ => true,
    };
    if found {
        EXIT_OK
    } else {
        EXIT_NOT_FOUND
    }
}

fn seconds(milliseconds: u64) -> String {
    format!("{:.3} s", milliseconds as f64 / 1000.0)
}

/// Bytes for a line of text: as they are if UTF-8, else with the other bytes escaped (`\xff`).
fn printable(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_string(),
        Err(_) => bytes.escape_ascii().to_string(),
    }
}

fn text(outcome: &Outcome) -> Vec<u8> {
    match outcome {
        // The value as stored, byte for byte.
        Outcome::Value { kv: Some(kv), .. } => kv.value.clone(),
        outcome => text_line(outcome).into_bytes(),
    }
}

fn text_line(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Written { revision } => format!("OK (revision {revision})"),
        Outcome::Value { kv: Some(kv), .. } => printable(&kv.value),
        Outcome::Value { key, kv: None } => format!("(no key {key})"),
        Outcome::Deleted { delete, .. } if delete.deleted => {
            format!("deleted (revision {})", delete.revision)
        }
        Outcome::Deleted {
            key,
            expected_revision: Some(expected_revision),
            delete:
                DeleteResult {
                    previous: Some(current),
                    ..
                },
        } => format!(
            "conflict: {key} is at revision {}, not {expected_revision}",
            current.mod_revision
        ),
        Outcome::Deleted { key, .. } => format!("(no key {key})"),
        Outcome::DeletedPrefix { count: 0 } => "(no key under the prefix)".into(),
        Outcome::DeletedPrefix { count } => format!("deleted {count} keys"),
        Outcome::DeletedRange { count: 0 } => "(no key in the range)".into(),
        Outcome::DeletedRange { count } => format!("deleted {count} keys"),
        Outcome::Txn {
            succeeded,
            revision,
            steps,
            results,
        } => txn_text(*succeeded, *revision, steps, results),
        Outcome::CompareAndSet { cas, .. } if cas.succeeded => {
            format!("OK (revision {})", cas.revision)
        }
        Outcome::CompareAndSet {
            key,
            expected_revision,
            cas,
        } => {
            let current = cas.previous.as_ref().map_or(0, |kv| kv.mod_revision);
            format!("conflict: {key} is at revision {current}, not {expected_revision}")
        }
        Outcome::Rows {
            kvs,
            more,
            limit,
            keys_only,
            ..
        } => {
            let mut lines: Vec<String> = kvs
                .iter()
                .map(|kv| match keys_only {
                    true => printable(&kv.key),
                    false => format!("{} = {}", printable(&kv.key), printable(&kv.value)),
                })
                .collect();
            if *more {
                lines.push(format!("(more; raise --limit above {limit})"));
            }
            lines.join("\n")
        }
        Outcome::Ttl(ttl) => match ttl.state {
            TtlState::NoKey => "no such key".into(),
            TtlState::NoTtl => "no TTL".into(),
            TtlState::Remaining => seconds(ttl.remaining_ms),
        },
        Outcome::Expired { applied: true, .. } => "OK".into(),
        Outcome::Expired {
            key,
            exists: true,
            condition,
            ..
        } => format!("not set: the condition {condition} does not hold for {key}"),
        Outcome::Expired { key, .. } => format!("(no key {key})"),
        Outcome::Persisted { removed: true } => "OK".into(),
        Outcome::Persisted { removed: false } => "(no TTL to remove)".into(),
        Outcome::LeaseGranted { lease_id } => lease_id.to_string(),
        Outcome::LeaseKeptAlive { ttl_ms } => format!("kept alive for {}", seconds(*ttl_ms)),
        Outcome::LeaseRevoked { deleted_keys } => {
            format!("revoked; {deleted_keys} keys deleted")
        }
        Outcome::LeaseTtl(lease) => {
            let keys: Vec<String> = lease.keys.iter().map(|key| printable(key)).collect();
            format!(
                "{} left of {}; keys: {}",
                seconds(lease.remaining_ms),
                seconds(lease.granted_ttl_ms),
                keys.join(" ")
            )
        }
        Outcome::Leases(leases) if leases.is_empty() => "(no leases)".into(),
        Outcome::Leases(leases) => {
            let mut lines = vec![format!(
                "{:<20} {:>12} {:>12} {:>6}",
                "ID", "LEFT", "GRANTED", "KEYS"
            )];
            lines.extend(leases.iter().map(|lease| {
                format!(
                    "{:<20} {:>12} {:>12} {:>6}",
                    lease.lease_id,
                    seconds(lease.remaining_ms),
                    seconds(lease.granted_ttl_ms),
                    lease.key_count
                )
            }));
            lines.join("\n")
        }
        Outcome::Members(members) => members_text(members),
        Outcome::Status(nodes) => nodes
            .iter()
            .map(|(endpoint, status)| status_text(endpoint, status))
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

/// `SUCCEEDED at revision N` or `FAILED ...`, then a line per operation of the branch that ran.
fn txn_text(succeeded: bool, revision: u64, steps: &[TxnStep], results: &[TxnOpResult]) -> String {
    let mut lines = vec![if succeeded {
        format!("SUCCEEDED at revision {revision}")
    } else {
        format!("FAILED at revision {revision}: a compare did not hold; the failure branch ran")
    }];
    for (step, answer) in steps.iter().zip(results) {
        let deleted = deleted_count(answer);
        lines.push(match step {
            TxnStep::Put { key } => format!("put {} (revision {revision})", printable(key)),
            TxnStep::Delete { key } => format!("delete {}: {deleted} deleted", printable(key)),
            TxnStep::DeletePrefix { prefix } => {
                format!("delete prefix {}: {deleted} deleted", printable(prefix))
            }
            TxnStep::DeleteRange { start, end } => format!(
                "delete {} up to {}: {deleted} deleted",
                printable(start),
                printable(end)
            ),
            TxnStep::Get { key } => match answer {
                TxnOpResult::Get(Some(kv)) => format!(
                    "get {} = {} (revision {})",
                    printable(key),
                    printable(&kv.value),
                    kv.mod_revision
                ),
                _ => format!("get {}: (no key)", printable(key)),
            },
        });
    }
    lines.join("\n")
}

/// `{"succeeded", "revision", "results"}`, each result shaped as the operation was written
/// in the file, with what it did: `{"put": {"key", "revision"}}`, `{"delete": {"key" (or
/// "prefix", or "key" and "range_end"), "deleted"}}`, `{"get": {"key", "kv"}}` (null: no key).
fn txn_json(succeeded: bool, revision: u64, steps: &[TxnStep], results: &[TxnOpResult]) -> Value {
    let shown: Vec<Value> = steps
        .iter()
        .zip(results)
        .map(|(step, answer)| {
            let deleted = deleted_count(answer);
            match step {
                TxnStep::Put { key } => {
                    json!({"put": {"key": bytes_json(key), "revision": revision}})
                }
                TxnStep::Delete { key } => {
                    json!({"delete": {"key": bytes_json(key), "deleted": deleted}})
                }
                TxnStep::DeletePrefix { prefix } => {
                    json!({"delete": {"prefix": bytes_json(prefix), "deleted": deleted}})
                }
                TxnStep::DeleteRange { start, end } => json!({"delete": {
                    "key": bytes_json(start), "range_end": bytes_json(end), "deleted": deleted
                }}),
                TxnStep::Get { key } => {
                    let kv = match answer {
                        TxnOpResult::Get(Some(kv)) => kv_json(kv, false),
                        _ => Value::Null,
                    };
                    json!({"get": {"key": bytes_json(key), "kv": kv}})
                }
            }
        })
        .collect();
    json!({"succeeded": succeeded, "revision": revision, "results": shown})
}

fn deleted_count(answer: &TxnOpResult) -> u64 {
    match answer {
        TxnOpResult::Delete { deleted } => *deleted,
        _ => 0,
    }
}

fn members_text(members: &MembersResponse) -> String {
    let mut lines = vec![format!(
        "configuration {}{}; leader {}",
        members.configuration_index,
        if members.change_in_progress {
            " (change in progress)"
        } else {
            ""
        },
        match members.leader_id {
            0 => "unknown".to_string(),
            id => id.to_string(),
        }
    )];
    lines.push(format!(
        "{:<4} {:<8} {:<24} {:<24} {:>10} {}",
        "ID", "ROLE", "PEER", "CLIENT", "MATCH", "ANSWERS"
    ));
    for member in &members.members {
        lines.push(format!(
            "{:<4} {:<8} {:<24} {:<24} {:>10} {}",
            member.node_id,
            if member.voter { "voter" } else { "learner" },
            or_dash(&member.peer_address),
            or_dash(&member.client_address),
            member.match_index,
            if member.reachable { "yes" } else { "no" }
        ));
    }
    if !members.retired.is_empty() {
        let retired: Vec<String> = members.retired.iter().map(u64::to_string).collect();
        lines.push(format!("retired ids: {}", retired.join(", ")));
    }
    lines.join("\n")
}

fn or_dash(text: &str) -> &str {
    if text.is_empty() {
        "-"
    } else {
        text
    }
}

fn members_json(members: &MembersResponse) -> Value {
    let rows: Vec<Value> = members
        .members
        .iter()
        .map(|member| {
            json!({
                "id": member.node_id,
                "voter": member.voter,
                "peer_address": member.peer_address,
                "client_address": member.client_address,
                "match_index": member.match_index,
                "reachable": member.reachable,
            })
        })
        .collect();
    json!({
        "configuration_index": members.configuration_index,
        "change_in_progress": members.change_in_progress,
        "leader": members.leader_id,
        "node": members.node_id,
        "members": rows,
        "retired": members.retired,
    })
}

/// The role as a word: leader, follower, candidate, learner.
fn role_name(status: &StatusResponse) -> String {
    status
        .role()
        .as_str_name()
        .trim_start_matches("ROLE_")
        .to_lowercase()
}

fn status_text(endpoint: &str, status: &Result<StatusResponse, ClientError>) -> String {
    match status {
        Ok(status) => format!(
            "{endpoint}  node {}  {:<9} leader {}  ballot {}.{}  commit {}  applied {}  revision {}  keys {}",
            status.node_id,
            role_name(status),
            status.leader_id,
            status.ballot_round,
            status.ballot_node,
            status.commit_index,
            status.applied_index,
            status.revision,
            status.key_count
        ),
        Err(error) => format!("{endpoint}  unreachable: {error}"),
    }
}

fn json(outcome: &Outcome) -> Value {
    match outcome {
        Outcome::Written { revision } => json!({ "revision": revision }),
        Outcome::Value { kv: Some(kv), .. } => kv_json(kv, false),
        Outcome::Value { kv: None, .. } => Value::Null,
        Outcome::Deleted { delete, .. } => {
            json!({"deleted": delete.deleted, "revision": delete.revision})
        }
        Outcome::CompareAndSet { cas, .. } => {
            json!({"succeeded": cas.succeeded, "revision": cas.revision})
        }
        Outcome::DeletedPrefix { count } | Outcome::DeletedRange { count } => {
            json!({ "deleted_count": count })
        }
        Outcome::Txn {
            succeeded,
            revision,
            steps,
            results,
        } => txn_json(*succeeded, *revision, steps, results),
        Outcome::Rows {
            kvs,
            more,
            revision,
            keys_only,
            ..
        } => {
            let rows: Vec<Value> = kvs.iter().map(|kv| kv_json(kv, *keys_only)).collect();
            json!({"kvs": rows, "more": more, "revision": revision})
        }
        Outcome::Ttl(ttl) => {
            let state = match ttl.state {
                TtlState::NoKey => "NoKey",
                TtlState::NoTtl => "NoTtl",
                TtlState::Remaining => "Remaining",
            };
            json!({"state": state, "remaining_ms": ttl.remaining_ms})
        }
        Outcome::Expired { applied, .. } => json!({ "applied": applied }),
        Outcome::Persisted { removed } => json!({ "removed": removed }),
        Outcome::LeaseGranted { lease_id } => json!({ "lease": lease_id }),
        Outcome::LeaseKeptAlive { ttl_ms } => json!({ "ttl_ms": ttl_ms }),
        Outcome::LeaseRevoked { deleted_keys } => json!({ "deleted_keys": deleted_keys }),
        Outcome::LeaseTtl(lease) => {
            let keys: Vec<Value> = lease.keys.iter().map(|key| bytes_json(key)).collect();
            json!({
                "remaining_ms": lease.remaining_ms,
                "granted_ttl_ms": lease.granted_ttl_ms,
                "keys": keys,
            })
        }
        Outcome::Leases(leases) => Value::Array(leases.iter().map(lease_json).collect()),
        Outcome::Members(members) => members_json(members),
        Outcome::Status(nodes) => Value::Array(
            nodes
                .iter()
                .map(|(endpoint, status)| status_json(endpoint, status))
                .collect(),
        ),
    }
}

fn lease_json(lease: &LeaseSummary) -> Value {
    json!({
        "lease": lease.lease_id,
        "remaining_ms": lease.remaining_ms,
        "granted_ttl_ms": lease.granted_ttl_ms,
        "keys": lease.key_count,
    })
}

fn status_json(endpoint: &str, status: &Result<StatusResponse, ClientError>) -> Value {
    match status {
        Ok(status) => json!({
            "endpoint": endpoint,
            "node": status.node_id,
            "role": role_name(status),
            "leader": status.leader_id,
            "ballot": {"round": status.ballot_round, "node": status.ballot_node},
            "commit": status.commit_index,
            "applied": status.applied_index,
            "revision": status.revision,
            "keys": status.key_count,
        }),
        Err(error) => json!({"endpoint": endpoint, "error": error.to_string()}),
    }
}

/// Bytes as JSON: a string when they are UTF-8, else `{"base64": "..."}` (standard alphabet,
/// padded), so that no byte is lost or replaced and a script can tell the two apart.
pub fn bytes_json(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => Value::String(text.to_string()),
        Err(_) => json!({ "base64": base64::engine::general_purpose::STANDARD.encode(bytes) }),
    }
}

fn kv_json(kv: &KeyValue, key_only: bool) -> Value {
    let mut row = serde_json::Map::new();
    row.insert("key".into(), bytes_json(&kv.key));
    if !key_only {
        row.insert("value".into(), bytes_json(&kv.value));
    }
    row.insert("create_revision".into(), kv.create_revision.into());
    row.insert("mod_revision".into(), kv.mod_revision.into());
    row.insert("version".into(), kv.version.into());
    row.insert("lease".into(), kv.lease_id.into());
    Value::Object(row)
}

#[cfg(test)]
mod tests {
    use paxkv_client::{CasResult, LeaseInfo, Role, TtlResult};

    use super::*;

    fn kv(key: &str, value: &str, mod_revision: u64) -> KeyValue {
        KeyValue {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            create_revision: 1,
            mod_revision,
            version: 2,
            lease_id: 0,
            ..KeyValue::default()
        }
    }

    /// (stdout in text, stdout in JSON parsed, exit code) of an outcome.
    fn both(outcome: Outcome) -> (String, Value, u8) {
        let result = Ok(outcome);
        let text = render(&result, Format::Text);
        let json = render(&result, Format::Json);
        assert_eq!(
            text.exit_code, json.exit_code,
            "the format does not change the code"
        );
        assert!(text.stderr.is_empty() && json.stderr.is_empty());
        let string = |bytes| String::from_utf8(bytes).expect("UTF-8");
        let json = serde_json::from_str(&string(json.stdout)).expect("JSON");
        (string(text.stdout), json, text.exit_code)
    }

    fn rendered(text: &str, json: &str, exit_code: u8) -> (String, Value, u8) {
        let json = serde_json::from_str(json).expect("the expected JSON parses");
        (text.to_string(), json, exit_code)
    }

    #[test]
    fn keys_found_missing_and_conflicting_print_as_before_with_their_exit_codes() {
        assert_eq!(
            both(Outcome::Written { revision: 7 }),
            rendered("OK (revision 7)", r#"{"revision":7}"#, EXIT_OK)
        );
        let found = Outcome::Value {
            key: "k".into(),
            kv: Some(kv("k", "say \"hi\"\n", 5)),
        };
        let found_json = r#"{"create_revision":1,"key":"k","lease":0,"mod_revision":5,"value":"say \"hi\"\n","version":2}"#;
        assert_eq!(both(found), rendered("say \"hi\"\n", found_json, EXIT_OK));
        let missing = Outcome::Value {
            key: "k".into(),
            kv: None,
        };
        assert_eq!(
            both(missing),
            rendered("(no key k)", "null", EXIT_NOT_FOUND)
        );
        let deleted = |deleted| Outcome::Deleted {
            key: "k".into(),
            expected_revision: None,
            delete: DeleteResult {
                deleted,
                revision: 9,
                previous: deleted.then(|| kv("k", "v", 6)),
                log_time_ms: 0,
            },
        };
        assert_eq!(
            both(deleted(true)),
            rendered(
                "deleted (revision 9)",
                r#"{"deleted":true,"revision":9}"#,
                EXIT_OK
            )
        );
        assert_eq!(
            both(deleted(false)),
            rendered(
                "(no key k)",
                r#"{"deleted":false,"revision":9}"#,
                EXIT_NOT_FOUND
            )
        );
        // `del --expected-rev` that finds the key at another revision: a conflict, not "no key".
        let stale_delete = Outcome::Deleted {
            key: "k".into(),
            expected_revision: Some(3),
            delete: DeleteResult {
                deleted: false,
                revision: 9,
                previous: Some(kv("k", "v", 6)),
                log_time_ms: 0,
            },
        };
        assert_eq!(
            both(stale_delete),
            rendered(
                "conflict: k is at revision 6, not 3",
                r#"{"deleted":false,"revision":9}"#,
                EXIT_CONFLICT
            )
        );
        let cas = |succeeded| Outcome::CompareAndSet {
            key: "k".into(),
            expected_revision: 3,
            cas: CasResult {
                succeeded,
                revision: 8,
                previous: Some(kv("k", "v", 6)),
                log_time_ms: 0,
            },
        };
        assert_eq!(
            both(cas(true)),
            rendered(
                "OK (revision 8)",
                r#"{"succeeded":true,"revision":8}"#,
                EXIT_OK
            )
        );
        assert_eq!(
            both(cas(false)),
            rendered(
                "conflict: k is at revision 6, not 3",
                r#"{"succeeded":false,"revision":8}"#,
                EXIT_CONFLICT
            )
        );
    }

    #[test]
    fn scans_and_ttls_print_as_before() {
        let page = |more| Outcome::Rows {
            kvs: vec![kv("a", "1", 1), kv("b", "2", 2)],
            more,
            revision: 2,
            limit: 2,
            keys_only: false,
        };
        let (text, json, code) = both(page(true));
        assert_eq!(text, "a = 1\nb = 2\n(more; raise --limit above 2)");
        assert_eq!(json["more"], true);
        assert_eq!(json["revision"], 2);
        assert_eq!(json["kvs"][0]["key"], "a");
        assert_eq!(json["kvs"][1]["value"], "2");
        assert_eq!(code, EXIT_OK);
        assert_eq!(both(page(false)).0, "a = 1\nb = 2");
        let ttl = |state, remaining_ms| {
            Outcome::Ttl(TtlResult {
                state,
                remaining_ms,
                revision: 1,
            })
        };
        assert_eq!(
            both(ttl(TtlState::Remaining, 1500)),
            rendered(
                "1.500 s",
                r#"{"state":"Remaining","remaining_ms":1500}"#,
                EXIT_OK
            )
        );
        assert_eq!(both(ttl(TtlState::NoTtl, 0)).0, "no TTL");
        assert_eq!(
            both(ttl(TtlState::NoKey, 0)),
            rendered(
                "no such key",
                r#"{"state":"NoKey","remaining_ms":0}"#,
                EXIT_NOT_FOUND
            )
        );
        let expired = |applied| Outcome::Expired {
            key: "k".into(),
            applied,
            exists: false,
            condition: "",
        };
        assert_eq!(
            both(expired(true)),
            rendered("OK", r#"{"applied":true}"#, EXIT_OK)
        );
        assert_eq!(
            both(expired(false)),
            rendered("(no key k)", r#"{"applied":false}"#, EXIT_NOT_FOUND)
        );
        assert_eq!(
            both(Outcome::Persisted { removed: false }),
            rendered("(no TTL to remove)", r#"{"removed":false}"#, EXIT_OK)
        );
    }

    #[test]
    fn leases_print_as_before() {
        assert_eq!(
            both(Outcome::LeaseGranted { lease_id: 42 }),
            rendered("42", r#"{"lease":42}"#, EXIT_OK)
        );
        assert_eq!(
            both(Outcome::LeaseKeptAlive { ttl_ms: 2000 }),
            rendered("kept alive for 2.000 s", r#"{"ttl_ms":2000}"#, EXIT_OK)
        );
        assert_eq!(
            both(Outcome::LeaseRevoked { deleted_keys: 3 }),
            rendered("revoked; 3 keys deleted", r#"{"deleted_keys":3}"#, EXIT_OK)
        );
        let lease = Outcome::LeaseTtl(LeaseInfo {
            lease_id: 42,
            remaining_ms: 900,
            granted_ttl_ms: 2000,
            keys: vec![b"a".to_vec(), b"b".to_vec()],
        });
        assert_eq!(
            both(lease),
            rendered(
                "0.900 s left of 2.000 s; keys: a b",
                r#"{"remaining_ms":900,"granted_ttl_ms":2000,"keys":["a","b"]}"#,
                EXIT_OK
            )
        );
    }

    #[test]
    fn a_transaction_shows_each_result_of_the_branch_that_ran_and_a_failure_is_a_conflict() {
        let steps = vec![
            TxnStep::Put { key: b"a".to_vec() },
            TxnStep::Delete { key: b"b".to_vec() },
            TxnStep::DeletePrefix {
                prefix: b"p/".to_vec(),
            },
            TxnStep::DeleteRange {
                start: b"l/1".to_vec(),
                end: b"l/5".to_vec(),
            },
            TxnStep::Get { key: b"a".to_vec() },
            TxnStep::Get { key: vec![0xff] },
        ];
        let results = vec![
            TxnOpResult::Put,
            TxnOpResult::Delete { deleted: 1 },
            TxnOpResult::Delete { deleted: 3 },
            TxnOpResult::Delete { deleted: 0 },
            TxnOpResult::Get(Some(kv("a", "2", 9))),
            TxnOpResult::Get(None),
        ];
        let (text, json, code) = both(Outcome::Txn {
            succeeded: true,
            revision: 9,
            steps,
            results,
        });
        assert_eq!(
            text,
            "SUCCEEDED at revision 9\n\
             put a (revision 9)\n\
             delete b: 1 deleted\n\
             delete prefix p/: 3 deleted\n\
             delete l/1 up to l/5: 0 deleted\n\
             get a = 2 (revision 9)\n\
             get \\xff: (no key)"
        );
        assert_eq!(
            json,
            json!({"succeeded": true, "revision": 9, "results": [
                {"put": {"key": "a", "revision": 9}},
                {"delete": {"key": "b", "deleted": 1}},
                {"delete": {"prefix": "p/", "deleted": 3}},
                {"delete": {"key": "l/1", "range_end": "l/5", "deleted": 0}},
                {"get": {"key": "a", "kv": {"key": "a", "value": "2", "create_revision": 1,
                                            "mod_revision": 9, "version": 2, "lease": 0}}},
                {"get": {"key": {"base64": "/w=="}, "kv": null}},
            ]})
        );
        assert_eq!(code, EXIT_OK);
        let (text, json, code) = both(Outcome::Txn {
            succeeded: false,
            revision: 9,
            steps: Vec::new(),
            results: Vec::new(),
        });
        assert_eq!(
            text,
            "FAILED at revision 9: a compare did not hold; the failure branch ran"
        );
        assert_eq!(
            json,
            json!({"succeeded": false, "revision": 9, "results": []})
        );
        assert_eq!(code, EXIT_CONFLICT);
        // A range delete that found nothing is "not found", as a prefix delete is.
        assert_eq!(
            both(Outcome::DeletedRange { count: 0 }),
            rendered(
                "(no key in the range)",
                r#"{"deleted_count":0}"#,
                EXIT_NOT_FOUND
            )
        );
    }

    #[test]
    fn status_lists_every_endpoint_and_an_unreachable_one_does_not_fail_the_command() {
        let leader = StatusResponse {
            node_id: 1,
            role: Role::Leader as i32,
            ballot_round: 3,
            ballot_node: 1,
            leader_id: 1,
            commit_index: 10,
            applied_index: 9,
            revision: 4,
            key_count: 2,
            ..StatusResponse::default()
        };
        let down = ClientError::Unavailable("no answer".into());
        let status = Outcome::Status(vec![
            ("[::1]:7001".into(), Ok(leader)),
            ("[::1]:7002".into(), Err(down)),
        ]);
        let (text, json, code) = both(status);
        assert_eq!(
            text,
            "[::1]:7001  node 1  leader    leader 1  ballot 3.1  commit 10  applied 9  revision 4  keys 2\n\
             [::1]:7002  unreachable: cluster unavailable: no answer"
        );
        assert_eq!(
            json,
            json!([{"endpoint": "[::1]:7001", "node": 1, "role": "leader", "leader": 1,
                    "ballot": {"round": 3, "node": 1}, "commit": 10, "applied": 9, "revision": 4, "keys": 2},
                   {"endpoint": "[::1]:7002", "error": "cluster unavailable: no answer"}])
        );
        // Like a health check: a node that did not answer fails the command.
        assert_eq!(code, EXIT_ERROR);
    }

    #[test]
    fn errors_go_to_stderr_and_not_found_keeps_only_its_message() {
        for format in [Format::Text, Format::Json] {
            let not_found = render(&Err(ClientError::NotFound("no lease 5".into())), format);
            assert_eq!(
                not_found,
                Rendered {
                    stdout: Vec::new(),
                    stderr: "kvctl: no lease 5".into(),
                    exit_code: EXIT_NOT_FOUND,
                }
            );
            let timeout = render(&Err(ClientError::Timeout("no answer".into())), format);
            assert_eq!(timeout.stderr, "kvctl: timed out: no answer");
            assert_eq!(
                (timeout.stdout.as_slice(), timeout.exit_code),
                (&b""[..], EXIT_ERROR)
            );
        }
    }
}
