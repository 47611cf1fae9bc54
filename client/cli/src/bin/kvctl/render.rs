//! The one place kvctl's output is decided: an outcome (or error) becomes the text or JSON to
//! print and the exit code.
//!
//! Exit codes: 0 done; 1 error (also `status` when a node did not answer); 3 not found (no
//! such key or lease); 4 conflict (a `cas` or `del --expected-rev` found the key at another
//! revision). Bad usage (2) is clap's, before any of this.

use paxkv_client::{
    ClientError, DeleteResult, KeyValue, MembersResponse, StatusResponse, TtlState,
};

use crate::outcome::Outcome;

pub const EXIT_OK: u8 = 0;
pub const EXIT_ERROR: u8 = 1;
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
    /// Printed with a newline unless empty.
    pub stdout: String,
    /// Printed with a newline unless empty.
    pub stderr: String,
    pub exit_code: u8,
}

impl Rendered {
    pub fn print(&self) {
        if !self.stdout.is_empty() {
            println!("{}", self.stdout);
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
                Format::Json => json(outcome),
            },
            stderr: String::new(),
            exit_code: exit_code(outcome),
        },
        Err(error) => {
            let (message, exit_code) = match error {
                // The message alone: "not found" would say it twice.
                ClientError::NotFound(message) => (message.clone(), EXIT_NOT_FOUND),
                error => (error.to_string(), EXIT_ERROR),
            };
            Rendered {
                stdout: String::new(),
                stderr: format!("kvctl: {message}"),
                exit_code,
            }
        }
    }
}

