//! The lock and election recipes of the Rust client against real `kv-server` processes,
//! through the faults they exist for: a leader killed while holders work, and a contender cut
//! off from the cluster whose lease runs out while it still believes it leads.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::LocalCluster;
use paxkv_client::{Client, LockOptions, PutOptions, ReadConsistency, Txn, TxnOp};
use tokio::time::timeout;

/// Bounds every wait of these tests.
const PATIENCE: Duration = Duration::from_secs(30);

async fn counter(client: &Client) -> u64 {
    client
        .get(b"counter", ReadConsistency::Linearizable)
        .await
        .unwrap()
        .kv
        .map_or(0, |kv| {
            String::from_utf8(kv.value).unwrap().parse().unwrap()
        })
}

/// Three workers take turns incrementing a counter by read-then-write, each write fenced by
/// the lock's compare, while the cluster's leader is killed. Every fenced write that
/// succeeded counts once, and fencing tokens grow in the order the holders wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_holders_take_turns_through_a_leader_kill() {
    let mut cluster = LocalCluster::start(3, &[]);
    let client = cluster.client();
    client
        .put(b"warm-up", b"1", PutOptions::new())
        .await
        .unwrap();
    let leader = cluster.leader_index().await.unwrap();
    let written = Arc::new(Mutex::new(Vec::<(u64, u64)>::new()));
    let inside = Arc::new(AtomicUsize::new(0));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..3 {
        let (client, written) = (cluster.client(), written.clone());
        let (inside, overlaps) = (inside.clone(), overlaps.clone());
        workers.push(tokio::spawn(async move {
            for _ in 0..4 {
                let options = LockOptions::new().ttl_ms(3_000).timeout(PATIENCE);
                let lock = client.lock(b"locks/counter", options).await.unwrap();
                if inside.fetch_add(1, Ordering::SeqCst) != 0 {
                    overlaps.fetch_add(1, Ordering::SeqCst);
                }
                let next = counter(&client).await + 1;
                tokio::time::sleep(Duration::from_millis(150)).await;
                let txn = Txn::new().when([lock.held().held()]).and_then([TxnOp::put(
                    b"counter",
                    next.to_string().as_bytes(),
                    PutOptions::new(),
                )]);
                inside.fetch_sub(1, Ordering::SeqCst);
                let result = client.txn(txn).await.unwrap();
                if result.succeeded {
                    written
                        .lock()
                        .unwrap()
                        .push((result.revision, lock.token()));
                }
                lock.unlock().await.unwrap();
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.kill(leader);
    for worker in workers {
        timeout(PATIENCE * 2, worker).await.unwrap().unwrap();
    }
    let mut written = written.lock().unwrap().clone();
    written.sort();
    eprintln!(
        "{} fenced increments, {} overlapping holders seen",
        written.len(),
        overlaps.load(Ordering::SeqCst)
    );
    assert!(
        written.len() >= 6,
        "too few increments got through: {written:?}"
    );
    assert_eq!(
        counter(&cluster.client()).await,
        written.len() as u64,
        "an increment was lost"
    );
    assert!(
        written.windows(2).all(|pair| pair[0].1 < pair[1].1),
        "fencing tokens do not grow with the writes: {written:?}"
    );
    // Every holder released: nothing is left in the queue.
    let left = client
        .scan(b"locks/counter/", b"", 100, ReadConsistency::Linearizable)
        .await;
    assert!(left.unwrap().kvs.is_empty());
}

/// A lock that cannot be had in time is given up, leaving nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_wait_times_out_and_leaves_no_key() {
    let cluster = LocalCluster::start(3, &[]);
    let client = cluster.client();
    let held = client
        .lock(b"locks/busy", LockOptions::new())
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let waited = client
        .lock(
            b"locks/busy",
            LockOptions::new().timeout(Duration::from_millis(800)),
        )
        .await;
    assert!(
        matches!(waited, Err(paxkv_client::ClientError::Timeout(_))),
        "{:?}",
        waited.err()
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let queue = client
        .scan(b"locks/busy/", b"", 100, ReadConsistency::Linearizable)
        .await;
    assert_eq!(
        queue.unwrap().kvs.len(),
        1,
        "the waiter left its key behind"
    );
    let token = held.token();
    held.unlock().await.unwrap();
    let next = client
        .lock(b"locks/busy", LockOptions::new().ttl_ms(900))
        .await
        .unwrap();
    assert!(next.token() > token);
    // Someone ends the holder's lease: the holder hears of it at its next renewal.
    let queue = client
        .scan(b"locks/busy/", b"", 100, ReadConsistency::Linearizable)
        .await;
    let lease_id = queue.unwrap().kvs[0].lease_id;
    client.lease_revoke(lease_id).await.unwrap();
    timeout(PATIENCE, next.held().lost())
        .await
        .expect("the holder never learns it lost");
    assert!(next.held().is_lost());
}

/// A leader that dies (its process stops: no more renewals) loses leadership when its lease
/// runs out; the next contender leads and observers follow; a write the old leader sends
/// afterwards with its fence (a paused process waking up) is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_passes_when_the_leader_dies_and_its_late_writes_are_fenced() {
    let cluster = LocalCluster::start(3, &[]);
    let client = cluster.client();
    let options = LockOptions::new().ttl_ms(2_000).timeout(PATIENCE);
    // Contender A runs on a runtime of its own, which stops when A "dies".
    let a_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (a_client, a_options) = (cluster.client(), options.clone());
    let a = a_runtime
        .spawn(async move {
            let leadership = a_client
                .election(b"svc/leader")
                .campaign(b"a", a_options)
                .await
                .unwrap();
            let held = leadership.held();
            // Never resigned: it dies holding.
            std::mem::forget(leadership);
            held
        })
        .await
        .unwrap();
    let mut observer = client.election(b"svc/leader").observe().await.unwrap();
    let seen = timeout(PATIENCE, observer.next()).await.unwrap().unwrap();
    assert_eq!(seen.unwrap().value, b"a");

    let b_client = cluster.client();
    let b = tokio::spawn(async move {
        b_client
            .election(b"svc/leader")
            .campaign(b"b", options)
            .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!b.is_finished(), "b leads while a is alive");
    let died = std::time::Instant::now();
    a_runtime.shutdown_background();
    let b = timeout(PATIENCE, b).await.unwrap().unwrap().unwrap();
    eprintln!(
        "b leads {} ms after a died (a's lease: 2000 ms)",
        died.elapsed().as_millis()
    );
    assert!(b.held().token() > a.token());
    let seen = timeout(PATIENCE, observer.next()).await.unwrap().unwrap();
    assert_eq!(seen.unwrap().value, b"b");

    // A's late write, fenced by what it held, is refused.
    let late = Txn::new().when([a.held()]).and_then([TxnOp::put(
        b"svc/state",
        b"written by a",
        PutOptions::new(),
    )]);
    assert!(!client.txn(late).await.unwrap().succeeded);

    assert!(b.proclaim(b"b2").await.unwrap());
    let seen = timeout(PATIENCE, observer.next()).await.unwrap().unwrap();
    assert_eq!(seen.unwrap().value, b"b2");
    b.resign().await.unwrap();
    let seen = timeout(PATIENCE, observer.next()).await.unwrap().unwrap();
    assert!(seen.is_none(), "{seen:?}");
    assert!(client
        .election(b"svc/leader")
        .leader()
        .await
        .unwrap()
        .is_none());
}
