//! Membership change with real `kv-server` processes: a dead follower replaced under sixteen
//! writers, a cluster grown to five and shrunk back with its leader removed, and removed or
//! wiped nodes refused when they come back. Each test prints what it measured.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::LocalCluster;
use paxkv_client::{Client, PutOptions, ReadConsistency};

/// The exit code of a node that was removed (kv-server's `EXIT_REMOVED`).
const EXIT_REMOVED: i32 = 3;
/// The exit code of a node refused for coming back wiped (kv-server's `EXIT_REFUSED`).
const EXIT_REFUSED: i32 = 4;

/// Writers putting fresh keys until stopped; every acknowledged key is kept with its time.
struct Writers {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(Instant, String)>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    fn start(cluster: &LocalCluster, count: usize) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..count)
            .map(|writer| {
                let (client, stop, acked) = (cluster.client(), stop.clone(), acked.clone());
                tokio::spawn(async move {
                    let mut sequence = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        sequence += 1;
                        let key = format!("w{writer:02}-{sequence:06}");
                        let put = client.put(key.as_bytes(), key.as_bytes(), PutOptions::default());
                        if put.await.is_ok() {
                            acked.lock().unwrap().push((Instant::now(), key));
                        }
                    }
                })
            })
            .collect();
        Writers { stop, acked, tasks }
    }

    /// Stops the writers; returns the acknowledged keys and the longest time without any
    /// acknowledgement after `since`.
    async fn finish(self, since: Instant) -> (Vec<String>, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        let acked = self.acked.lock().unwrap().clone();
        let mut times: Vec<Instant> = acked.iter().map(|(at, _)| *at).collect();
        times.sort();
        let gap = times
            .windows(2)
            .filter(|pair| pair[1] > since)
            .map(|pair| pair[1] - pair[0])
            .max()
            .unwrap_or_default();
        (acked.into_iter().map(|(_, key)| key).collect(), gap)
    }
}

/// Every acknowledged key is there with its value (read back page by page, linearizably).
async fn check_all_there(client: &Client, acked: &[String]) {
    let mut found = std::collections::BTreeMap::new();
    let mut after = Vec::new();
    loop {
        let page = client
            .scan(b"w", &after, 1000, ReadConsistency::Linearizable)
            .await
            .unwrap();
        for kv in &page.kvs {
            found.insert(kv.key.clone(), kv.value.clone());
        }
        match (page.more, page.kvs.last()) {
            (true, Some(last)) => after = last.key.clone(),
            _ => break,
        }
    }
    for key in acked {
        assert_eq!(
            found.get(key.as_bytes()).map(Vec::as_slice),
            Some(key.as_bytes()),
            "acknowledged write {key} is lost"
        );
    }
}