fn exit_code(outcome: &Outcome) -> u8 {
    let found = match outcome {
        Outcome::Value { kv, .. } => kv.is_some(),
        Outcome::Deleted { delete, .. } if !delete.deleted && delete.previous.is_some() => {
            return EXIT_CONFLICT
        }
        Outcome::Deleted { delete, .. } => delete.deleted,
        Outcome::Ttl(ttl) => ttl.state != TtlState::NoKey,
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

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Written { revision } => format!("OK (revision {revision})"),
        Outcome::Value { kv: Some(kv), .. } => lossy(&kv.value),
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
        Outcome::Rows { page, limit } => {
            let mut lines: Vec<String> = page
                .kvs
                .iter()
                .map(|kv| format!("{} = {}", lossy(&kv.key), lossy(&kv.value)))
                .collect();
            if page.more {
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
        Outcome::Expired { key, .. } => format!("(no key {key})"),
        Outcome::Persisted { removed: true } => "OK".into(),
        Outcome::Persisted { removed: false } => "(no TTL to remove)".into(),
        Outcome::LeaseGranted { lease_id } => lease_id.to_string(),
        Outcome::LeaseKeptAlive { ttl_ms } => format!("kept alive for {}", seconds(*ttl_ms)),
        Outcome::LeaseRevoked { deleted_keys } => {
            format!("revoked; {deleted_keys} keys deleted")
        }
        Outcome::LeaseTtl(lease) => {
            let keys: Vec<String> = lease.keys.iter().map(|key| lossy(key)).collect();
            format!(
                "{} left of {}; keys: {}",
                seconds(lease.remaining_ms),
                seconds(lease.granted_ttl_ms),
                keys.join(" ")
            )
        }
        Outcome::Members(members) => members_text(members),
        Outcome::Status(nodes) => nodes
            .iter()
            .map(|(endpoint, status)| status_text(endpoint, status))
            .collect::<Vec<_>>()
            .join("\n"),
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

fn members_json(members: &MembersResponse) -> String {
    let rows: Vec<String> = members
        .members
        .iter()
        .map(|member| {
            format!(
                "{{\"id\":{},\"voter\":{},\"peer_address\":{},\"client_address\":{},\"match_index\":{},\"reachable\":{}}}",
                member.node_id,
                member.voter,
                json_string(member.peer_address.as_bytes()),
                json_string(member.client_address.as_bytes()),
                member.match_index,
                member.reachable
            )
        })
        .collect();
    let retired: Vec<String> = members.retired.iter().map(u64::to_string).collect();
    format!(
        "{{\"configuration_index\":{},\"change_in_progress\":{},\"leader\":{},\"node\":{},\"members\":[{}],\"retired\":[{}]}}",
        members.configuration_index,
        members.change_in_progress,
        members.leader_id,
        members.node_id,
        rows.join(","),
        retired.join(",")
    )
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
            "{endpoint}  node {}  {:<9} leader {}  commit {}  applied {}  revision {}  keys {}",
            status.node_id,
            role_name(status),
            status.leader_id,
            status.commit_index,
            status.applied_index,
            status.revision,
            status.key_count
        ),
        Err(error) => format!("{endpoint}  unreachable: {error}"),
    }
}

fn json(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Written { revision } => format!("{{\"revision\":{revision}}}"),
        Outcome::Value { kv: Some(kv), .. } => kv_json(kv),
        Outcome::Value { kv: None, .. } => "null".into(),
        Outcome::Deleted { delete, .. } => format!(
            "{{\"deleted\":{},\"revision\":{}}}",
            delete.deleted, delete.revision
        ),
        Outcome::CompareAndSet { cas, .. } => format!(
            "{{\"succeeded\":{},\"revision\":{}}}",
            cas.succeeded, cas.revision
        ),
        Outcome::Rows { page, .. } => {
            let rows: Vec<String> = page.kvs.iter().map(kv_json).collect();
            format!("[{}]", rows.join(","))
        }
        Outcome::Ttl(ttl) => format!(
            "{{\"state\":\"{:?}\",\"remaining_ms\":{}}}",
            ttl.state, ttl.remaining_ms
        ),
        Outcome::Expired { applied, .. } => format!("{{\"applied\":{applied}}}"),
        Outcome::Persisted { removed } => format!("{{\"removed\":{removed}}}"),
        Outcome::LeaseGranted { lease_id } => format!("{{\"lease\":{lease_id}}}"),
        Outcome::LeaseKeptAlive { ttl_ms } => format!("{{\"ttl_ms\":{ttl_ms}}}"),
        Outcome::LeaseRevoked { deleted_keys } => format!("{{\"deleted_keys\":{deleted_keys}}}"),
        Outcome::LeaseTtl(lease) => {
            let keys: Vec<String> = lease.keys.iter().map(|key| json_string(key)).collect();
            format!(
                "{{\"remaining_ms\":{},\"granted_ttl_ms\":{},\"keys\":[{}]}}",
                lease.remaining_ms,
                lease.granted_ttl_ms,
                keys.join(",")
            )
        }
        Outcome::Members(members) => members_json(members),
        Outcome::Status(nodes) => {
            let lines: Vec<String> = nodes
                .iter()
                .map(|(endpoint, status)| status_json(endpoint, status))
                .collect();
            format!("[{}]", lines.join(","))
        }
    }
}

fn status_json(endpoint: &str, status: &Result<StatusResponse, ClientError>) -> String {
    let endpoint = json_string(endpoint.as_bytes());
    match status {
        Ok(status) => format!(
            "{{\"endpoint\":{endpoint},\"node\":{},\"role\":\"{}\",\"leader\":{},\"commit\":{},\"applied\":{},\"revision\":{},\"keys\":{}}}",
            status.node_id,
            role_name(status),
            status.leader_id,
            status.commit_index,
            status.applied_index,
            status.revision,
            status.key_count
        ),
        Err(error) => format!(
            "{{\"endpoint\":{endpoint},\"error\":{}}}",
            json_string(error.to_string().as_bytes())
        ),
    }
}

/// `text` as a JSON string (invalid UTF-8 replaced).
fn json_string(text: &[u8]) -> String {
    let text = String::from_utf8_lossy(text);
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn kv_json(kv: &KeyValue) -> String {
    format!(
        "{{\"key\":{},\"value\":{},\"create_revision\":{},\"mod_revision\":{},\"version\":{},\"lease\":{}}}",
        json_string(&kv.key),
        json_string(&kv.value),
        kv.create_revision,
        kv.mod_revision,
        kv.version,
        kv.lease_id
    )
}

#[cfg(test)]
mod tests {
    use paxkv_client::{CasResult, LeaseInfo, Role, ScanPage, TtlResult};

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

    /// (stdout in text, stdout in JSON, exit code) of an outcome.
    fn both(outcome: Outcome) -> (String, String, u8) {
        let result = Ok(outcome);
        let text = render(&result, Format::Text);
        let json = render(&result, Format::Json);
        assert_eq!(
            text.exit_code, json.exit_code,
            "the format does not change the code"
        );
        assert!(text.stderr.is_empty() && json.stderr.is_empty());
        (text.stdout, json.stdout, text.exit_code)
    }

    fn rendered(text: &str, json: &str, exit_code: u8) -> (String, String, u8) {
        (text.to_string(), json.to_string(), exit_code)
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
        let found_json = r#"{"key":"k","value":"say \"hi\"\u000a","create_revision":1,"mod_revision":5,"version":2,"lease":0}"#;
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
            page: ScanPage {
                kvs: vec![kv("a", "1", 1), kv("b", "2", 2)],
                more,
                revision: 2,
                log_time_ms: 0,
            },
            limit: 2,
        };
        let (text, json, code) = both(page(true));
        assert_eq!(text, "a = 1\nb = 2\n(more; raise --limit above 2)");
        assert!(json.starts_with(r#"[{"key":"a","value":"1","#), "{json}");
        assert!(json.ends_with(r#""lease":0}]"#) && json.matches("},{").count() == 1);
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
    fn status_lists_every_endpoint_and_an_unreachable_one_does_not_fail_the_command() {
        let leader = StatusResponse {
            node_id: 1,
            role: Role::Leader as i32,
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
            "[::1]:7001  node 1  leader    leader 1  commit 10  applied 9  revision 4  keys 2\n\
             [::1]:7002  unreachable: cluster unavailable: no answer"
        );
        assert_eq!(
            json,
            "[{\"endpoint\":\"[::1]:7001\",\"node\":1,\"role\":\"leader\",\"leader\":1,\
             \"commit\":10,\"applied\":9,\"revision\":4,\"keys\":2},\
             {\"endpoint\":\"[::1]:7002\",\"error\":\"cluster unavailable: no answer\"}]"
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
                    stdout: String::new(),
                    stderr: "kvctl: no lease 5".into(),
                    exit_code: EXIT_NOT_FOUND,
                }
            );
            let timeout = render(&Err(ClientError::Timeout("no answer".into())), format);
            assert_eq!(timeout.stderr, "kvctl: timed out: no answer");
            assert_eq!(
                (timeout.stdout.as_str(), timeout.exit_code),
                ("", EXIT_ERROR)
            );
        }
    }
}
