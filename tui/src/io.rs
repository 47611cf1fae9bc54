//! The only part of kv-top that talks to the cluster: one poll of every node, and commands.

use std::time::{Duration, Instant};

use paxkv_client::{Client, ReadConsistency, StatusResponse};

use crate::app::{Command, CommandResult, KeyRow, NodeStatus, PeerView, Poll, Role};

/// How many keys the browser shows.
pub const KEYS_SHOWN: u32 = 200;
/// Longest value preview, in characters.
const PREVIEW_CHARS: usize = 40;

fn node_status(status: StatusResponse) -> NodeStatus {
    let role = match status.role() {
        paxkv_client::Role::Leader => Role::Leader,
        paxkv_client::Role::Candidate => Role::Candidate,
        paxkv_client::Role::Follower => Role::Follower,
    };
    NodeStatus {
        node_id: status.node_id,
        role,
        ballot: (status.ballot_round, status.ballot_node),
        leader_id: status.leader_id,
        commit_index: status.commit_index,
        applied_index: status.applied_index,
        revision: status.revision,
        key_count: status.key_count,
        lease_count: status.lease_count,
        requests_total: status.requests_total,
        peers: status
            .peers
            .iter()
            .map(|peer| PeerView {
                node_id: peer.node_id,
                reachable: peer.reachable,
                last_contact_ms: peer.last_contact_ms,
                lag_entries: peer.lag_entries,
            })
            .collect(),
    }
}

/// Text for bytes: UTF-8 where it is, escapes where it is not, cut to `limit` characters.
pub fn printable(bytes: &[u8], limit: usize) -> String {
    let text: String = String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| if c.is_control() { '·' } else { c })
        .collect();
    if text.chars().count() > limit {
        let cut: String = text.chars().take(limit.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        text
    }
}

async fn keys(client: &Client, prefix: &str) -> Result<Vec<KeyRow>, String> {
    let page = client
        .scan(
            prefix.as_bytes(),
            b"",
            KEYS_SHOWN,
            ReadConsistency::Linearizable,
        )
        .await
        .map_err(|error| error.to_string())?;
    Ok(page
        .kvs
        .into_iter()
        .map(|kv| KeyRow {
            key: printable(&kv.key, 60),
            value_preview: printable(&kv.value, PREVIEW_CHARS),
            revision: kv.mod_revision,
            ttl_ms: (kv.expires_at_ms != 0)
                .then(|| kv.expires_at_ms.saturating_sub(page.log_time_ms)),
            lease: kv.lease_id,
        })
        .collect())
}

/// Asks every node for its status, times one linearizable read and reads the browser's keys,
/// all at once.
pub async fn poll(client: &Client, prefix: &str, started: Instant) -> Poll {
    let probe = async {
        let begun = Instant::now();
        client
            .get(b"kv-top/probe", ReadConsistency::Linearizable)
            .await
            .ok()
            .map(|_| begun.elapsed().as_micros() as u64)
    };
    let members = async {
        let members = client.members().await.ok()?;
        let ids = |voter: bool| {
            members
                .members
                .iter()
                .filter(|member| member.voter == voter)
                .map(|member| member.node_id)
                .collect()
        };
        Some(crate::app::Membership {
            configuration_index: members.configuration_index,
            change_in_progress: members.change_in_progress,
            voters: ids(true),
            learners: ids(false),
        })
    };
    let (statuses, probe_latency_us, keys, members) =
        tokio::join!(client.status_all(), probe, keys(client, prefix), members);
    let nodes = statuses
        .into_iter()
        .map(|(endpoint, status)| match status {
            Ok(status) => Ok(node_status(status)),
            // The row already names the node; say only what went wrong.
            Err(paxkv_client::ClientError::Unavailable(problem)) => Err(problem
                .message
                .trim_start_matches(&format!("{endpoint}: "))
                .to_string()),
            Err(error) => Err(error.to_string()),
        })
        .collect();
    Poll {
        at_ms: started.elapsed().as_millis() as u64,
        nodes,
        probe_latency_us,
        keys,
        members,
    }
}

/// Runs a command from the command line.
pub async fn run(client: &Client, command: Command) -> CommandResult {
    let failed = |error: paxkv_client::ClientError| error.to_string();
    match command {
        Command::Get(key) => {
            let read = client
                .get(key.as_bytes(), ReadConsistency::Linearizable)
                .await
                .map_err(failed)?;
            Ok(match read.kv {
                Some(kv) => format!(
                    "{key} = {} (revision {})",
                    printable(&kv.value, 200),
                    kv.mod_revision
                ),
                None => format!("{key} does not exist"),
            })
        }
        Command::Put(key, value) => {
            let put = client
                .put(
                    key.as_bytes(),
                    value.as_bytes(),
                    paxkv_client::PutOptions::default(),
                )
                .await
                .map_err(failed)?;
            Ok(format!("{key} written at revision {}", put.revision))
        }
        Command::Delete(key) => {
            let deleted = client.delete(key.as_bytes()).await.map_err(failed)?;
            Ok(if deleted.deleted {
                format!("{key} deleted at revision {}", deleted.revision)
            } else {
                format!("{key} did not exist")
            })
        }
    }
}

/// How long one poll may wait for a node that does not answer.
pub fn poll_timeout(refresh: Duration) -> Duration {
    refresh.clamp(Duration::from_millis(500), Duration::from_secs(2))
}
