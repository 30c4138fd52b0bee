//! The transaction coordinator served by in-process nodes, driven by a raw
//! Seata-protocol client (the wire codec only): begin, branch registration
//! with row locks and conflicts, phase two through the RM's connection,
//! timeouts, merged requests, forwarding between nodes, leader changes, and
//! malformed frames.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rhea_kv::{KvNode, NodeConfig, ServerOptions};
use rhea_raft::Role;
use rhea_txn::protocol::{
    BranchEndResponse, BranchRegisterRequest, BranchStatus, BranchType, Frame, FrameBody,
    FrameLimits, GlobalBeginRequest, GlobalEndRequest, GlobalStatus, IdentifyResponse,
    MergedWarpMessage, Message, RegisterRmRequest, RegisterTmRequest, ResultCode,
    TransactionExceptionCode, decode_frame, encode_frame,
};
use rhea_txn::tc::{TcConfig, TcServer, lock_group, session_group};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const DEADLINE: Duration = Duration::from_secs(20);
const RESOURCE: &str = "postgres://127.0.0.1:5432/test";

struct TestDir(PathBuf);
impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn test_dir(name: &str) -> TestDir {
    let d = std::env::temp_dir().join(format!("rhea-tc-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("test dir");
    TestDir(d)
}

async fn free_addr(ip: [u8; 4]) -> SocketAddr {
    let l = TcpListener::bind(SocketAddr::from((ip, 0)))
        .await
        .expect("bind");
    l.local_addr().expect("addr")
}

struct Running {
    node: KvNode,
    client_addr: SocketAddr,
    tc: TcServer,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
}

impl Running {
    fn tc_addr(&self) -> SocketAddr {
        self.tc.local_addr()
    }
    async fn stop(self) {
        self.tc.shutdown().await;
        let _ = self.stop.send(true);
        let _ = self.server.await;
        self.node.shutdown().await.expect("shutdown");
    }
}

fn tc_config(id: u64, addr: SocketAddr) -> TcConfig {
    let mut t = TcConfig::new(id as u16, addr.to_string());
    t.session_partitions = 2;
    t.lock_partitions = 3;
    t.session.retry.retry_interval_ms = 50;
    t.session.retry.max_retry_interval_ms = 100;
    t.session.retry.max_rollback_retries = 3;
    t.timeout_check_interval_ms = 100;
    t
}

async fn start(
    dir: &std::path::Path,
    id: u64,
    raft: SocketAddr,
    cluster: &BTreeMap<u64, SocketAddr>,
) -> Running {
    start_with(dir, id, raft, cluster, 0).await
}

async fn start_with(
    dir: &std::path::Path,
    id: u64,
    raft: SocketAddr,
    cluster: &BTreeMap<u64, SocketAddr>,
    snapshot_every_entries: u64,
) -> Running {
    let listener = TcpListener::bind(SocketAddr::new(raft.ip(), 0))
        .await
        .expect("bind client");
    let tc_listener = TcpListener::bind(SocketAddr::new(raft.ip(), 0))
        .await
        .expect("bind tc");
    let tc_cfg = tc_config(id, tc_listener.local_addr().expect("addr"));
    let client_addr = listener.local_addr().expect("addr");
    let mut cfg = NodeConfig::new(
        id,
        dir.join(format!("n{id}")),
        raft,
        client_addr.to_string(),
    );
    cfg.initial_cluster = cluster.clone();
    cfg.driver.tick_interval_ms = 10;
    cfg.election_timeout_ms = 200;
    cfg.heartbeat_interval_ms = 20;
    cfg.snapshot_every_entries = snapshot_every_entries;
    let (groups, replicas) = rhea_txn::tc::partition_machines(&tc_cfg).expect("machines");
    let node = KvNode::start_with_groups(cfg, groups)
        .await
        .unwrap_or_else(|e| panic!("node {id} does not start: {e}"));
    let tc = TcServer::start(tc_cfg, replicas, node.router().clone(), tc_listener).expect("tc");
    let (stop, stop_rx) = watch::channel(false);
    let server = tokio::spawn(rhea_kv::serve(
        listener,
        node.router().clone(),
        ServerOptions {
            extension: Some(tc.extension()),
            ..ServerOptions::default()
        },
        std::sync::Arc::new(String::new),
        stop_rx,
    ));
    Running {
        node,
        client_addr,
        tc,
        stop,
        server,
    }
}

async fn cluster(dir: &std::path::Path, ip3: u8, n: u64) -> Vec<Running> {
    let mut cluster = BTreeMap::new();
    for id in 1..=n {
        cluster.insert(id, free_addr([127, 0, ip3, id as u8]).await);
    }
    let mut nodes = Vec::new();
    for (&id, &raft) in &cluster {
        nodes.push(start(dir, id, raft, &cluster).await);
    }
    nodes
}

/// A raw Seata client connection.
struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
    next_id: u32,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Raw {
        Raw {
            stream: TcpStream::connect(addr).await.expect("connect to TC"),
            buf: Vec::new(),
            next_id: 1,
        }
    }

    async fn send(&mut self, id: u32, body: FrameBody) {
        let mut out = Vec::new();
        encode_frame(&Frame::new(id, body), &mut out).expect("encode");
        self.stream.write_all(&out).await.expect("write");
    }

    async fn recv(&mut self) -> Option<Frame> {
        loop {
            if let Some((f, n)) = decode_frame(&self.buf, &FrameLimits::default()).expect("decode")
            {
                self.buf.drain(..n);
                return Some(f);
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(DEADLINE, self.stream.read(&mut chunk))
                .await
                .expect("TC answers in time")
                .ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn call(&mut self, msg: Message) -> Message {
        let id = self.next_id;
        self.next_id += 1;
        self.send(id, FrameBody::Request(msg)).await;
        loop {
            let f = self.recv().await.expect("connection open");
            if f.request_id == id
                && let FrameBody::Response(m) = f.body
            {
                return m;
            }
        }
    }

    async fn register_tm(&mut self) {
        let r = self
            .call(Message::RegisterTmRequest(RegisterTmRequest {
                version: "1.2.0".into(),
                application_id: "app".into(),
                transaction_service_group: "default_tx_group".into(),
                extra_data: String::new(),
            }))
            .await;
        assert!(matches!(
            r,
            Message::RegisterTmResponse(IdentifyResponse {
                identified: true,
                ..
            })
        ));
    }

    async fn register_rm(&mut self, resources: &str) {
        let r = self
            .call(Message::RegisterRmRequest(RegisterRmRequest {
                version: "1.2.0".into(),
                application_id: "app".into(),
                transaction_service_group: "default_tx_group".into(),
                extra_data: String::new(),
                resource_ids: resources.into(),
            }))
            .await;
        assert!(matches!(r, Message::RegisterRmResponse(_)));
    }

    async fn begin(&mut self, timeout_ms: i32) -> String {
        match self
            .call(Message::GlobalBeginRequest(GlobalBeginRequest {
                timeout: timeout_ms,
                transaction_name: "test".into(),
            }))
            .await
        {
            Message::GlobalBeginResponse(r) => {
                assert_eq!(r.result_code, ResultCode::Success, "{}", r.msg);
                r.xid
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    async fn register(
        &mut self,
        xid: &str,
        lock_key: &str,
    ) -> Result<i64, (TransactionExceptionCode, String)> {
        match self
            .call(Message::BranchRegisterRequest(BranchRegisterRequest {
                xid: xid.into(),
                branch_type: BranchType::At,
                resource_id: RESOURCE.into(),
                lock_key: lock_key.into(),
                application_data: String::new(),
            }))
            .await
        {
            Message::BranchRegisterResponse(r) if r.result_code == ResultCode::Success => {
                Ok(r.branch_id)
            }
            Message::BranchRegisterResponse(r) => Err((r.transaction_exception_code, r.msg)),
            other => panic!("unexpected {other:?}"),
        }
    }

    async fn global(&mut self, kind: &str, xid: &str) -> GlobalStatus {
        let req = GlobalEndRequest {
            xid: xid.into(),
            extra_data: String::new(),
        };
        let msg = match kind {
            "commit" => Message::GlobalCommitRequest(req),
            "rollback" => Message::GlobalRollbackRequest(req),
            _ => Message::GlobalStatusRequest(req),
        };
        match self.call(msg).await {
            Message::GlobalCommitResponse(r)
            | Message::GlobalRollbackResponse(r)
            | Message::GlobalStatusResponse(r) => {
                assert_eq!(r.result_code, ResultCode::Success, "{kind}: {}", r.msg);
                r.global_status
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    async fn lockable(&mut self, xid: &str, lock_key: &str) -> bool {
        match self
            .call(Message::GlobalLockQueryRequest(BranchRegisterRequest {
                xid: xid.into(),
                branch_type: BranchType::At,
                resource_id: RESOURCE.into(),
                lock_key: lock_key.into(),
                application_data: String::new(),
            }))
            .await
        {
            Message::GlobalLockQueryResponse(r) => {
                assert_eq!(r.result_code, ResultCode::Success, "{}", r.msg);
                r.lockable
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// An RM that answers every phase-two request with `answer` and reports
/// what it was asked.
fn spawn_rm(
    mut rm: Raw,
    commit_answer: BranchStatus,
    rollback_answer: BranchStatus,
) -> tokio::sync::mpsc::UnboundedReceiver<(String, String, i64)> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(f) = rm.recv().await {
            let FrameBody::Request(m) = f.body else {
                continue;
            };
            let (kind, req, status) = match m {
                Message::BranchCommitRequest(r) => ("commit", r, commit_answer),
                Message::BranchRollbackRequest(r) => ("rollback", r, rollback_answer),
                _ => continue,
            };
            let resp = BranchEndResponse {
                result_code: ResultCode::Success,
                msg: String::new(),
                transaction_exception_code: TransactionExceptionCode::Unknown,
                xid: req.xid.clone(),
                branch_id: req.branch_id,
                branch_status: status,
            };
            let reply = if kind == "commit" {
                Message::BranchCommitResponse(resp)
            } else {
                Message::BranchRollbackResponse(resp)
            };
            rm.send(f.request_id, FrameBody::Response(reply)).await;
            let _ = tx.send((kind.to_string(), req.xid, req.branch_id));
        }
    });
    rx
}

async fn leaders_elected(nodes: &[Running], groups: &[u64]) {
    let start = std::time::Instant::now();
    loop {
        let all = groups.iter().all(|&g| {
            nodes.iter().any(|n| {
                n.node
                    .driver()
                    .role_hint(g)
                    .is_some_and(|(r, _, _)| r == Role::Leader)
            })
        });
        if all {
            return;
        }
        assert!(start.elapsed() < DEADLINE, "no leaders for {groups:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn all_groups() -> Vec<u64> {
    let mut g: Vec<u64> = (0..2).map(session_group).collect();
    g.extend((0..3).map(lock_group));
    g
}

async fn recv_within(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<(String, String, i64)>,
) -> (String, String, i64) {
    tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .expect("phase two reaches the RM in time")
        .expect("RM task alive")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_locks_conflicts_and_async_phase_two() {
    let dir = test_dir("commit");
    let nodes = cluster(&dir.0, 31, 1).await;
    leaders_elected(&nodes, &all_groups()).await;
    let addr = nodes[0].tc_addr();
    let mut rm = Raw::connect(addr).await;
    rm.register_rm(RESOURCE).await;
    let mut phase_two = spawn_rm(
        rm,
        BranchStatus::PhaseTwoCommitted,
        BranchStatus::PhaseTwoRollbacked,
    );
    let mut tm = Raw::connect(addr).await;
    tm.register_tm().await;

    let x1 = tm.begin(60_000).await;
    assert!(x1.starts_with(&format!("{addr}:")), "XID {x1} names the TC");
    let b1 = tm
        .register(&x1, "account:1,2;ledger:7")
        .await
        .expect("free rows");
    assert!(b1 > 0);
    // The same transaction may register the rows again (re-entrant).
    tm.register(&x1, "account:2").await.expect("own rows");

    let x2 = tm.begin(60_000).await;
    assert_ne!(x1, x2);
    let (code, msg) = tm
        .register(&x2, "account:3,2")
        .await
        .expect_err("row 2 is held");
    assert_eq!(code, TransactionExceptionCode::LockKeyConflict, "{msg}");
    assert!(!tm.lockable(&x2, "account:2").await);
    assert!(
        tm.lockable(&x2, "account:3").await,
        "a refused branch takes nothing"
    );
    assert!(tm.lockable(&x1, "account:2").await, "own rows are lockable");

    // All-AT commit: Committed at once, phase two in the background.
    assert_eq!(tm.global("commit", &x1).await, GlobalStatus::Committed);
    let mut seen = Vec::new();
    for _ in 0..2 {
        let (kind, xid, _) = recv_within(&mut phase_two).await;
        assert_eq!((kind.as_str(), xid.as_str()), ("commit", x1.as_str()));
        seen.push(xid);
    }
    // Locks are released after phase two: x2 now gets the rows.
    let start = std::time::Instant::now();
    loop {
        match tm.register(&x2, "account:3,2").await {
            Ok(_) => break,
            Err((TransactionExceptionCode::LockKeyConflict, _)) if start.elapsed() < DEADLINE => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    // Rollback runs phase two and releases the rows before answering.
    assert_eq!(tm.global("rollback", &x2).await, GlobalStatus::Rollbacked);
    let (kind, xid, _) = recv_within(&mut phase_two).await;
    assert_eq!((kind.as_str(), xid.as_str()), ("rollback", x2.as_str()));
    assert!(
        tm.lockable("", "account:2,3").await,
        "rows free once Rollbacked is answered"
    );
    // x1's commit released its rows after answering (in the background).
    let start = std::time::Instant::now();
    while !tm.lockable("", "account:1,2,3;ledger:7").await {
        assert!(start.elapsed() < DEADLINE, "x1's rows not released");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A finished transaction: no more branches.
    let (code, _) = tm.register(&x2, "account:9").await.expect_err("ended");
    assert_ne!(code, TransactionExceptionCode::LockKeyConflict);
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_merged_requests_and_malformed_frames() {
    let dir = test_dir("timeout");
    let nodes = cluster(&dir.0, 32, 1).await;
    leaders_elected(&nodes, &all_groups()).await;
    let addr = nodes[0].tc_addr();
    let mut tm = Raw::connect(addr).await;
    tm.register_tm().await;

    let mut rm = Raw::connect(addr).await;
    rm.register_rm(RESOURCE).await;
    let mut phase_two = spawn_rm(
        rm,
        BranchStatus::PhaseTwoCommitted,
        BranchStatus::PhaseTwoRollbacked,
    );
    // A session past its timeout is rolled back by the timeout check.
    let x = tm.begin(100).await;
    tm.register(&x, "t:1").await.expect("lock");
    let start = std::time::Instant::now();
    loop {
        let s = tm.global("status", &x).await;
        if matches!(s, GlobalStatus::TimeoutRollbacked | GlobalStatus::Finished) {
            break;
        }
        assert!(start.elapsed() < DEADLINE, "still {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (kind, xid, _) = recv_within(&mut phase_two).await;
    assert_eq!((kind.as_str(), xid.as_str()), ("rollback", x.as_str()));
    assert!(
        tm.lockable("", "t:1").await,
        "the timed-out branch's lock is released"
    );

    // Merged requests get one MergeResultMessage, in order.
    let merged = Message::MergedWarpMessage(MergedWarpMessage {
        msgs: vec![
            Message::GlobalBeginRequest(GlobalBeginRequest {
                timeout: 60_000,
                transaction_name: "a".into(),
            }),
            Message::GlobalStatusRequest(GlobalEndRequest {
                xid: "not-an-xid".into(),
                extra_data: String::new(),
            }),
        ],
        msg_ids: vec![11, 12],
    });
    match tm.call(merged).await {
        Message::MergeResultMessage(m) => {
            assert_eq!(m.msgs.len(), 2);
            assert!(
                matches!(&m.msgs[0], Message::GlobalBeginResponse(r) if r.result_code == ResultCode::Success)
            );
            assert!(
                matches!(&m.msgs[1], Message::GlobalStatusResponse(r) if r.result_code == ResultCode::Failed)
            );
        }
        other => panic!("unexpected {other:?}"),
    }

    // Garbage closes that connection only.
    let mut bad = Raw::connect(addr).await;
    bad.stream
        .write_all(b"\xda\xda\x01\xff\xff\xff\xffgarbage-garbage-garbage")
        .await
        .expect("write");
    assert!(
        bad.recv().await.is_none(),
        "malformed frame closes the connection"
    );
    assert_eq!(
        tm.global("status", "127.0.0.1:1:1").await,
        GlobalStatus::Finished
    );
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_node_serves_and_leader_changes_keep_branches_and_locks() {
    let dir = test_dir("three");
    let nodes = cluster(&dir.0, 33, 3).await;
    leaders_elected(&nodes, &all_groups()).await;
    // The RM registers on every node, as the Rust client does.
    let mut rxs = Vec::new();
    for n in &nodes {
        let mut rm = Raw::connect(n.tc_addr()).await;
        rm.register_rm(RESOURCE).await;
        rxs.push(spawn_rm(
            rm,
            BranchStatus::PhaseTwoCommitted,
            BranchStatus::PhaseTwoRollbacked,
        ));
    }
    let mut tms = Vec::new();
    for n in &nodes {
        let mut tm = Raw::connect(n.tc_addr()).await;
        tm.register_tm().await;
        tms.push(tm);
    }
    // Begin on one node, register on another, query on the third.
    let mut held = Vec::new();
    for i in 0..6usize {
        let x = tms[i % 3].begin(60_000).await;
        // A node that leads a session partition makes XIDs of a partition it
        // leads (so the transaction's commands need no forwarding).
        let leads = |p: u32| {
            nodes[i % 3]
                .node
                .driver()
                .role_hint(session_group(p))
                .is_some_and(|(r, _, _)| r == Role::Leader)
        };
        if (0..2).any(leads) {
            let (_, _, tid) = rhea_txn::coordinator::parse_xid(&x).expect("xid");
            assert!(
                leads(rhea_txn::coordinator::session_partition_of(tid, 2)),
                "{x} is not in a partition its node leads"
            );
        }
        let key = format!("acct:{i}");
        tms[(i + 1) % 3].register(&x, &key).await.expect("free row");
        assert!(!tms[(i + 2) % 3].lockable("", &key).await);
        held.push((x, key));
    }
    // Move every partition's leadership to another node.
    for g in all_groups() {
        let leader = nodes
            .iter()
            .position(|n| {
                n.node
                    .driver()
                    .role_hint(g)
                    .is_some_and(|(r, _, _)| r == Role::Leader)
            })
            .expect("a leader");
        let target = ((leader + 1) % 3) as u64 + 1;
        let _ = nodes[leader].node.driver().transfer_leader(g, target).await;
    }
    leaders_elected(&nodes, &all_groups()).await;
    // Locks and branches survived: conflicts still conflict, then rollback
    // reaches the RM and frees the rows.
    for (i, (x, key)) in held.iter().enumerate() {
        let other = tms[i % 3].begin(60_000).await;
        let (code, _) = tms[(i + 2) % 3]
            .register(&other, key)
            .await
            .expect_err("still locked after the leader change");
        assert_eq!(code, TransactionExceptionCode::LockKeyConflict);
        assert_eq!(
            tms[(i + 1) % 3].global("rollback", x).await,
            GlobalStatus::Rollbacked
        );
        tms[(i + 2) % 3]
            .register(&other, key)
            .await
            .expect("released");
        assert_eq!(
            tms[i % 3].global("commit", &other).await,
            GlobalStatus::Committed
        );
    }
    for n in nodes {
        n.stop().await;
    }
}

/// An RM registered on one TC node only (a client given one address): the
/// node leading a session's partition relays phase two through the node
/// that has the RM's connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phase_two_is_relayed_to_the_node_with_the_rm() {
    let dir = test_dir("relay");
    let nodes = cluster(&dir.0, 34, 3).await;
    leaders_elected(&nodes, &all_groups()).await;
    // Make node 1 lead no session partition, so every phase two is relayed.
    for p in 0..2 {
        let g = session_group(p);
        if nodes[0]
            .node
            .driver()
            .role_hint(g)
            .is_some_and(|(r, _, _)| r == Role::Leader)
        {
            nodes[0]
                .node
                .driver()
                .transfer_leader(g, 2)
                .await
                .expect("transfer");
        }
    }
    let start = std::time::Instant::now();
    while (0..2).any(|p| {
        nodes[0]
            .node
            .driver()
            .role_hint(session_group(p))
            .is_some_and(|(r, _, _)| r == Role::Leader)
    }) {
        assert!(
            start.elapsed() < DEADLINE,
            "node 1 still leads a session partition"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    leaders_elected(&nodes, &all_groups()).await;
    // Relaying needs the other nodes' client addresses (node directory).
    let start = std::time::Instant::now();
    while !nodes.iter().all(|n| {
        let d = n.node.store().directory();
        d.len() == 3 && d.values().all(|a| !a.client_addr.is_empty())
    }) {
        assert!(start.elapsed() < DEADLINE, "node directory incomplete");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let addr = nodes[0].tc_addr();
    let mut rm = Raw::connect(addr).await;
    rm.register_rm(RESOURCE).await;
    let mut phase_two = spawn_rm(
        rm,
        BranchStatus::PhaseTwoCommitted,
        BranchStatus::PhaseTwoRollbacked,
    );
    let mut tm = Raw::connect(addr).await;
    tm.register_tm().await;
    for i in 0..4 {
        let x = tm.begin(60_000).await;
        tm.register(&x, &format!("relay:{i}")).await.expect("lock");
        if i % 2 == 0 {
            assert_eq!(tm.global("rollback", &x).await, GlobalStatus::Rollbacked);
            let (kind, xid, _) = recv_within(&mut phase_two).await;
            assert_eq!((kind.as_str(), xid.as_str()), ("rollback", x.as_str()));
        } else {
            assert_eq!(tm.global("commit", &x).await, GlobalStatus::Committed);
            let (kind, xid, _) = recv_within(&mut phase_two).await;
            assert_eq!((kind.as_str(), xid.as_str()), ("commit", x.as_str()));
        }
    }
    for n in nodes {
        n.stop().await;
    }
}

/// An admin request on a node's client port (`RHEA.X ...`).
async fn admin(addr: SocketAddr, args: &[&str]) -> rhea_kv::resp::Value {
    let mut c = rhea_kv::router::Conn::connect(
        &addr.to_string(),
        Duration::from_secs(2),
        rhea_kv::resp::RespLimits::default(),
    )
    .await
    .expect("connect to the client port");
    let mut full: Vec<&[u8]> = vec![b"RHEA.X"];
    full.extend(args.iter().map(|a| a.as_bytes()));
    c.call(&full).await.expect("admin call")
}

/// Retries are bounded: an RM that keeps failing rollback leaves the session
/// in RollbackRetryTimeout, visible, with its row locks KEPT (the data may be
/// half undone); an operator lists it and force-finishes it, which releases
/// the locks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_retry_timeout_keeps_locks_until_force_finish() {
    use rhea_kv::resp::Value;
    let dir = test_dir("stuck");
    let nodes = cluster(&dir.0, 35, 1).await;
    leaders_elected(&nodes, &all_groups()).await;
    let addr = nodes[0].tc_addr();
    let mut rm = Raw::connect(addr).await;
    rm.register_rm(RESOURCE).await;
    let _rx = spawn_rm(
        rm,
        BranchStatus::PhaseTwoCommitted,
        BranchStatus::PhaseTwoRollbackFailedRetryable,
    );
    let mut tm = Raw::connect(addr).await;
    tm.register_tm().await;
    let x = tm.begin(60_000).await;
    tm.register(&x, "stuck:1").await.expect("lock");
    let first = tm.global("rollback", &x).await;
    assert_ne!(first, GlobalStatus::Rollbacked);
    let start = std::time::Instant::now();
    loop {
        let s = tm.global("status", &x).await;
        if s == GlobalStatus::RollbackRetryTimeout {
            break;
        }
        assert!(start.elapsed() < DEADLINE, "still {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !tm.lockable("", "stuck:1").await,
        "locks are kept after a rollback retry timeout"
    );
    let client = nodes[0].client_addr;
    match admin(client, &["TC.SESSIONS"]).await {
        Value::Array(rows) => {
            let row = rows
                .iter()
                .find_map(|r| match r {
                    Value::Array(f) if f.first() == Some(&Value::Bulk(x.clone().into())) => {
                        Some(f.clone())
                    }
                    _ => None,
                })
                .expect("the stuck session is listed");
            assert_eq!(row[1], Value::Bulk("RollbackRetryTimeout".into()));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        admin(client, &["TC.STATUS", &x]).await,
        Value::Bulk("RollbackRetryTimeout".into())
    );
    assert_eq!(
        admin(client, &["TC.PEEK", &x]).await,
        Value::Integer(i64::from(GlobalStatus::RollbackRetryTimeout.code()))
    );
    match admin(client, &["TC.FORCE-FINISH", &x]).await {
        Value::Simple(s) => assert!(s.starts_with("OK"), "{s}"),
        other => panic!("unexpected {other:?}"),
    }
    let start = std::time::Instant::now();
    while !tm.lockable("", "stuck:1").await {
        assert!(
            start.elapsed() < DEADLINE,
            "locks not released by force-finish"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(tm.global("status", &x).await, GlobalStatus::Finished);
    assert_eq!(admin(client, &["TC.PEEK", &x]).await, Value::Nil);
    assert!(matches!(
        admin(client, &["TC.STATUS"]).await,
        Value::Error(_)
    ));
    for n in nodes {
        n.stop().await;
    }
}

/// The partitions' state survives a restart from a snapshot plus the log
/// after it: an open transaction keeps its branch and row lock, and can
/// still be committed, after the node was stopped and started again on the
/// same data directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_locks_survive_snapshot_and_restart() {
    let dir = test_dir("snapshot");
    let raft = free_addr([127, 0, 36, 1]).await;
    let cluster = BTreeMap::from([(1u64, raft)]);
    let node = start_with(&dir.0, 1, raft, &cluster, 20).await;
    let nodes = vec![node];
    leaders_elected(&nodes, &all_groups()).await;
    let addr = nodes[0].tc_addr();
    let mut rm = Raw::connect(addr).await;
    rm.register_rm(RESOURCE).await;
    let mut phase_two = spawn_rm(
        rm,
        BranchStatus::PhaseTwoCommitted,
        BranchStatus::PhaseTwoRollbacked,
    );
    let mut tm = Raw::connect(addr).await;
    tm.register_tm().await;
    let held = tm.begin(600_000).await;
    tm.register(&held, "snap:0").await.expect("lock");
    // Enough traffic on every partition for several snapshots.
    for i in 1..=80 {
        let x = tm.begin(600_000).await;
        tm.register(&x, &format!("snap:{i}")).await.expect("lock");
        assert_eq!(tm.global("commit", &x).await, GlobalStatus::Committed);
        let _ = recv_within(&mut phase_two).await;
    }
    // Every session partition has snapshotted (the loop runs each second).
    let snapshots = dir.0.join("n1").join("snapshots");
    let start = std::time::Instant::now();
    loop {
        let taken = (0..2).all(|p| {
            std::fs::read_dir(snapshots.join(session_group(p).to_string()))
                .map(|d| {
                    d.flatten()
                        .any(|e| e.file_name().to_string_lossy().ends_with(".snap"))
                })
                .unwrap_or(false)
        });
        if taken {
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "no snapshot of the session partitions"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(tm);
    let node = nodes.into_iter().next().expect("node");
    node.stop().await;

    let node = start_with(&dir.0, 1, raft, &cluster, 20).await;
    let nodes = vec![node];
    leaders_elected(&nodes, &all_groups()).await;
    let addr = nodes[0].tc_addr();
    let mut tm = Raw::connect(addr).await;
    tm.register_tm().await;
    assert_eq!(tm.global("status", &held).await, GlobalStatus::Begin);
    assert!(
        !tm.lockable("", "snap:0").await,
        "the open branch's lock survived"
    );
    assert!(
        tm.lockable("", "snap:1,2,3,80").await,
        "committed rows stay free"
    );
    let mut rm = Raw::connect(addr).await;
    rm.register_rm(RESOURCE).await;
    let mut phase_two = spawn_rm(
        rm,
        BranchStatus::PhaseTwoCommitted,
        BranchStatus::PhaseTwoRollbacked,
    );
    assert_eq!(tm.global("commit", &held).await, GlobalStatus::Committed);
    let (kind, xid, _) = recv_within(&mut phase_two).await;
    assert_eq!((kind.as_str(), xid.as_str()), ("commit", held.as_str()));
    let start = std::time::Instant::now();
    while !tm.lockable("", "snap:0").await {
        assert!(start.elapsed() < DEADLINE, "lock not released after commit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for n in nodes {
        n.stop().await;
    }
}
