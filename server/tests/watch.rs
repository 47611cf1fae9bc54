//! Watches against real `kv-server` processes: one client's watches share one connection per
//! node, and one that stops reading neither holds up the others nor loses a change.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::LocalCluster;
use paxkv_client::{EventKind, PutOptions, WatchOptions};
use tokio::time::timeout;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_that_stops_reading_neither_holds_up_the_others_nor_loses_a_change() {
    let cluster = LocalCluster::start(3, &[]);
    // One endpoint: both watches on the same node, so on the same connection.
    let client = cluster.client_for(vec![cluster.endpoints()[0].clone()]);
    client
        .put(b"warm-up", b"1", PutOptions::new())
        .await
        .unwrap();
    let mut slow = client
        .watch(b"slow/", WatchOptions::new().prefix())
        .await
        .unwrap();
    let mut fast = client.watch(b"fast", WatchOptions::new()).await.unwrap();
    // Far more answers than a watch's queue holds (256) pile up for the one not reading.
    const WRITES: usize = 600;
    for i in 0..WRITES {
        client
            .put(format!("slow/{i:04}").as_bytes(), b"v", PutOptions::new())
            .await
            .unwrap();
    }
    client.put(b"fast", b"1", PutOptions::new()).await.unwrap();
    let batch = timeout(Duration::from_secs(5), fast.next())
        .await
        .expect("the reading watch was held up by the other")
        .unwrap();
    assert_eq!(batch.events.len(), 1);
    assert_eq!(batch.events[0].kv.as_ref().unwrap().key, b"fast");

    // The slow one gets every change once, in order, though the hub dropped it on the way.
    let mut seen = BTreeSet::new();
    let mut last = 0;
    while seen.len() < WRITES {
        let batch = timeout(Duration::from_secs(10), slow.next())
            .await
            .expect("the slow watch stalled")
            .unwrap();
        for event in batch.events {
            assert_eq!(event.kind(), EventKind::Put);
            assert!(
                event.revision > last,
                "revision {} after {last}",
                event.revision
            );
            last = event.revision;
            let key = event.kv.unwrap().key;
            assert!(seen.insert(key.clone()), "{key:?} delivered twice");
        }
    }
    assert_eq!(seen.len(), WRITES);
}

/// A node that freezes (SIGSTOP: its connections stay open, nothing answers) is noticed by the
/// watch connection's own pulse within a few seconds, and the watch goes on through another
/// node with every change made meanwhile, once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_moves_on_when_its_node_freezes_and_misses_nothing() {
    let cluster = LocalCluster::start(3, &[]);
    let writer = cluster.client();
    writer
        .put(b"warm-up", b"1", PutOptions::new())
        .await
        .unwrap();
    let leader = cluster.leader_index().await.unwrap();
    let frozen_node = (leader + 1) % 3;
    // The watch starts on the node that will freeze (its first endpoint), then may use any.
    let mut endpoints = cluster.endpoints();
    endpoints.rotate_left(frozen_node);
    let client = cluster.client_for(endpoints);
    let mut watch = client
        .watch(b"frozen/", WatchOptions::new().prefix())
        .await
        .unwrap();
    writer
        .put(b"frozen/0", b"v", PutOptions::new())
        .await
        .unwrap();
    let first = timeout(Duration::from_secs(5), watch.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.events[0].kv.as_ref().unwrap().key, b"frozen/0");
    let frozen = cluster.freeze(frozen_node);
    let started = std::time::Instant::now();
    for i in 1..=5 {
        writer
            .put(format!("frozen/{i}").as_bytes(), b"v", PutOptions::new())
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let batch = timeout(Duration::from_secs(15), watch.next())
            .await
            .expect("the watch stayed on the frozen node")
            .unwrap();
        seen.extend(batch.events.into_iter().map(|event| event.kv.unwrap().key));
    }
    eprintln!(
        "moved on {} ms after the freeze",
        started.elapsed().as_millis()
    );
    let expected: Vec<Vec<u8>> = (1..=5)
        .map(|i| format!("frozen/{i}").into_bytes())
        .collect();
    assert_eq!(seen, expected);
    drop(frozen);
}
