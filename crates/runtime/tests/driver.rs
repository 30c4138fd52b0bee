//! The multi-raft driver over real loopback transports and SimDisk: elections
//! and commits in two groups, follower reads, restart from disk (with a
//! snapshot file), and group commit (one fsync for two groups' entries).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use rhea_raft::{Config, Entry, EntryPayload, GroupId, Index, Membership, NodeId, Role};
use rhea_runtime::{
    ApplyContext, Driver, DriverError, DriverHandle, DriverOptions, GroupSpec, SimDisk,
    StateMachine, StateMachineError, Transport, TransportOptions,
};
use tokio::task::JoinHandle;

const DEADLINE: Duration = Duration::from_secs(8);
const GROUPS: [GroupId; 2] = [1, 2];

/// Applied normal payloads, shared with the test.
#[derive(Clone, Default)]
struct Applied(Arc<Mutex<(Index, Vec<Bytes>)>>);

impl Applied {
    fn get(&self) -> (Index, Vec<Bytes>) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

struct ListSm(Applied);

impl StateMachine for ListSm {
    fn apply(
        &mut self,
        _group: GroupId,
        entries: &[Entry],
        _ctx: &mut ApplyContext,
    ) -> Result<(), StateMachineError> {
        let mut st = self.0.0.lock().unwrap_or_else(|e| e.into_inner());
        for e in entries {
            if let EntryPayload::Normal(d) = &e.payload {
                st.1.push(d.clone());
            }
            st.0 = e.index;
        }
        Ok(())
    }
    fn snapshot(&self) -> Result<Bytes, StateMachineError> {
        let st = self.0.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut b = BytesMut::new();
        b.put_u64_le(st.0);
        for d in &st.1 {
            b.put_u32_le(d.len() as u32);
            b.put_slice(d);
        }
        Ok(b.freeze())
    }
    fn restore(&mut self, data: Bytes) -> Result<(), StateMachineError> {
        let mut st = self.0.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut pos = 8;
        st.0 = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
        st.1.clear();
        while pos < data.len() {
            let len = u32::from_le_bytes(data[pos..pos + 4].try_into().expect("4 bytes")) as usize;
            pos += 4;
            st.1.push(data.slice(pos..pos + len));
            pos += len;
        }
        Ok(())
    }
    fn applied_index(&self) -> Index {
        self.0.0.lock().unwrap_or_else(|e| e.into_inner()).0
    }
}

fn topts() -> TransportOptions {
    TransportOptions {
        cluster_id: 7,
        reconnect_backoff_ms_min: 5,
        reconnect_backoff_ms_max: 40,
        ..TransportOptions::default()
    }
}

fn dopts() -> DriverOptions {
    DriverOptions {
        tick_interval_ms: 10,
        ..DriverOptions::default()
    }
}

fn cfg(id: NodeId, group: GroupId) -> Config {
    let mut c = Config::new(id, group);
    c.election_timeout_ticks = 10;
    c.heartbeat_interval_ticks = 2;
    c
}

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

struct Node {
    id: NodeId,
    handle: DriverHandle,
    task: JoinHandle<Result<(), DriverError>>,
    applied: BTreeMap<GroupId, Applied>,
}

/// Start node `id` of a 3-node cluster hosting GROUPS on `disk`.
fn start(
    id: NodeId,
    disk: &SimDisk,
    transport: Transport,
    inbound: tokio::sync::mpsc::Receiver<rhea_raft::Message>,
    voters: &[NodeId],
) -> Node {
    let mut applied = BTreeMap::new();
    let specs = GROUPS
        .iter()
        .map(|g| {
            let a = Applied::default();
            applied.insert(*g, a.clone());
            GroupSpec {
                config: cfg(id, *g),
                initial_membership: Some(Membership::new(voters.iter().copied())),
                state_machine: Box::new(ListSm(a)),
            }
        })
        .collect();
    let (handle, task) = Driver::start(
        disk.clone(),
        "/store",
        dopts(),
        Arc::new(transport),
        inbound,
        specs,
    )
    .expect("driver starts");
    Node {
        id,
        handle,
        task,
        applied,
    }
}

/// The node leading `group` (as seen by itself), waiting for one.
async fn leader_of(nodes: &[&Node], group: GroupId) -> usize {
    within("a leader", async {
        loop {
            for (i, n) in nodes.iter().enumerate() {
                if let Ok(s) = n.handle.status(group).await
                    && s.role == Role::Leader
                {
                    return i;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

/// Propose through whoever leads, retrying across elections.
async fn propose(nodes: &[&Node], group: GroupId, data: &str) -> Index {
    within("a proposal commits", async {
        loop {
            let i = leader_of(nodes, group).await;
            match nodes[i]
                .handle
                .propose(group, Bytes::from(data.to_string()))
                .await
            {
                Ok(index) => return index,
                Err(e) if e.is_retryable() => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("propose: {e}"),
            }
        }
    })
    .await
}

async fn wait_applied(node: &Node, group: GroupId, want: &[&str]) {
    let a = node.applied[&group].clone();
    within("a node applies every proposal", async {
        loop {
            let got = a.get().1;
            if want.iter().all(|w| got.iter().any(|g| g == w.as_bytes())) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_drivers_two_groups_commit_read_and_restart() {
    let disks: Vec<SimDisk> = (0..3).map(|_| SimDisk::new()).collect();
    let mut bound = Vec::new();
    for id in 1..=3u64 {
        bound.push(
            Transport::bind(id, any_port(), topts())
                .await
                .expect("bind"),
        );
    }
    let addrs: Vec<SocketAddr> = bound.iter().map(|(t, _)| t.local_addr()).collect();
    for (t, _) in &bound {
        for (j, a) in addrs.iter().enumerate() {
            let peer = j as u64 + 1;
            if peer != t.node_id() {
                t.set_peer(peer, *a).expect("set_peer");
            }
        }
    }
    let mut nodes: Vec<Node> = Vec::new();
    for (i, (t, rx)) in bound.into_iter().enumerate() {
        nodes.push(start(i as u64 + 1, &disks[i], t, rx, &[1, 2, 3]));
    }

    // Both groups elect a leader and commit proposals.
    let mut want: BTreeMap<GroupId, Vec<String>> = BTreeMap::new();
    for g in GROUPS {
        for k in 0..5 {
            let data = format!("g{g}-a{k}");
            let refs: Vec<&Node> = nodes.iter().collect();
            propose(&refs, g, &data).await;
            want.entry(g).or_default().push(data);
        }
    }
    for n in &nodes {
        for g in GROUPS {
            let w: Vec<&str> = want[&g].iter().map(String::as_str).collect();
            wait_applied(n, g, &w).await;
        }
    }

    // A follower read: read_index resolves once the follower applied that far.
    let refs: Vec<&Node> = nodes.iter().collect();
    let leader = leader_of(&refs, 1).await;
    let follower = (leader + 1) % 3;
    let read_at = within("follower read index", async {
        loop {
            match nodes[follower].handle.read_index(1).await {
                Ok(i) => return i,
                Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_millis(10)).await,
                Err(e) => panic!("read_index: {e}"),
            }
        }
    })
    .await;
    let (applied, items) = nodes[follower].applied[&1].get();
    assert!(
        applied >= read_at,
        "applied {applied} < read index {read_at}"
    );
    assert_eq!(items.len(), 5);

    // Leader transfer: group 2's leadership moves to a chosen follower.
    let refs: Vec<&Node> = nodes.iter().collect();
    let from = leader_of(&refs, 2).await;
    let to = (from + 1) % 3;
    nodes[from]
        .handle
        .transfer_leader(2, nodes[to].id)
        .await
        .expect("transfer accepted");
    within("the transfer completes", async {
        loop {
            if let Ok(s) = nodes[to].handle.status(2).await
                && s.role == Role::Leader
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;

    // Node 3 snapshots group 1, then stops; the others go on.
    let snap_at = nodes[2].handle.snapshot(1).await.expect("snapshot");
    assert!(snap_at >= 6);
    assert!(disks[2].exists(std::path::Path::new(&format!(
        "/store/snapshots/1/{snap_at}.snap"
    ))));
    let stopped = nodes.pop().expect("node 3");
    stopped.handle.shutdown().await;
    within("driver task ends", stopped.task)
        .await
        .expect("join")
        .expect("clean stop");
    assert!(matches!(
        stopped.handle.status(1).await,
        Err(DriverError::Shutdown)
    ));
    for g in GROUPS {
        for k in 0..3 {
            let data = format!("g{g}-b{k}");
            let refs: Vec<&Node> = nodes.iter().collect();
            propose(&refs, g, &data).await;
            want.entry(g).or_default().push(data);
        }
    }

    // Restart node 3 from its disk on its old address: it recovers its log
    // (and group 1's snapshot file) and catches up.
    let (t, rx) = Transport::bind(3, addrs[2], topts()).await.expect("rebind");
    t.set_peer(1, addrs[0]).expect("peer");
    t.set_peer(2, addrs[1]).expect("peer");
    let restarted = start(3, &disks[2], t, rx, &[1, 2, 3]);
    assert_eq!(restarted.id, 3);
    for g in GROUPS {
        let w: Vec<&str> = want[&g].iter().map(String::as_str).collect();
        wait_applied(&restarted, g, &w).await;
        // Nothing applied twice.
        assert_eq!(restarted.applied[&g].get().1.len(), w.len());
    }
    nodes.push(restarted);
    for n in nodes {
        n.handle.shutdown().await;
        within("driver task ends", n.task)
            .await
            .expect("join")
            .expect("clean stop");
    }
}

/// Two single-voter groups on one driver: proposals to both, queued before
/// the driver runs (current-thread runtime), go into one batch: one fsync.
#[tokio::test(flavor = "current_thread")]
async fn two_groups_entries_share_one_fsync() {
    let disk = SimDisk::new();
    let (t, rx) = Transport::bind(1, any_port(), topts()).await.expect("bind");
    let node = start(1, &disk, t, rx, &[1]);
    let refs = [&node];
    for g in GROUPS {
        leader_of(&refs, g).await;
        propose(&refs, g, "warm-up").await;
    }
    // Let the commit's hard-state round finish.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = node.handle.stats().await.expect("stats");
    let sim_before = disk.total_file_syncs();
    let (a, b) = tokio::join!(
        node.handle.propose(1, Bytes::from_static(b"x")),
        node.handle.propose(2, Bytes::from_static(b"y")),
    );
    a.expect("group 1 commits");
    b.expect("group 2 commits");
    let after = node.handle.stats().await.expect("stats");
    assert_eq!(after.engine_fsyncs - before.engine_fsyncs, 1, "{after:?}");
    assert_eq!(after.synced_writes - before.synced_writes, 1, "{after:?}");
    assert_eq!(disk.total_file_syncs() - sim_before, 1);
    assert_eq!(after.dropped_unknown_group, 0);
    node.handle.shutdown().await;
    within("driver task ends", node.task)
        .await
        .expect("join")
        .expect("clean stop");
}

#[tokio::test(flavor = "current_thread")]
async fn errors_map_and_unknown_groups_are_refused() {
    let disk = SimDisk::new();
    let (t, rx) = Transport::bind(1, any_port(), topts()).await.expect("bind");
    let addr = t.local_addr();
    let node = start(1, &disk, t, rx, &[1, 2, 3]);
    // Alone in a 3-voter group: never leader.
    match node.handle.propose(1, Bytes::from_static(b"x")).await {
        Err(DriverError::NotLeader { leader_hint }) => assert_eq!(leader_hint, 0),
        other => panic!("expected NotLeader, got {other:?}"),
    }
    assert!(matches!(
        node.handle.status(9).await,
        Err(DriverError::UnknownGroup(9))
    ));
    assert!(matches!(
        node.handle.read_index(9).await,
        Err(DriverError::UnknownGroup(9))
    ));
    let s = node.handle.status(1).await.expect("status");
    assert_ne!(s.role, Role::Leader);
    // A peer message for a group this node does not host is counted and dropped.
    let (peer, _peer_rx) = Transport::bind(2, any_port(), topts()).await.expect("bind");
    peer.set_peer(1, addr).expect("peer");
    peer.send(rhea_raft::Message {
        group: 9,
        from: 2,
        to: 1,
        term: 1,
        body: rhea_raft::MessageBody::TimeoutNow,
    })
    .expect("queued");
    within("the unknown group is counted", async {
        while node
            .handle
            .stats()
            .await
            .expect("stats")
            .dropped_unknown_group
            == 0
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    peer.shutdown().await;
    node.handle.shutdown().await;
    node.handle.shutdown().await;
    within("driver task ends", node.task)
        .await
        .expect("join")
        .expect("clean stop");
}

/// Production disk: a single-voter group on StdDisk in a temp directory
/// survives a restart (log replayed into a fresh state machine).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn std_disk_restart_replays_the_log() {
    let dir = std::env::temp_dir().join(format!("rhea-driver-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let run = |data: Option<&'static str>| {
        let dir = dir.clone();
        async move {
            let (t, rx) = Transport::bind(1, any_port(), topts()).await.expect("bind");
            let applied = Applied::default();
            let spec = GroupSpec {
                config: cfg(1, 1),
                initial_membership: Some(Membership::new([1])),
                state_machine: Box::new(ListSm(applied.clone())),
            };
            let (handle, task) = Driver::start(
                rhea_runtime::StdDisk,
                &dir,
                dopts(),
                Arc::new(t),
                rx,
                vec![spec],
            )
            .expect("driver starts");
            let node = Node {
                id: 1,
                handle,
                task,
                applied: BTreeMap::from([(1, applied)]),
            };
            if let Some(d) = data {
                propose(&[&node], 1, d).await;
            }
            wait_applied(&node, 1, &["first"]).await;
            let got = node.applied[&1].get().1;
            node.handle.shutdown().await;
            within("driver task ends", node.task)
                .await
                .expect("join")
                .expect("clean stop");
            got
        }
    };
    assert_eq!(run(Some("first")).await, vec![Bytes::from_static(b"first")]);
    assert_eq!(run(None).await, vec![Bytes::from_static(b"first")]);
    let _ = std::fs::remove_dir_all(&dir);
}
