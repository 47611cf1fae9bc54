//! End-to-end tests with real `kv-server` processes on `[::1]`: each test starts its own
//! cluster on free ports in a temporary directory and stops every process it started.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

mod common;

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{LocalCluster, SECRET};
use paxkv_client::{ClientConfig, ClientError, PutOptions, ReadConsistency};
use paxkv_proto::client::{
    client_request, client_response, ClientRequest, ClientResponse, ErrorCode, GetRequest,
};
use prost::Message;

async fn wait_for_leader(cluster: &LocalCluster) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    let client = cluster.client();
    // A write that commits proves a working leader.
    client
        .put(b"warm-up", b"1", PutOptions::default())
        .await
        .expect("the cluster elects a leader");
    while Instant::now() < deadline {
        if let Some(index) = cluster.leader_index().await {
            return index;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no node reports itself leader");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_and_reads_through_every_node() {
    let cluster = LocalCluster::start(3, &[]);
    wait_for_leader(&cluster).await;
    let mut revision = 0;
    for (index, endpoint) in cluster.endpoints().into_iter().enumerate() {
        // A client that knows only this node: it follows the node's hint to the leader.
        let client = cluster.client_for(vec![endpoint]);
        let key = format!("key-{index}");
        revision = client
            .put(key.as_bytes(), b"value", PutOptions::default())
            .await
            .unwrap()
            .revision;
        let read = client
            .get(key.as_bytes(), ReadConsistency::Linearizable)
            .await
            .unwrap();
        assert_eq!(read.kv.unwrap().value, b"value");
    }
    for endpoint in cluster.endpoints() {
        let client = cluster.client_for(vec![endpoint.clone()]);
        // Served by this very node once it has applied the last write.
        let read = client
            .get(b"key-2", ReadConsistency::AtLeast(revision))
            .await
            .unwrap();
        assert!(
            read.revision >= revision,
            "{endpoint} served an older state"
        );
        assert_eq!(read.kv.unwrap().value, b"value");
        let stale = client.get(b"key-0", ReadConsistency::Stale).await.unwrap();
        assert_eq!(
            stale.kv.unwrap().value,
            b"value",
            "{endpoint} applied key-0 before key-2"
        );
    }
}

/// A follower serves a write and a linearizable read itself, through the leader: a client
/// that cannot follow a redirect (a raw connection here, a Redis client on the RESP port)
/// never sees which node leads. The answers come from the leader's state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_passes_writes_and_linearizable_reads_to_the_leader() {
    let cluster = LocalCluster::start(3, &[]);
    let leader = wait_for_leader(&cluster).await;
    let follower = (leader + 1) % 3;
    let endpoint = &cluster.endpoints()[follower];
    let secret = paxkv_proto::auth::ClusterSecret::new(SECRET.as_bytes()).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let connection = paxkv_client::Connection::open(endpoint, Some(&secret), deadline)
        .await
        .unwrap();
    let request = |request_id, body| ClientRequest {
        request_id,
        forwarded: false,
        client_id: 0,
        sequence: 0,
        body: Some(body),
    };
    let put = client_request::Body::Put(paxkv_proto::client::PutRequest {
        key: b"through-a-follower".to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    });
    let answer = connection.send(request(1, put), deadline).await.unwrap();
    let revision = match answer.await.unwrap() {
        client_response::Body::Put(put) => {
            assert!(put.succeeded);
            let header = put.header.unwrap();
            assert_eq!(header.served_by, leader as u64 + 1, "the leader applied it");
            assert_eq!(
                header.leader_address,
                cluster.endpoints()[leader],
                "the answer names the leader, for the next request"
            );
            header.revision
        }
        other => panic!("the follower did not pass the write on: {other:?}"),
    };
    let get = client_request::Body::Get(GetRequest {
        key: b"through-a-follower".to_vec(),
        ..Default::default()
    });
    let answer = connection.send(request(2, get), deadline).await.unwrap();
    match answer.await.unwrap() {
        client_response::Body::Get(get) => {
            assert_eq!(get.kv.unwrap().value, b"v");
            assert!(get.header.unwrap().revision >= revision);
        }
        other => panic!("the follower did not pass the read on: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_with_many_writes_in_flight_applies_each_once() {
    let cluster = LocalCluster::start(3, &[]);
    wait_for_leader(&cluster).await;
    let client = cluster.client();
    // Each write in flight needs its own session: nodes refuse a sequence older than the last
    // one they applied for a client id, and concurrent writes arrive in any order.
    let writes = (0..300u32).map(|index| {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .put(
                    format!("many/{index}").as_bytes(),
                    b"v",
                    PutOptions::default(),
                )
                .await
        })
    });
    let mut revisions = Vec::new();
    for write in writes.collect::<Vec<_>>() {
        revisions.push(write.await.unwrap().unwrap().revision);
    }
    revisions.sort_unstable();
    revisions.dedup();
    assert_eq!(revisions.len(), 300, "every write created its own revision");
    let page = client
        .scan(b"many/", b"", 1000, ReadConsistency::Linearizable)
        .await
        .unwrap();
    assert_eq!(page.kvs.len(), 300);
}

