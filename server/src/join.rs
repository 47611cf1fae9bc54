//! Joining a running cluster: a node started with `--join` and an empty data directory asks
//! the cluster to add it as a learner (the cluster picks its id), starts from the cluster's
//! first configuration, catches up from the leader, and asks to be promoted once it is close
//! enough (unless told not to).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use paxkv_client::{refusal_passes_with_time, Client, ClientConfig, ClientError, MembersResponse};
use paxkv_core::NodeId;

use crate::{NodeConfig, ServerError};

/// How long a joining node keeps asking before it gives up.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one attempt of the join may take (retries included) before the node asks again.
const JOIN_RETRY_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between promotion attempts while the learner catches up.
pub const PROMOTE_RETRY: Duration = Duration::from_millis(500);

/// What the cluster told a joining node.
#[derive(Debug, Clone)]
pub struct Joined {
    pub id: NodeId,
    /// The voters the cluster started with: where the new node's log starts from.
    pub first_voters: Vec<NodeId>,
    /// The members' peer addresses, as the cluster knows them.
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// The same with their client addresses, kept with the first configuration so that the
    /// node reaches the members again after a restart (even before its log tells it).
    pub addresses: Vec<paxkv_proto::peer::MemberAddress>,
}

fn client(
    endpoints: &[String],
    config: &NodeConfig,
    timeout: Duration,
) -> Result<Client, ServerError> {
    let client_config = ClientConfig::new(endpoints.to_vec())
        .secret(config.secret.expose().to_vec())
        .timeout(timeout);
    Client::new(client_config).map_err(|error| ServerError::Join(error.to_string()))
}

/// Asks the cluster at `endpoints` to add this node as a learner.
pub async fn join(endpoints: &[String], config: &NodeConfig) -> Result<Joined, ServerError> {
    if endpoints.is_empty() {
        return Err(ServerError::Join("--join lists no endpoint".into()));
    }
    let client = client(endpoints, config, JOIN_RETRY_TIMEOUT)?;
    let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
    let (peer_address, client_address) =
        (config.peer_addr.to_string(), config.client_addr.to_string());
    let added = loop {
        let added = client.member_add(&peer_address, &client_address).await;
        let retry = match &added {
            // Another change is finishing: ask again.
            Err(ClientError::Refused(refusal)) => refusal_passes_with_time(&refusal.message),
            // No leader answered yet (an election, a restart of the cluster).
            Err(ClientError::Unavailable(_) | ClientError::Timeout(_)) => true,
            _ => false,
        };
        if !retry || tokio::time::Instant::now() >= deadline {
            break added;
        }
        tokio::time::sleep(PROMOTE_RETRY).await;
    };
    client.close();
    let added = added
        .map_err(|error| ServerError::Join(format!("{error} (asked {})", endpoints.join(","))))?;
    joined_from(&added)
}

fn joined_from(added: &MembersResponse) -> Result<Joined, ServerError> {
    if added.node_id == 0 || added.first_voters.is_empty() {
        return Err(ServerError::Join(format!(
            "the cluster's answer names no id or no first configuration: {added:?}"
        )));
    }
    let peers = added
        .members
        .iter()
        .filter_map(|member| {
            let address = member.peer_address.parse().ok()?;
            Some((NodeId(member.node_id), address))
        })
        .collect();
    let addresses = added
        .members
        .iter()
        .filter(|member| !member.peer_address.is_empty())
        .map(|member| paxkv_proto::peer::MemberAddress {
            node: member.node_id,
            peer_address: member.peer_address.clone(),
            client_address: member.client_address.clone(),
        })
        .collect();
    Ok(Joined {
        id: NodeId(added.node_id),
        first_voters: added.first_voters.iter().copied().map(NodeId).collect(),
        peers,
        addresses,
    })
}

/// Asks the cluster to promote learner `id` until it is a voter, the cluster refuses for a
/// reason waiting will not change, or `shutdown`.
pub async fn promote_when_caught_up(
    endpoints: Vec<String>,
    id: NodeId,
    config: NodeConfig,
    shutdown: crate::shutdown::Shutdown,
) {
    let Ok(client) = client(&endpoints, &config, Duration::from_secs(5)) else {
        return;
    };
    loop {
        let attempt = tokio::select! {
            biased;
            _ = shutdown.stopped() => return,
            attempt = client.member_promote(id.0) => attempt,
        };
        match attempt {
            Ok(_) => {
                tracing::info!(%id, "promoted to voter");
                return;
            }
            // Still catching up: it is promoted once within the bound of the leader's commit.
            Err(ClientError::Refused(message)) if refusal_passes_with_time(&message.message) => {
                tracing::debug!(%message, "not promoted yet");
            }
            Err(ClientError::Refused(message)) => {
                tracing::warn!(%message, "the cluster refused to promote this node; it stays a learner");
                return;
            }
            Err(error) => tracing::debug!(%error, "promotion not answered; retrying"),
        }
        tokio::select! {
            biased;
            _ = shutdown.stopped() => return,
            _ = tokio::time::sleep(PROMOTE_RETRY) => {}
        }
    }
}
