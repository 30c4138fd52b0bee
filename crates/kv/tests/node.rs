//! KvNode in-process: three nodes in one tokio runtime on loopback, driven
//! through the Rust client and the node routers. Restart replays only after
//! the durable applied index; a learner added after compaction catches up
//! from a snapshot installed into its redb state machine; epochs and limits.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use rhea_kv::{
    KvClient, KvError, KvNode, NodeConfig, ReadConsistency, RegionEpoch, RouterOptions,
    ServerOptions,
};
use rhea_raft::Role;
use tokio::net::TcpListener;
use tokio::sync::watch;

const DEADLINE: Duration = Duration::from_secs(20);

struct TestDir(PathBuf);
impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn test_dir(name: &str) -> TestDir {
    let d = std::env::temp_dir().join(format!("rhea-kv-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    TestDir(d)
}

/// A free port on `ip`. Each test uses its own loopback address, so a port
/// freed here cannot be taken by a parallel test before the node binds it.
async fn free_addr(ip: [u8; 4]) -> SocketAddr {
    let l = TcpListener::bind(SocketAddr::from((ip, 0))).await.unwrap();
    l.local_addr().unwrap()
}

struct Running {
    node: KvNode,
    client_addr: SocketAddr,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
}

async fn start(
    dir: &std::path::Path,
    id: u64,
    raft: SocketAddr,
    cluster: &BTreeMap<u64, SocketAddr>,
    regions: u32,
    join: bool,
) -> Running {
    let listener = TcpListener::bind(SocketAddr::new(raft.ip(), 0))
        .await
        .unwrap();
    let client_addr = listener.local_addr().unwrap();
    let mut cfg = NodeConfig::new(
        id,
        dir.join(format!("n{id}")),
        raft,
        client_addr.to_string(),
    );
    cfg.initial_cluster = cluster.clone();
    cfg.join = join;
    cfg.regions = rhea_kv::even_split(regions).unwrap();
    cfg.driver.tick_interval_ms = 10;
    cfg.election_timeout_ms = 200;
    cfg.heartbeat_interval_ms = 20;
    cfg.snapshot_every_entries = 0;
    let node = KvNode::start(cfg)
        .await
        .unwrap_or_else(|e| panic!("node {id} does not start: {e}"));
    let (stop, stop_rx) = watch::channel(false);
    let server = tokio::spawn(rhea_kv::serve(
        listener,
        node.router().clone(),
        ServerOptions::default(),
        std::sync::Arc::new(String::new),
        stop_rx,
    ));
    Running {
        node,
        client_addr,
        stop,
        server,
    }
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.server.await;
        self.node.shutdown().await.unwrap();
    }
}

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while start.elapsed() < DEADLINE {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out: {what}");
}

async fn cluster3(
    dir: &std::path::Path,
    regions: u32,
    ip: [u8; 4],
) -> (Vec<Running>, BTreeMap<u64, SocketAddr>) {
    let mut cluster = BTreeMap::new();
    for id in 1..=3 {
        cluster.insert(id, free_addr(ip).await);
    }
    let mut nodes = Vec::new();
    for (id, addr) in &cluster {
        nodes.push(start(dir, *id, *addr, &cluster, regions, false).await);
    }
    (nodes, cluster)
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn raw(s: &[u8]) -> Bytes {
    Bytes::copy_from_slice(s)
}

async fn leader_of(nodes: &[Running], region: u64) -> Option<usize> {
    for (i, n) in nodes.iter().enumerate() {
        if let Ok(st) = n.node.store().status(region).await
            && st.role == Role::Leader
        {
            return Some(i);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_api_across_regions_and_nodes() {
    let dir = test_dir("api");
    let (nodes, _) = cluster3(&dir.0, 4, [127, 0, 1, 1]).await;
    let seeds: Vec<String> = nodes.iter().map(|n| n.client_addr.to_string()).collect();
    let client = KvClient::connect(seeds, RouterOptions::default())
        .await
        .unwrap();
    // Keys in every region (regions split on the first byte).
    let keys: Vec<Bytes> = [0x10u8, 0x50, 0x90, 0xd0]
        .iter()
        .map(|p| Bytes::from(vec![*p, b'k']))
        .collect();
    for k in &keys {
        client.put(k.clone(), b("v1")).await.unwrap();
    }
    assert_eq!(client.get(keys[2].clone()).await.unwrap(), Some(b("v1")));
    assert!(client.contains_key(keys[3].clone()).await.unwrap());
    assert_eq!(
        client.put_if_absent(keys[0].clone(), b("x")).await.unwrap(),
        Some(b("v1"))
    );
    assert_eq!(
        client.put_if_absent(b("\x11new"), b("x")).await.unwrap(),
        None
    );
    assert_eq!(
        client.get_and_put(keys[1].clone(), b("v2")).await.unwrap(),
        Some(b("v1"))
    );
    assert!(
        client
            .compare_and_put(keys[1].clone(), b("v2"), b("v3"))
            .await
            .unwrap()
    );
    assert!(
        !client
            .compare_and_put(keys[1].clone(), b("v2"), b("v4"))
            .await
            .unwrap()
    );
    assert!(
        !client
            .compare_and_put(b("\x12absent"), b(""), b("v"))
            .await
            .unwrap()
    );
    let got = client.multi_get(keys.clone()).await.unwrap();
    assert_eq!(
        got,
        vec![Some(b("v1")), Some(b("v3")), Some(b("v1")), Some(b("v1"))]
    );
    let all = client
        .scan(Bytes::new(), Bytes::new(), 100, false)
        .await
        .unwrap();
    let ks: Vec<Bytes> = all.iter().map(|(k, _)| k.clone()).collect();
    let mut sorted = ks.clone();
    sorted.sort();
    assert_eq!(ks, sorted, "scan is ordered across regions");
    assert_eq!(ks.len(), 5);
    let rev = client
        .scan(Bytes::new(), Bytes::new(), 2, true)
        .await
        .unwrap();
    assert_eq!(rev.len(), 2);
    assert_eq!(rev[0].0, keys[3]);
    client
        .batch_put(vec![(b("\x20a"), b("1")), (raw(b"\xa0b"), b("2"))])
        .await
        .unwrap();
    assert_eq!(
        client
            .batch_delete(vec![b("\x20a"), raw(b"\xa0b"), b("\x20zz")])
            .await
            .unwrap(),
        2
    );
    assert!(client.delete(keys[0].clone()).await.unwrap());
    assert!(!client.delete(keys[0].clone()).await.unwrap());
    assert_eq!(
        client
            .delete_range(Bytes::new(), Bytes::new())
            .await
            .unwrap(),
        4
    );
    // Every consistency level reads the same committed value somewhere.
    client.put(b("\x30c"), b("z")).await.unwrap();
    for c in [
        ReadConsistency::Linearizable,
        ReadConsistency::Lease,
        ReadConsistency::Follower,
    ] {
        assert_eq!(
            client.with_consistency(c).get(b("\x30c")).await.unwrap(),
            Some(b("z")),
            "{c:?}"
        );
    }
    // Through a non-leader node's router (forwarding).
    let l = leader_of(&nodes, 1).await.unwrap();
    let f = (l + 1) % 3;
    let via = KvClient::from_router(nodes[f].node.router().clone());
    via.put(b("\x01f"), b("fw")).await.unwrap();
    assert_eq!(via.get(b("\x01f")).await.unwrap(), Some(b("fw")));
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_epochs_and_region_checks() {
    let dir = test_dir("limits");
    let (nodes, _) = cluster3(&dir.0, 2, [127, 0, 1, 2]).await;
    eventually("a leader", || async {
        leader_of(&nodes, 1).await.is_some()
    })
    .await;
    let l = leader_of(&nodes, 1).await.unwrap();
    let store = nodes[l].node.store();
    let big_key = Bytes::from(vec![1u8; store.limits().max_key_bytes + 1]);
    let r = store
        .write(
            1,
            None,
            rhea_kv::KvCommand::Put {
                key: big_key,
                value: b("v"),
            },
        )
        .await;
    assert!(matches!(r, Err(KvError::Invalid(_))), "{r:?}");
    // A key of region 2 sent to region 1.
    let r = store
        .write(
            1,
            None,
            rhea_kv::KvCommand::Put {
                key: raw(b"\xffk"),
                value: b("v"),
            },
        )
        .await;
    assert!(
        matches!(r, Err(KvError::KeyNotInRegion { region: 1 })),
        "{r:?}"
    );
    // A stale epoch is refused with the current one, which then works.
    // (A new leader applies the bootstrap membership entry with its first
    // commit: wait for it.)
    eventually("the leader applied the membership", || async {
        store.epoch(1).unwrap().conf_ver >= 1
    })
    .await;
    let current = store.epoch(1).unwrap();
    let stale = RegionEpoch {
        conf_ver: current.conf_ver - 1,
        version: current.version,
    };
    let r = store
        .write(
            1,
            Some(stale),
            rhea_kv::KvCommand::Put {
                key: b("k"),
                value: b("v"),
            },
        )
        .await;
    match r {
        Err(KvError::EpochMismatch { current: c, .. }) => assert_eq!(c, current),
        other => panic!("expected an epoch error, got {other:?}"),
    }
    store
        .write(
            1,
            Some(current),
            rhea_kv::KvCommand::Put {
                key: b("k"),
                value: b("v"),
            },
        )
        .await
        .unwrap();
    // A follower refuses linearizable reads, naming the leader (once it has
    // heard from it) with its client address (once registered).
    let f = (l + 1) % 3;
    let leader_id = nodes[l].node.store().node_id();
    let leader_addr = nodes[l].client_addr.to_string();
    eventually("the follower names the leader", || {
        let store = nodes[f].node.store().clone();
        let leader_addr = leader_addr.clone();
        async move {
            let r = store
                .read(
                    1,
                    None,
                    rhea_kv::ReadOp::Get { key: b("k") },
                    ReadConsistency::Linearizable,
                )
                .await;
            match r {
                Err(KvError::NotLeader {
                    leader,
                    leader_addr: a,
                    ..
                }) => leader == leader_id && a.as_deref() == Some(leader_addr.as_str()),
                other => panic!("expected NotLeader, got {other:?}"),
            }
        }
    })
    .await;
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_from_durable_state_and_learner_installs_snapshot() {
    let dir = test_dir("restart");
    let (mut nodes, cluster) = cluster3(&dir.0, 1, [127, 0, 1, 3]).await;
    let seeds: Vec<String> = nodes.iter().map(|n| n.client_addr.to_string()).collect();
    let client = KvClient::connect(seeds.clone(), RouterOptions::default())
        .await
        .unwrap();
    for i in 0..100 {
        client
            .put(format!("key{i:03}"), format!("v{i}"))
            .await
            .unwrap();
    }
    // Snapshot every replica (compacts their logs), then write more.
    for n in &nodes {
        n.node.driver().snapshot(1).await.unwrap();
    }
    for i in 100..120 {
        client
            .put(format!("key{i:03}"), format!("v{i}"))
            .await
            .unwrap();
    }
    // Restart node 3: it keeps its redb state (data and applied index
    // together) and replays only the log after it.
    let n3 = nodes.pop().unwrap();
    let raft3 = cluster[&3];
    eventually("node 3 applied every write", || async {
        let store = n3.node.store();
        let range = store.range(1).unwrap().clone();
        store
            .storage()
            .read(&range, &rhea_kv::ReadOp::Get { key: b("key119") })
            .unwrap()
            == rhea_kv::KvAnswer::Value(Some(b("v119")))
    })
    .await;
    let applied_before = n3.node.store().storage().region(1).unwrap().applied();
    n3.stop().await;
    let n3 = start(&dir.0, 3, raft3, &cluster, 1, false).await;
    let applied_at_start = n3.node.store().storage().region(1).unwrap().applied();
    assert_eq!(
        applied_at_start, applied_before,
        "redb kept the applied index across the restart"
    );
    nodes.push(n3);
    // A learner that joins after compaction can only catch up by snapshot.
    let raft4 = free_addr([127, 0, 1, 3]).await;
    let n4 = start(&dir.0, 4, raft4, &cluster, 1, true).await;
    eventually("a leader", || async {
        leader_of(&nodes, 1).await.is_some()
    })
    .await;
    let l = leader_of(&nodes, 1).await.unwrap();
    let admin = rhea_kv::admin::serve_admin(
        nodes[l].node.router(),
        &[
            b("ADDLEARNER"),
            b("1"),
            b("4"),
            Bytes::from(raft4.to_string()),
        ],
    )
    .await
    .unwrap();
    assert!(
        matches!(admin, rhea_kv::resp::Value::Simple(_)),
        "{admin:?}"
    );
    let stale =
        KvClient::from_router(n4.node.router().clone()).with_consistency(ReadConsistency::Stale);
    eventually("the learner has the data", || async {
        stale.get(b("key119")).await.ok().flatten() == Some(b("v119"))
    })
    .await;
    assert_eq!(stale.get(b("key000")).await.unwrap(), Some(b("v0")));
    let follower = stale.with_consistency(ReadConsistency::Follower);
    client.put(b("after"), b("learner")).await.unwrap();
    assert_eq!(follower.get(b("after")).await.unwrap(), Some(b("learner")));
    n4.stop().await;
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_index_failure_falls_back_to_the_log() {
    let dir = test_dir("fallback");
    let mut cluster = BTreeMap::new();
    cluster.insert(1, free_addr([127, 0, 1, 4]).await);
    let listener = TcpListener::bind("127.0.1.4:0").await.unwrap();
    let mut cfg = NodeConfig::new(
        1,
        dir.0.join("n1"),
        cluster[&1],
        listener.local_addr().unwrap().to_string(),
    );
    cfg.initial_cluster = cluster;
    cfg.driver.tick_interval_ms = 10;
    cfg.election_timeout_ms = 200;
    cfg.heartbeat_interval_ms = 20;
    cfg.kv.debug_fail_read_index_every = 1; // every read index fails
    let node = KvNode::start(cfg).await.unwrap();
    let client = KvClient::from_router(node.router().clone());
    client.put(b("k"), b("v")).await.unwrap();
    for _ in 0..5 {
        assert_eq!(client.get(b("k")).await.unwrap(), Some(b("v")));
    }
    assert_eq!(
        client.multi_get(vec![b("k"), b("x")]).await.unwrap(),
        vec![Some(b("v")), None]
    );
    let c = node.store().counters();
    let fallbacks = c
        .reads_log_fallback
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(fallbacks, 6, "every read went through the log");
    assert_eq!(
        c.reads_read_index
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    node.shutdown().await.unwrap();
}