/// Writes keep going while the leader is killed; returns (acknowledged keys, longest gap).
async fn write_through_a_leader_kill(
    cluster: &mut LocalCluster,
    writers: usize,
) -> (Vec<String>, Duration, f64) {
    let leader = wait_for_leader(cluster).await;
    let acked = Arc::new(Mutex::new(Vec::<(Instant, String)>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let (client, acked, stop) = (cluster.client(), acked.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut sequence = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                sequence += 1;
                let key = format!("w{writer}-{sequence}");
                if client
                    .put(key.as_bytes(), b"v", PutOptions::default())
                    .await
                    .is_ok()
                {
                    acked.lock().unwrap().push((Instant::now(), key));
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status_before = cluster
        .client()
        .status_of(&cluster.endpoints()[leader])
        .await
        .unwrap();
    let acked_before = acked.lock().unwrap().len();
    let killed_at = Instant::now();
    cluster.kill(leader);
    tokio::time::sleep(Duration::from_millis(4000)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let mut times: Vec<Instant> = acked.iter().map(|(at, _)| *at).collect();
    times.sort();
    let gap = times
        .windows(2)
        .filter(|pair| pair[1] > killed_at)
        .map(|pair| pair[1] - pair[0])
        .max()
        .unwrap_or_default();
    let syncs_per_write = status_before.syncs as f64 / acked_before.max(1) as f64;
    (
        acked.into_iter().map(|(_, key)| key).collect(),
        gap,
        syncs_per_write,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_under_load_loses_no_acknowledged_write() {
    let mut cluster = LocalCluster::start(3, &[]);
    let (acked, gap, syncs_per_write) = write_through_a_leader_kill(&mut cluster, 16).await;
    eprintln!(
        "leader kill -9 under 16 writers: {} writes acknowledged, longest gap {} ms, {:.2} syncs per write on the old leader",
        acked.len(),
        gap.as_millis(),
        syncs_per_write
    );
    assert!(
        gap < Duration::from_secs(4),
        "writes stalled {} ms after the kill",
        gap.as_millis()
    );
    let client = cluster.client();
    for key in &acked {
        let read = client
            .get(key.as_bytes(), ReadConsistency::Linearizable)
            .await
            .unwrap();
        assert!(read.kv.is_some(), "acknowledged {key} was lost");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_follower_restarts_and_catches_up_also_from_a_snapshot() {
    let mut cluster = LocalCluster::start(3, &["--snapshot-entries", "100"]);
    let leader = wait_for_leader(&cluster).await;
    let follower = (leader + 1) % 3;
    cluster.kill(follower);
    let client = cluster.client();
    let mut revision = 0;
    for index in 0..400 {
        let key = format!("k{index}");
        revision = client
            .put(key.as_bytes(), b"v", PutOptions::default())
            .await
            .unwrap()
            .revision;
    }
    cluster.spawn(follower);
    let endpoint = cluster.endpoints()[follower].clone();
    let local = cluster.client_for(vec![endpoint]);
    let read = local
        .get(b"k399", ReadConsistency::AtLeast(revision))
        .await
        .unwrap();
    assert_eq!(read.kv.unwrap().value, b"v");
    let first = local.get(b"k0", ReadConsistency::Stale).await.unwrap();
    assert!(
        first.kv.is_some(),
        "the restarted follower has the compacted prefix too"
    );
}

/// A node restarted with a long log to apply answers requests (and hears its leader) between
/// the slices it applies the log in. Each slice took longer than the node loop's 10 ms tick,
/// so the next tick was always due, and the tick alone, first in the loop's order, kept every
/// request and peer message out until the whole log was applied (found measuring restarts at
/// a million keys: the leader was heard only after 500 ms of applying 93,000 entries).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_answers_between_the_slices_of_its_log_it_applies() {
    // No snapshot, so the restart applies every entry (4,800 of 128 writes each) in slices of
    // 200 entries: tens of milliseconds a slice, whatever the machine, and a connection needs a
    // few slices to be set up (the runtime polls sockets between them).
    let mut cluster = LocalCluster::start(
        3,
        &[
            "--snapshot-entries",
            "100000000",
            "--apply-entries-per-turn",
            "200",
        ],
    );
    let leader = wait_for_leader(&cluster).await;
    let client = cluster.client();
    let writers = (0..32u32).map(|writer| {
        let client = client.clone();
        tokio::spawn(async move {
            for _ in 0..150 {
                let puts = (0..paxkv_proto::TXN_OPS_MAX as u32).map(|key| {
                    let key = format!("w{writer}/{key}");
                    paxkv_client::TxnOp::put(key.as_bytes(), b"v", PutOptions::default())
                });
                client
                    .txn(paxkv_client::Txn::new().and_then(puts))
                    .await
                    .unwrap();
            }
        })
    });
    for writer in writers.collect::<Vec<_>>() {
        writer.await.unwrap();
    }
    let follower = (leader + 1) % 3;
    cluster.stop(follower);
    cluster.spawn(follower);
    let endpoint = cluster.endpoints()[follower].clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut answered_while_applying = None;
    loop {
        assert!(
            Instant::now() < deadline,
            "the restarted node never applied its log"
        );
        let Ok(status) = client.status_of(&endpoint).await else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        if status.applied_index < status.commit_index && answered_while_applying.is_none() {
            answered_while_applying = Some((status.applied_index, status.commit_index));
        }
        if status.commit_index >= 32 * 150 && status.applied_index >= status.commit_index {
            break;
        }
    }
    let (applied, commit) =
        answered_while_applying.expect("the node answered only once it had applied its whole log");
    eprintln!("first answered with {applied} of {commit} entries applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_and_restarting_every_node_keeps_every_acknowledged_write() {
    let mut cluster = LocalCluster::start(3, &[]);
    wait_for_leader(&cluster).await;
    let client = cluster.client();
    for index in 0..50 {
        client
            .put(format!("k{index}").as_bytes(), b"v", PutOptions::default())
            .await
            .unwrap();
    }
    for index in 0..3 {
        cluster.kill(index);
    }
    for index in 0..3 {
        cluster.spawn(index);
    }
    let client = cluster.client();
    for index in 0..50 {
        let read = client
            .get(
                format!("k{index}").as_bytes(),
                ReadConsistency::Linearizable,
            )
            .await
            .unwrap();
        assert!(
            read.kv.is_some(),
            "k{index} lost across a whole-cluster restart"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ttl_key_expires_on_time_after_its_writer_is_killed_for_good() {
    let mut cluster = LocalCluster::start(3, &[]);
    let leader = wait_for_leader(&cluster).await;
    let writer = cluster.client_for(vec![cluster.endpoints()[leader].clone()]);
    let options = PutOptions::new().ttl_ms(3000);
    writer.put(b"ttl-key", b"v", options).await.unwrap();
    let acked_at = Instant::now();
    cluster.kill(leader);
    let client = cluster.client();
    let mut last_seen = acked_at;
    loop {
        let read = client
            .get(b"ttl-key", ReadConsistency::Linearizable)
            .await
            .unwrap();
        if read.kv.is_none() {
            break;
        }
        last_seen = Instant::now();
        assert!(
            acked_at.elapsed() < Duration::from_secs(10),
            "the key never expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lived = last_seen - acked_at;
    let gone = acked_at.elapsed();
    eprintln!(
        "TTL 3000 ms, writer killed: seen until +{} ms, gone by +{} ms",
        lived.as_millis(),
        gone.as_millis()
    );
    assert!(
        gone >= Duration::from_millis(2970),
        "expired early: {} ms",
        gone.as_millis()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_refused_for_clients_and_peers() {
    let mut cluster = LocalCluster::start(3, &[]);
    // A fresh cluster starts once every member of three answered (see the server's
    // `bootstrap`): only then is one of them restarted with the wrong secret.
    wait_for_leader(&cluster).await;
    cluster.kill(2);
    std::fs::write(
        cluster.dir.path().join("wrong-secret"),
        "a-different-secret-of-some-length",
    )
    .unwrap();
    cluster.spawn_with_secret(2, "wrong-secret");
    wait_for_leader(&cluster).await;
    let mut config = ClientConfig::new(cluster.endpoints());
    config.secret = Some(b"not-the-cluster-secret-at-all".to_vec());
    config.timeout = Duration::from_secs(3);
    let intruder = paxkv_client::Client::new(config).unwrap();
    let error = intruder
        .get(b"k", ReadConsistency::Linearizable)
        .await
        .unwrap_err();
    assert!(matches!(error, ClientError::Authentication(_)), "{error}");
    let mut config = ClientConfig::new(cluster.endpoints());
    config.timeout = Duration::from_secs(3);
    let anonymous = paxkv_client::Client::new(config).unwrap();
    let error = anonymous
        .get(b"k", ReadConsistency::Linearizable)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("cluster secret"), "{error}");
    // The node with the wrong secret cannot join; the others log the refusal.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let logs = std::fs::read_to_string(cluster.log_path(0)).unwrap()
            + &std::fs::read_to_string(cluster.log_path(1)).unwrap();
        if logs.contains("wrong cluster secret")
            || logs.contains("failed to prove the cluster secret")
        {
            break;
        }
        assert!(Instant::now() < deadline, "no refusal was logged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = cluster.client().status_of(&cluster.endpoints()[2]).await;
    assert!(
        status.is_err(),
        "the impostor cannot even serve our clients"
    );
}

/// Sends raw bytes on a fresh authenticated-less connection and returns the answer frame.
fn raw_exchange(address: std::net::SocketAddr, bytes: &[u8]) -> Option<ClientResponse> {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(bytes).unwrap();
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
    stream.read_exact(&mut body).ok()?;
    ClientResponse::decode(body.as_slice()).ok()
}

fn error_code(response: &ClientResponse) -> Option<ErrorCode> {
    match &response.body {
        Some(client_response::Body::Error(error)) => ErrorCode::try_from(error.code).ok(),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors_and_the_server_keeps_serving() {
    let cluster = LocalCluster::start(3, &["--allow-unauthenticated-clients"]);
    wait_for_leader(&cluster).await;
    let client = cluster.client();
    client
        .put(b"kept", b"v", PutOptions::default())
        .await
        .unwrap();
    let big_key = vec![b'k'; paxkv_proto::KEY_BYTES_MAX + 1];
    let error = client
        .put(&big_key, b"v", PutOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(error, ClientError::InvalidArgument(ref m) if m.message.contains("limit")),
        "{error}"
    );
    let big_value = vec![b'v'; paxkv_proto::VALUE_BYTES_MAX + 1];
    let error = client
        .put(b"k", &big_value, PutOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(error, ClientError::InvalidArgument(_)), "{error}");
    let address = cluster.nodes[0].client_addr;
    // A frame header announcing 100 MB.
    let answer = raw_exchange(address, &(100u32 << 20).to_be_bytes()).expect("an answer");
    assert_eq!(error_code(&answer), Some(ErrorCode::FrameTooLarge));
    // Garbage that is not a request.
    let answer = raw_exchange(address, &[0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff]).expect("an answer");
    assert_eq!(error_code(&answer), Some(ErrorCode::BadRequest));
    // A well-formed request on a raw connection still works (unauthenticated clients allowed).
    let request = ClientRequest {
        request_id: 9,
        forwarded: false,
        client_id: 0,
        sequence: 0,
        body: Some(client_request::Body::Get(GetRequest {
            key: b"kept".to_vec(),
            consistency: 1,
            min_revision: 0,
            min_applied_index: 0,
        })),
    };
    let mut frame = (request.encoded_len() as u32).to_be_bytes().to_vec();
    frame.extend(request.encode_to_vec());
    let answer = raw_exchange(address, &frame).expect("an answer");
    assert_eq!(answer.request_id, 9);
    assert!(
        matches!(answer.body, Some(client_response::Body::Get(_))),
        "{answer:?}"
    );
    let read = client
        .get(b"kept", ReadConsistency::Linearizable)
        .await
        .unwrap();
    assert_eq!(read.kv.unwrap().value, b"v", "stored data is intact");
}

fn last_segment(dir: &std::path::Path) -> std::path::PathBuf {
    let mut segments: Vec<_> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    segments.sort();
    segments.pop().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_wal_tail_is_recovered_and_a_corrupt_middle_is_refused() {
    let mut cluster = LocalCluster::start(3, &[]);
    wait_for_leader(&cluster).await;
    let client = cluster.client();
    for index in 0..20 {
        client
            .put(format!("k{index}").as_bytes(), b"v", PutOptions::default())
            .await
            .unwrap();
    }
    // Torn tail: a few bytes of a record that never finished.
    let status = cluster.stop(2).unwrap();
    assert!(status.success(), "SIGTERM stops a node cleanly: {status}");
    let segment = last_segment(&cluster.data_dir(2));
    std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap()
        .write_all(&[40, 0, 0])
        .unwrap();
    cluster.spawn(2);
    let local = cluster.client_for(vec![cluster.endpoints()[2].clone()]);
    let revision = client
        .put(b"after", b"v", PutOptions::default())
        .await
        .unwrap()
        .revision;
    let read = local
        .get(b"after", ReadConsistency::AtLeast(revision))
        .await
        .unwrap();
    assert!(read.kv.is_some(), "the node with a torn tail serves again");
    // Corruption in the middle: the node refuses to start and says where.
    cluster.stop(2).unwrap();
    let segment = last_segment(&cluster.data_dir(2));
    let mut bytes = std::fs::read(&segment).unwrap();
    // The middle of what was appended (the file goes on with space allocated ahead, zeros).
    let appended = bytes.iter().rposition(|byte| *byte != 0).unwrap() + 1;
    let middle = appended / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&segment, &bytes).unwrap();
    // A node that wrongly starts must fail the test, not hang it: it is killed after 30 s.
    let mut node = tokio::process::Command::from(cluster.command(2, "secret"));
    let node = node
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let output = tokio::time::timeout(Duration::from_secs(30), node.wait_with_output())
        .await
        .expect("a node with a corrupt log must stop at once, not serve")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a corrupt log must stop the node");
    assert!(stderr.contains("corrupt record"), "{stderr}");
    assert!(
        stderr.contains(segment.file_name().unwrap().to_str().unwrap()),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&segment).unwrap(),
        bytes,
        "the corrupt log is left untouched"
    );
    let _ = SECRET;
}

/// Reads `key` from node `index` itself once it has applied `revision`, polling until
/// `deadline`. Gives up at once, with the node's error, if its process has exited (a node that
/// refuses its data directory exits at start).
async fn read_from_node(
    cluster: &mut LocalCluster,
    index: usize,
    key: &[u8],
    revision: u64,
    deadline: Instant,
) -> Result<Vec<u8>, String> {
    let mut config = ClientConfig::new(vec![cluster.endpoints()[index].clone()]);
    config.secret = Some(SECRET.as_bytes().to_vec());
    config.timeout = Duration::from_secs(2);
    let local = paxkv_client::Client::new(config).unwrap();
    loop {
        let child = cluster.nodes[index].child.as_mut().unwrap();
        if let Some(status) = child.try_wait().unwrap() {
            let log = std::fs::read_to_string(cluster.log_path(index)).unwrap();
            let error = log.rfind("Error: ").map_or(&log[..0], |at| &log[at..]);
            let error = error.lines().next().unwrap_or("no error logged");
            return Err(format!("node {index} exited ({status}): {error}"));
        }
        match local.get(key, ReadConsistency::AtLeast(revision)).await {
            Ok(read) => return Ok(read.kv.expect("the key exists").value),
            Err(error) if Instant::now() >= deadline => {
                return Err(format!("node {index} does not serve: {error}"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Regression: a restart checkpoints the log since the last snapshot, and wrote it as one
/// record; past RECORD_BYTES_MAX (256 MiB) recovery refuses such a record, so after a second
/// restart no node would start ("impossible record length 300015368").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_with_large_values_restarts_twice() {
    const VALUE_BYTES: usize = 1_000_000;
    const PUTS: usize = 300;
    const KEYS: usize = 5;
    let key = |put: usize| format!("large-{}", put % KEYS).into_bytes();
    // Every value differs, so a read shows which put it came from.
    let value = |put: usize| {
        let mut value = vec![(put % 251) as u8; VALUE_BYTES];
        value[..8].copy_from_slice(&(put as u64).to_le_bytes());
        value
    };
    let mut cluster = LocalCluster::start(3, &[]);
    wait_for_leader(&cluster).await;
    let client = cluster.client();
    let mut revision = 0;
    for put in 0..PUTS {
        revision = client
            .put(&key(put), &value(put), PutOptions::default())
            .await
            .unwrap()
            .revision;
    }
    let last_puts = PUTS - KEYS..PUTS;
    for restart in 1..=2 {
        for index in 0..3 {
            cluster.kill(index);
        }
        for index in 0..3 {
            cluster.spawn(index);
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        for index in 0..3 {
            for put in last_puts.clone() {
                let read = read_from_node(&mut cluster, index, &key(put), revision, deadline)
                    .await
                    .unwrap_or_else(|reason| panic!("restart {restart}: {reason}"));
                assert!(
                    read == value(put),
                    "restart {restart}: node {index} lost put {put}"
                );
            }
        }
        let client = cluster.client();
        for put in last_puts.clone() {
            let read = client
                .get(&key(put), ReadConsistency::Linearizable)
                .await
                .unwrap();
            assert!(
                read.kv.unwrap().value == value(put),
                "restart {restart}: a linearizable read lost put {put}"
            );
        }
    }
}

/// From a SIGSTOP of the leader to the first put acknowledged through a client that knows every
/// node: the other two elect a leader within two election timeouts (2 x 500 ms in these tests),
/// the client gives up on the silent node after one attempt (1 s by default), and a second of
/// slack for a loaded two-core machine.
const FROZEN_LEADER_FAILOVER_MAX: Duration = Duration::from_secs(3);

/// Regression test for a frozen leader stalling every client for its whole timeout: a stopped
/// process keeps its connections open, so nothing tells the client to look elsewhere but time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_resume_soon_after_the_leader_freezes() {
    const ROUNDS: usize = 3;
    const WRITES_PER_ROUND: usize = 5;
    let cluster = LocalCluster::start(3, &[]);
    wait_for_leader(&cluster).await;
    let client_with_timeout = |timeout| {
        let mut config = ClientConfig::new(cluster.endpoints());
        config.secret = Some(SECRET.as_bytes().to_vec());
        config.timeout = timeout;
        paxkv_client::Client::new(config).unwrap()
    };
    // Knows the leader (it wrote through it just before the freeze).
    let informed = client_with_timeout(Duration::from_secs(10));
    let mut windows = Vec::new();
    for round in 0..ROUNDS {
        let leader = cluster.settled_leader(Duration::from_secs(20)).await;
        informed
            .put(b"before-the-freeze", b"v", PutOptions::default())
            .await
            .unwrap();
        // Has never talked to any node: it starts from the endpoints, or a follower's hint.
        let fresh = client_with_timeout(Duration::from_secs(10));
        let frozen = cluster.freeze(leader);
        let frozen_at = Instant::now();
        let writes = [("informed", informed.clone()), ("fresh", fresh)].map(|(name, client)| {
            tokio::spawn(async move {
                let mut first_ack = None;
                for write in 0..WRITES_PER_ROUND {
                    let key = format!("after-freeze-{round}-{name}-{write}");
                    if let Err(error) = client.put(key.as_bytes(), b"v", PutOptions::default()).await
                    {
                        panic!(
                            "round {round}: the {name} client's put {write} failed {} ms after the freeze: {error}",
                            frozen_at.elapsed().as_millis()
                        );
                    }
                    first_ack.get_or_insert(frozen_at.elapsed());
                }
                (name, first_ack.unwrap(), frozen_at.elapsed())
            })
        });
        for write in writes {
            let (name, first_ack, all_acked) = write.await.unwrap();
            eprintln!(
                "round {round}: node {} frozen; {name} client: first put acknowledged after {} ms, all {WRITES_PER_ROUND} after {} ms",
                cluster.nodes[leader].id,
                first_ack.as_millis(),
                all_acked.as_millis()
            );
            windows.push(first_ack);
        }
        drop(frozen);
    }
    let slowest = windows.iter().max().unwrap();
    assert!(
        *slowest < FROZEN_LEADER_FAILOVER_MAX,
        "a put took {} ms after the leader froze (bound {} ms); every window: {:?}",
        slowest.as_millis(),
        FROZEN_LEADER_FAILOVER_MAX.as_millis(),
        windows
    );
}

/// A leader frozen past its lease, then resumed, must not answer a linearizable read from its
/// old state: by then the others may have elected a leader and acknowledged newer writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_never_serves_a_stale_linearizable_read() {
    const ROUNDS: u64 = 20;
    const TEST_TIME_MAX: Duration = Duration::from_secs(50);
    let started = Instant::now();
    let cluster = LocalCluster::start(3, &[]);
    wait_for_leader(&cluster).await;
    // Writers keep the leader busy, as in production: reads wait behind writes.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let (client, stop) = (cluster.client(), stop.clone());
            tokio::spawn(async move {
                let mut sequence = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    sequence += 1;
                    let key = format!("load-{writer}-{}", sequence % 100);
                    let _ = client
                        .put(key.as_bytes(), b"v", PutOptions::default())
                        .await;
                }
            })
        })
        .collect();
    let mut stale = Vec::new();
    let mut refused = 0;
    let mut rounds_run = 0;
    for round in 1..=ROUNDS {
        if started.elapsed() > TEST_TIME_MAX {
            break;
        }
        let leader = cluster.settled_leader(Duration::from_secs(20)).await;
        let endpoints = cluster.endpoints();
        let others: Vec<String> = (0..endpoints.len())
            .filter(|index| *index != leader)
            .map(|index| endpoints[index].clone())
            .collect();
        let writer = cluster.client_for(others);
        let mut config = ClientConfig::new(vec![endpoints[leader].clone()]);
        config.secret = Some(SECRET.as_bytes().to_vec());
        config.timeout = Duration::from_secs(5);
        let old_leader_only = paxkv_client::Client::new(config).unwrap();
        // Connected before the freeze: a frozen node cannot finish a handshake.
        old_leader_only
            .get(b"p", ReadConsistency::Stale)
            .await
            .unwrap();
        let frozen = cluster.freeze(leader);
        let acknowledged = writer
            .put(b"p", round.to_string().as_bytes(), PutOptions::default())
            .await
            .unwrap_or_else(|error| {
                panic!("round {round}: the put through the other two failed: {error}")
            });
        let read = tokio::spawn(async move {
            old_leader_only
                .get(b"p", ReadConsistency::Linearizable)
                .await
        });
        // The read must wait in the frozen node's socket when it resumes. The client writes it
        // at once, but nothing outside the kernel says when it arrived: give it a moment.
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(frozen);
        rounds_run += 1;
        match tokio::time::timeout(Duration::from_secs(8), read).await {
            Ok(Ok(Ok(get))) => {
                let value: Option<u64> = get
                    .kv
                    .as_ref()
                    .and_then(|kv| std::str::from_utf8(&kv.value).ok()?.parse().ok());
                if value.is_none_or(|value| value < round) || get.revision < acknowledged.revision {
                    stale.push(format!(
                        "round {round}: read {value:?} at revision {} after {round} was acknowledged at revision {}",
                        get.revision, acknowledged.revision
                    ));
                }
            }
            // Refusing, or not answering, is safe.
            Ok(Ok(Err(_))) | Err(_) => refused += 1,
            Ok(Err(panic)) => panic!("the read task failed: {panic}"),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for writer in writers {
        writer.abort();
    }
    eprintln!(
        "linearizable reads sent to a frozen old leader: {} of {rounds_run} rounds stale, {refused} refused or unanswered, {} ms",
        stale.len(),
        started.elapsed().as_millis()
    );
    assert!(rounds_run >= 5, "only {rounds_run} rounds ran in time");
    assert!(
        stale.is_empty(),
        "{} of {rounds_run} linearizable reads were stale:\n{}",
        stale.len(),
        stale.join("\n")
    );
}