/// Waits until the node at `index` is a voter; returns its id.
async fn wait_for_voter(cluster: &LocalCluster, index: usize, within: Duration) -> u64 {
    let client = cluster.client();
    let peer = cluster.nodes[index].peer_addr.to_string();
    let deadline = Instant::now() + within;
    loop {
        if let Ok(members) = client.members().await {
            let member = members.members.iter().find(|m| m.peer_address == peer);
            if let Some(member) = member.filter(|member| member.voter) {
                return member.node_id;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{peer} was not a voter within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for the process at `index` to exit by itself; its exit code.
async fn wait_for_exit(cluster: &mut LocalCluster, index: usize, within: Duration) -> Option<i32> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let child = cluster.nodes[index].child.as_mut().expect("running");
        if let Ok(Some(status)) = child.try_wait() {
            cluster.nodes[index].child = None;
            return status.code();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

fn log_of(cluster: &LocalCluster, index: usize) -> String {
    std::fs::read_to_string(cluster.log_path(index)).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_follower_is_replaced_under_sixteen_writers_and_nothing_is_lost() {
    let mut cluster = LocalCluster::start(3, &[]);
    let leader = cluster.settled_leader(Duration::from_secs(10)).await;
    let writers = Writers::start(&cluster, 16);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let dead = (leader + 1) % 3;
    let dead_id = cluster.nodes[dead].id;
    let killed_at = Instant::now();
    cluster.kill(dead);
    let joiner = cluster.spawn_joiner(&[]);
    let id = wait_for_voter(&cluster, joiner, Duration::from_secs(60)).await;
    cluster.nodes[joiner].id = id;
    let promoted_after = killed_at.elapsed();
    let removed = cluster.client().member_remove(dead_id).await.unwrap();
    assert!(removed.retired.contains(&dead_id), "{removed:?}");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (acked, gap) = writers.finish(killed_at).await;
    println!(
        "replace under 16 writers: {} writes acknowledged, new node {id} a voter {} ms after \
         the kill, longest write gap {} ms",
        acked.len(),
        promoted_after.as_millis(),
        gap.as_millis()
    );
    assert!(
        acked.len() > 100,
        "the writers made no progress: {}",
        acked.len()
    );
    check_all_there(&cluster.client(), &acked).await;
    // The dead node comes back with its data: a member tells it it was removed; it stops.
    cluster.spawn(dead);
    let code = wait_for_exit(&mut cluster, dead, Duration::from_secs(20)).await;
    assert_eq!(code, Some(EXIT_REMOVED), "{}", log_of(&cluster, dead));
    assert!(log_of(&cluster, dead).contains("removed from the cluster"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_grows_to_five_loses_its_leader_and_shrinks_back_to_three_under_writes() {
    let mut cluster = LocalCluster::start(3, &[]);
    cluster.settled_leader(Duration::from_secs(10)).await;
    let writers = Writers::start(&cluster, 4);
    let started = Instant::now();
    for _ in 0..2 {
        let joiner = cluster.spawn_joiner(&[]);
        let id = wait_for_voter(&cluster, joiner, Duration::from_secs(60)).await;
        cluster.nodes[joiner].id = id;
    }
    let client = cluster.client();
    assert_eq!(client.members().await.unwrap().members.len(), 5);
    // The leader removes itself: it commits the removal, steps down and exits.
    let leader = cluster.leader_index().await.expect("a leader");
    let leader_id = cluster.nodes[leader].id;
    client.member_remove(leader_id).await.unwrap();
    let code = wait_for_exit(&mut cluster, leader, Duration::from_secs(20)).await;
    assert_eq!(code, Some(EXIT_REMOVED), "{}", log_of(&cluster, leader));
    // And one more, a follower: back to three voters.
    let follower = (0..cluster.nodes.len())
        .find(|index| cluster.nodes[*index].child.is_some() && !cluster.nodes[*index].joins)
        .unwrap();
    client
        .member_remove(cluster.nodes[follower].id)
        .await
        .unwrap();
    let code = wait_for_exit(&mut cluster, follower, Duration::from_secs(20)).await;
    assert_eq!(code, Some(EXIT_REMOVED), "{}", log_of(&cluster, follower));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (acked, gap) = writers.finish(started).await;
    let members = client.members().await.unwrap();
    let voters = members.members.iter().filter(|m| m.voter).count();
    println!(
        "grow to 5, remove the leader, shrink to 3: {} writes acknowledged, longest gap {} ms",
        acked.len(),
        gap.as_millis()
    );
    assert_eq!(voters, 3, "{members:?}");
    check_all_there(&client, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_node_does_not_start_again_and_a_wiped_one_is_refused() {
    let mut cluster = LocalCluster::start(3, &[]);
    let leader = cluster.settled_leader(Duration::from_secs(10)).await;
    let client = cluster.client();
    client
        .put(b"before", b"removal", PutOptions::default())
        .await
        .unwrap();
    let gone = (leader + 1) % 3;
    client.member_remove(cluster.nodes[gone].id).await.unwrap();
    let code = wait_for_exit(&mut cluster, gone, Duration::from_secs(20)).await;
    assert_eq!(code, Some(EXIT_REMOVED), "{}", log_of(&cluster, gone));
    // With its data: its own log says it was removed, so it refuses at once.
    cluster.spawn(gone);
    let code = wait_for_exit(&mut cluster, gone, Duration::from_secs(10)).await;
    assert_eq!(code, Some(EXIT_REMOVED), "{}", log_of(&cluster, gone));
    assert!(log_of(&cluster, gone).contains("its id is retired"));
    // Wiped, under its old id and flags: the members refuse it (as removed, or as another
    // incarnation of a node they knew, whichever they notice first).
    std::fs::remove_dir_all(cluster.data_dir(gone)).unwrap();
    cluster.spawn(gone);
    let code = wait_for_exit(&mut cluster, gone, Duration::from_secs(20)).await;
    assert!(
        code == Some(EXIT_REMOVED) || code == Some(EXIT_REFUSED),
        "{code:?}: {}",
        log_of(&cluster, gone)
    );
    // The two left go on serving.
    let value = client
        .get(b"before", ReadConsistency::Linearizable)
        .await
        .unwrap();
    assert_eq!(value.kv.unwrap().value, b"removal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_comes_back_wiped_under_its_old_id_is_refused_by_restarted_peers() {
    let mut cluster = LocalCluster::start(3, &[]);
    let leader = cluster.settled_leader(Duration::from_secs(10)).await;
    let client = cluster.client();
    client
        .put(b"kept", b"safe", PutOptions::default())
        .await
        .unwrap();
    let wiped = (leader + 1) % 3;
    cluster.kill(wiped);
    std::fs::remove_dir_all(cluster.data_dir(wiped)).unwrap();
    // The others restart meanwhile: what they knew of its incarnation must survive that.
    for other in (0..3).filter(|index| *index != wiped) {
        cluster.kill(other);
        cluster.spawn(other);
    }
    cluster.settled_leader(Duration::from_secs(10)).await;
    cluster.spawn(wiped);
    let code = wait_for_exit(&mut cluster, wiped, Duration::from_secs(20)).await;
    let log = log_of(&cluster, wiped);
    assert_eq!(code, Some(EXIT_REFUSED), "{log}");
    assert!(log.contains("wiped data directory"), "{log}");
    let value = client
        .get(b"kept", ReadConsistency::Linearizable)
        .await
        .unwrap();
    assert_eq!(value.kv.unwrap().value, b"safe");
}
