//! `TcClient` against fake TC nodes speaking Seata's wire protocol over
//! TCP on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rhea_txn::protocol::{
    BranchEndRequest, BranchRegisterResponse, BranchStatus, BranchType, Frame, FrameBody,
    FrameLimits, GlobalBeginResponse, GlobalEndResponse, GlobalLockQueryResponse, GlobalStatus,
    IdentifyResponse, MergedWarpMessage, Message, RegisterTmRequest, ResultCode,
    TransactionExceptionCode, TransactionResponse, UndoLogDeleteRequest, decode_frame,
    encode_frame,
};
use rhea_txn_client::{
    BoxFuture, ConnectError, ResourceManager, TcApi, TcClient, TcClientOptions, TxnError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

// ---------------------------------------------------------------- fake TC

#[derive(Default)]
struct State {
    register_tm: Vec<RegisterTmRequest>,
    register_rm: Vec<String>,
    heartbeats: usize,
    begins: u32,
    begin_names: Vec<String>,
    commits: Vec<String>,
    drop_once_seen: bool,
    /// Do not answer heartbeats (a hung TC).
    mute_heartbeats: bool,
}

struct FakeConn {
    out: mpsc::UnboundedSender<Vec<u8>>,
    waiting: Mutex<HashMap<u32, oneshot::Sender<FrameBody>>>,
    close: watch::Sender<bool>,
    closed: AtomicBool,
}

impl FakeConn {
    fn send(&self, frame: Frame) {
        let mut bytes = Vec::new();
        encode_frame(&frame, &mut bytes).unwrap();
        let _ = self.out.send(bytes);
    }
    fn respond(&self, id: u32, msg: Message) {
        self.send(Frame::new(id, FrameBody::Response(msg)));
    }
    fn close(&self) {
        self.close.send_replace(true);
    }
}

struct FakeTc {
    addr: String,
    state: Arc<Mutex<State>>,
    conns: Arc<Mutex<Vec<Arc<FakeConn>>>>,
    next_id: AtomicU32,
}

impl FakeTc {
    async fn start() -> FakeTc {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let state = Arc::new(Mutex::new(State::default()));
        let conns: Arc<Mutex<Vec<Arc<FakeConn>>>> = Arc::default();
        let (st, cs) = (state.clone(), conns.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (mut rd, mut wr) = stream.into_split();
                let (out, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
                let (close, _) = watch::channel(false);
                let conn = Arc::new(FakeConn {
                    out,
                    waiting: Mutex::default(),
                    close,
                    closed: AtomicBool::new(false),
                });
                cs.lock().unwrap().push(conn.clone());
                let mut closed = conn.close.subscribe();
                tokio::spawn(async move {
                    loop {
                        let next = tokio::select! {
                            _ = closed.wait_for(|c| *c) => None,
                            b = rx.recv() => b,
                        };
                        let Some(b) = next else { break };
                        if wr.write_all(&b).await.is_err() {
                            break;
                        }
                    }
                    let _ = wr.shutdown().await;
                });
                let st = st.clone();
                let mut closed = conn.close.subscribe();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = vec![0u8; 8192];
                    'outer: loop {
                        let n = tokio::select! {
                            _ = closed.wait_for(|c| *c) => break,
                            r = rd.read(&mut chunk) => match r {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            },
                        };
                        buf.extend_from_slice(&chunk[..n]);
                        loop {
                            match decode_frame(&buf, &FrameLimits::default()) {
                                Ok(Some((frame, used))) => {
                                    buf.drain(..used);
                                    handle(&st, &conn, frame);
                                }
                                Ok(None) => break,
                                Err(e) => panic!("fake TC got a malformed frame: {e}"),
                            }
                            if *conn.close.borrow() {
                                break 'outer;
                            }
                        }
                    }
                    conn.closed.store(true, Ordering::SeqCst);
                    conn.close();
                });
            }
        });
        FakeTc {
            addr,
            state,
            conns,
            next_id: AtomicU32::new(1_000_000),
        }
    }

    fn state<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.state.lock().unwrap())
    }

    fn live(&self) -> Arc<FakeConn> {
        self.conns
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|c| !c.closed.load(Ordering::SeqCst) && !*c.close.borrow())
            .cloned()
            .expect("no live connection")
    }

    fn drop_all(&self) {
        for c in self.conns.lock().unwrap().iter() {
            c.close();
        }
    }

    /// Sends a request to the client over the live connection and waits for
    /// its answer.
    async fn call(&self, body: FrameBody) -> FrameBody {
        let conn = self.live();
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = oneshot::channel();
        conn.waiting.lock().unwrap().insert(id, tx);
        conn.send(Frame::new(id, body));
        tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .expect("client did not answer")
            .unwrap()
    }

    async fn request(&self, msg: Message) -> Message {
        match self.call(FrameBody::Request(msg)).await {
            FrameBody::Response(m) => m,
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn seq_of(xid: &str) -> u32 {
    xid.rsplit(':')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn end_response(status: GlobalStatus) -> GlobalEndResponse {
    GlobalEndResponse {
        result_code: ResultCode::Success,
        msg: String::new(),
        transaction_exception_code: TransactionExceptionCode::Unknown,
        global_status: status,
    }
}

fn delayed(conn: &Arc<FakeConn>, id: u32, delay_ms: u64, msg: Message) {
    let conn = conn.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        conn.respond(id, msg);
    });
}

fn handle(st: &Mutex<State>, conn: &Arc<FakeConn>, frame: Frame) {
    let id = frame.request_id;
    let msg = match frame.body {
        FrameBody::HeartbeatRequest => {
            let mut s = st.lock().unwrap();
            s.heartbeats += 1;
            if !s.mute_heartbeats {
                conn.send(Frame::new(id, FrameBody::HeartbeatResponse));
            }
            return;
        }
        body @ (FrameBody::HeartbeatResponse | FrameBody::Response(_)) => {
            if let Some(tx) = conn.waiting.lock().unwrap().remove(&id) {
                let _ = tx.send(body);
            }
            return;
        }
        FrameBody::Request(m) | FrameBody::Oneway(m) => m,
    };
    let identified = Message::RegisterTmResponse(IdentifyResponse {
        identified: true,
        version: "1.5.0".into(),
    });
    match msg {
        Message::RegisterTmRequest(r) => {
            st.lock().unwrap().register_tm.push(r);
            conn.respond(id, identified);
        }
        Message::RegisterRmRequest(r) => {
            st.lock().unwrap().register_rm.push(r.resource_ids);
            conn.respond(
                id,
                Message::RegisterRmResponse(IdentifyResponse {
                    identified: true,
                    version: "1.5.0".into(),
                }),
            );
        }
        Message::GlobalBeginRequest(r) => {
            if r.transaction_name == "drop" {
                st.lock().unwrap().begin_names.push(r.transaction_name);
                conn.close();
                return;
            }
            let n = {
                let mut s = st.lock().unwrap();
                s.begins += 1;
                s.begin_names.push(r.transaction_name);
                s.begins
            };
            let resp = Message::GlobalBeginResponse(GlobalBeginResponse {
                result_code: ResultCode::Success,
                msg: String::new(),
                transaction_exception_code: TransactionExceptionCode::Unknown,
                xid: format!("127.0.0.1:8091:{n}"),
                extra_data: String::new(),
            });
            delayed(conn, id, u64::from(n % 7), resp);
        }
        Message::GlobalStatusRequest(r) => {
            if r.xid == "silent" {
                return;
            }
            let n = seq_of(&r.xid);
            let status = GlobalStatus::ALL[(n as usize) % GlobalStatus::ALL.len()];
            delayed(
                conn,
                id,
                u64::from(n % 5),
                Message::GlobalStatusResponse(end_response(status)),
            );
        }
        Message::GlobalCommitRequest(r) => {
            let mut s = st.lock().unwrap();
            if r.xid == "drop-once" && !s.drop_once_seen {
                s.drop_once_seen = true;
                conn.close();
                return;
            }
            s.commits.push(r.xid);
            conn.respond(
                id,
                Message::GlobalCommitResponse(end_response(GlobalStatus::Committed)),
            );
        }
        Message::GlobalRollbackRequest(_) => conn.respond(
            id,
            Message::GlobalRollbackResponse(end_response(GlobalStatus::Rollbacked)),
        ),
        Message::BranchRegisterRequest(r) => {
            let (result_code, code, msg) = match r.resource_id.as_str() {
                "locked" => (
                    ResultCode::Failed,
                    TransactionExceptionCode::LockKeyConflict,
                    format!("lock {} held by 127.0.0.1:8091:1", r.lock_key),
                ),
                "locked-fast" => (
                    ResultCode::Failed,
                    TransactionExceptionCode::LockKeyConflictFailFast,
                    "held".to_owned(),
                ),
                "broken" => (
                    ResultCode::Failed,
                    TransactionExceptionCode::GlobalTransactionNotActive,
                    "not active".to_owned(),
                ),
                _ => (
                    ResultCode::Success,
                    TransactionExceptionCode::Unknown,
                    String::new(),
                ),
            };
            conn.respond(
                id,
                Message::BranchRegisterResponse(BranchRegisterResponse {
                    result_code,
                    msg,
                    transaction_exception_code: code,
                    branch_id: 42,
                }),
            );
        }
        Message::GlobalLockQueryRequest(r) => conn.respond(
            id,
            Message::GlobalLockQueryResponse(GlobalLockQueryResponse {
                result_code: ResultCode::Success,
                msg: String::new(),
                transaction_exception_code: TransactionExceptionCode::Unknown,
                lockable: r.resource_id != "locked",
            }),
        ),
        Message::BranchReportRequest(_) => conn.respond(
            id,
            Message::BranchReportResponse(TransactionResponse {
                result_code: ResultCode::Success,
                msg: String::new(),
                transaction_exception_code: TransactionExceptionCode::Unknown,
            }),
        ),
        other => panic!("fake TC: unexpected {}", other.name()),
    }
}

// ---------------------------------------------------------------- helpers

async fn eventually(what: &str, f: impl Fn() -> bool) {
    for _ in 0..1000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting for {what}");
}

fn options(addrs: Vec<String>) -> TcClientOptions {
    TcClientOptions {
        request_timeout_ms: 3_000,
        connect_timeout_ms: 3_000,
        reconnect_backoff_min_ms: 10,
        reconnect_backoff_max_ms: 100,
        ..TcClientOptions::new(addrs, "test-app")
    }
}

/// (phase, xid, branch id, application data)
type RmCall = (&'static str, String, i64, Option<String>);

#[derive(Default)]
struct FakeRm {
    id: String,
    calls: Mutex<Vec<RmCall>>,
}

impl ResourceManager for FakeRm {
    fn resource_id(&self) -> &str {
        &self.id
    }
    fn branch_type(&self) -> BranchType {
        BranchType::At
    }
    fn branch_commit<'a>(
        &'a self,
        xid: &'a str,
        branch_id: i64,
        data: Option<&'a str>,
    ) -> BoxFuture<'a, BranchStatus> {
        Box::pin(async move {
            self.calls.lock().unwrap().push((
                "commit",
                xid.to_owned(),
                branch_id,
                data.map(str::to_owned),
            ));
            BranchStatus::PhaseTwoCommitted
        })
    }
    fn branch_rollback<'a>(
        &'a self,
        xid: &'a str,
        branch_id: i64,
        data: Option<&'a str>,
    ) -> BoxFuture<'a, BranchStatus> {
        Box::pin(async move {
            self.calls.lock().unwrap().push((
                "rollback",
                xid.to_owned(),
                branch_id,
                data.map(str::to_owned),
            ));
            if branch_id == 666 {
                panic!("resource manager bug");
            }
            BranchStatus::PhaseTwoRollbacked
        })
    }
}

fn branch_end(resource_id: &str, branch_id: i64, data: &str) -> BranchEndRequest {
    BranchEndRequest {
        xid: "127.0.0.1:8091:5".into(),
        branch_id,
        branch_type: BranchType::At,
        resource_id: resource_id.into(),
        application_data: data.into(),
    }
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn registers_tm_and_rm_on_every_node() {
    let (a, b) = (FakeTc::start().await, FakeTc::start().await);
    let client = TcClient::connect(options(vec![a.addr.clone(), b.addr.clone()]))
        .await
        .unwrap();
    assert!(client.wait_connected(2, 3_000).await);
    for tc in [&a, &b] {
        let tm = tc.state(|s| s.register_tm.clone());
        assert_eq!(tm.len(), 1);
        assert_eq!(tm[0].application_id, "test-app");
        assert_eq!(tm[0].transaction_service_group, "default_tx_group");
        assert_eq!(tm[0].version, "1.5.0");
        assert!(tc.state(|s| s.register_rm.is_empty()));
    }
    client
        .register_resource(Arc::new(FakeRm {
            id: "jdbc:mysql://db/a".into(),
            ..FakeRm::default()
        }))
        .await;
    client
        .register_resource(Arc::new(FakeRm {
            id: "jdbc:mysql://db/b".into(),
            ..FakeRm::default()
        }))
        .await;
    for tc in [&a, &b] {
        assert_eq!(
            tc.state(|s| s.register_rm.clone()),
            vec!["jdbc:mysql://db/a", "jdbc:mysql://db/b"]
        );
    }
    let mut addrs = client.connected_addrs();
    addrs.sort();
    let mut expected = vec![a.addr.clone(), b.addr.clone()];
    expected.sort();
    assert_eq!(addrs, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_requests_are_matched_to_their_responses() {
    let (a, b) = (FakeTc::start().await, FakeTc::start().await);
    let client = Arc::new(
        TcClient::connect(options(vec![a.addr.clone(), b.addr.clone()]))
            .await
            .unwrap(),
    );
    assert!(client.wait_connected(2, 3_000).await);
    let mut handles = Vec::new();
    for i in 0..200u32 {
        let client = client.clone();
        handles.push(tokio::spawn(async move {
            // Statuses are answered out of order (delay by sequence number)
            // and are a function of the XID.
            let xid = format!("10.0.0.1:8091:{}", i + 1);
            let status = client.global_status(&xid).await.unwrap();
            assert_eq!(
                status,
                GlobalStatus::ALL[((i + 1) as usize) % GlobalStatus::ALL.len()],
                "{xid}"
            );
            client.global_begin("many", 60_000).await.unwrap()
        }));
    }
    let mut xids = Vec::new();
    for h in handles {
        xids.push(h.await.unwrap());
    }
    xids.sort();
    xids.dedup();
    // Each node numbers its own XIDs; the two together answered 200 begins.
    let begins = a.state(|s| s.begins) + b.state(|s| s.begins);
    assert_eq!(begins, 200);
    assert!(
        a.state(|s| s.begins) > 0 && b.state(|s| s.begins) > 0,
        "round robin"
    );
    assert!(xids.len() >= 100);
}

/// Requests about a transaction go to the TC node named in its XID (the
/// node that began it) when the client is connected to it; others round
/// robin.
#[tokio::test]
async fn requests_about_a_transaction_prefer_the_node_named_in_its_xid() {
    let (a, b) = (FakeTc::start().await, FakeTc::start().await);
    let client = TcClient::connect(options(vec![a.addr.clone(), b.addr.clone()]))
        .await
        .unwrap();
    assert!(client.wait_connected(2, 3_000).await);
    for i in 0..10 {
        client
            .global_commit(&format!("{}:{i}", b.addr))
            .await
            .unwrap();
    }
    assert_eq!(b.state(|s| s.commits.len()), 10);
    assert_eq!(a.state(|s| s.commits.len()), 0);
    // An XID naming a node the client does not know: round robin.
    for i in 0..10 {
        client
            .global_commit(&format!("10.9.9.9:1:{i}"))
            .await
            .unwrap();
    }
    assert!(a.state(|s| s.commits.len()) > 0);
}

#[tokio::test]
async fn tc_failures_are_mapped() {
    let a = FakeTc::start().await;
    let client = TcClient::connect(options(vec![a.addr.clone()]))
        .await
        .unwrap();
    let xid = "127.0.0.1:8091:1";
    match client
        .branch_register(BranchType::At, xid, "locked", "t:1", None)
        .await
    {
        Err(TxnError::LockConflict(msg)) => assert!(msg.contains("t:1"), "{msg}"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(
        client
            .branch_register(BranchType::At, xid, "locked-fast", "t:1", None)
            .await,
        Err(TxnError::LockConflict(_))
    ));
    assert!(matches!(
        client
            .branch_register(BranchType::At, xid, "broken", "t:1", None)
            .await,
        Err(TxnError::Tc {
            code: TransactionExceptionCode::GlobalTransactionNotActive,
            ..
        })
    ));
    assert_eq!(
        client
            .branch_register(BranchType::At, xid, "db", "t:1", Some("{}"))
            .await
            .unwrap(),
        42
    );
    assert!(
        !client
            .global_lock_query(BranchType::At, None, "locked", "t:1")
            .await
            .unwrap()
    );
    client
        .branch_report(BranchType::At, xid, 42, BranchStatus::PhaseOneDone, None)
        .await
        .unwrap();
    assert_eq!(
        client.global_commit(xid).await.unwrap(),
        GlobalStatus::Committed
    );
    assert_eq!(
        client.global_rollback(xid).await.unwrap(),
        GlobalStatus::Rollbacked
    );
}

#[tokio::test]
async fn phase_two_calls_are_dispatched_to_the_resource_manager() {
    let a = FakeTc::start().await;
    let client = TcClient::connect(options(vec![a.addr.clone()]))
        .await
        .unwrap();
    let rm = Arc::new(FakeRm {
        id: "db".into(),
        ..FakeRm::default()
    });
    client.register_resource(rm.clone()).await;

    let answer = a
        .request(Message::BranchCommitRequest(branch_end(
            "db",
            7,
            "{\"a\":1}",
        )))
        .await;
    match answer {
        Message::BranchCommitResponse(r) => {
            assert_eq!(r.result_code, ResultCode::Success);
            assert_eq!(r.xid, "127.0.0.1:8091:5");
            assert_eq!(r.branch_id, 7);
            assert_eq!(r.branch_status, BranchStatus::PhaseTwoCommitted);
        }
        other => panic!("unexpected {other:?}"),
    }
    let answer = a
        .request(Message::BranchRollbackRequest(branch_end("db", 8, "")))
        .await;
    match answer {
        Message::BranchRollbackResponse(r) => {
            assert_eq!(r.result_code, ResultCode::Success);
            assert_eq!(r.branch_id, 8);
            assert_eq!(r.branch_status, BranchStatus::PhaseTwoRollbacked);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        rm.calls.lock().unwrap().clone(),
        vec![
            (
                "commit",
                "127.0.0.1:8091:5".to_owned(),
                7,
                Some("{\"a\":1}".to_owned())
            ),
            ("rollback", "127.0.0.1:8091:5".to_owned(), 8, None),
        ]
    );

    // Unknown resource: a failure with a retryable status.
    match a
        .request(Message::BranchRollbackRequest(branch_end("other", 9, "")))
        .await
    {
        Message::BranchRollbackResponse(r) => {
            assert_eq!(r.result_code, ResultCode::Failed);
            assert!(r.msg.contains("other"), "{}", r.msg);
            assert_eq!(r.branch_id, 9);
            assert_eq!(
                r.branch_status,
                BranchStatus::PhaseTwoRollbackFailedRetryable
            );
        }
        other => panic!("unexpected {other:?}"),
    }

    // A panicking resource manager: a failure, and the client lives on.
    match a
        .request(Message::BranchRollbackRequest(branch_end("db", 666, "")))
        .await
    {
        Message::BranchRollbackResponse(r) => assert_eq!(r.result_code, ResultCode::Failed),
        other => panic!("unexpected {other:?}"),
    }

    // Undo log deletion is ignored; a merged request is answered in order.
    a.live().send(Frame::new(
        5,
        FrameBody::Oneway(Message::UndoLogDeleteRequest(UndoLogDeleteRequest {
            branch_type: BranchType::At,
            resource_id: "db".into(),
            save_days: 7,
        })),
    ));
    let merged = Message::MergedWarpMessage(MergedWarpMessage {
        msgs: vec![
            Message::BranchCommitRequest(branch_end("db", 10, "")),
            Message::BranchRollbackRequest(branch_end("db", 11, "")),
        ],
        msg_ids: vec![],
    });
    match a.request(merged).await {
        Message::MergeResultMessage(m) => {
            assert_eq!(m.msgs.len(), 2);
            assert!(matches!(&m.msgs[0], Message::BranchCommitResponse(r) if r.branch_id == 10));
            assert!(matches!(&m.msgs[1], Message::BranchRollbackResponse(r) if r.branch_id == 11));
        }
        other => panic!("unexpected {other:?}"),
    }
    // The client answers the TC's heartbeat.
    assert_eq!(
        a.call(FrameBody::HeartbeatRequest).await,
        FrameBody::HeartbeatResponse
    );
}

#[tokio::test]
async fn reconnects_and_registers_again_after_the_tc_drops_the_connection() {
    let a = FakeTc::start().await;
    let client = TcClient::connect(options(vec![a.addr.clone()]))
        .await
        .unwrap();
    client
        .register_resource(Arc::new(FakeRm {
            id: "r1".into(),
            ..FakeRm::default()
        }))
        .await;
    client
        .register_resource(Arc::new(FakeRm {
            id: "r2".into(),
            ..FakeRm::default()
        }))
        .await;
    a.drop_all();
    eventually("re-registration", || {
        a.state(|s| s.register_tm.len() == 2 && s.register_rm.len() == 3)
    })
    .await;
    assert_eq!(a.state(|s| s.register_rm[2].clone()), "r1,r2");
    assert!(client.wait_connected(1, 3_000).await);
    client.global_begin("after", 1_000).await.unwrap();
}

#[tokio::test]
async fn malformed_frame_closes_the_connection_and_the_client_reconnects() {
    let a = FakeTc::start().await;
    let client = TcClient::connect(options(vec![a.addr.clone()]))
        .await
        .unwrap();
    let conn = a.live();
    // Right magic, wrong protocol version.
    let _ = conn.out.send(vec![
        0xda, 0xda, 0x09, 0, 0, 0, 16, 0, 16, 0, 1, 0, 0, 0, 0, 1,
    ]);
    eventually("the client to close", || conn.closed.load(Ordering::SeqCst)).await;
    eventually("re-registration", || a.state(|s| s.register_tm.len() == 2)).await;
    assert!(client.wait_connected(1, 3_000).await);
    client.global_begin("after", 1_000).await.unwrap();

    // Garbage from the first byte on.
    let conn = a.live();
    let _ = conn.out.send(b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec());
    eventually("the client to close", || conn.closed.load(Ordering::SeqCst)).await;
    eventually("re-registration", || a.state(|s| s.register_tm.len() == 3)).await;
}

#[tokio::test]
async fn unanswered_request_times_out() {
    let a = FakeTc::start().await;
    let mut opts = options(vec![a.addr.clone()]);
    opts.request_timeout_ms = 200;
    let client = TcClient::connect(opts).await.unwrap();
    let started = std::time::Instant::now();
    assert!(matches!(
        client.global_status("silent").await,
        Err(TxnError::Timeout(200))
    ));
    assert!(started.elapsed() < Duration::from_secs(2));
    // The connection is still fine.
    assert_eq!(
        client.global_commit("x:1:1").await.unwrap(),
        GlobalStatus::Committed
    );
}

#[tokio::test]
async fn requests_in_flight_are_bounded() {
    let a = FakeTc::start().await;
    let mut opts = options(vec![a.addr.clone()]);
    opts.request_timeout_ms = 300;
    opts.max_in_flight_requests = 1;
    let client = Arc::new(TcClient::connect(opts).await.unwrap());
    let c2 = client.clone();
    let silent = tokio::spawn(async move { c2.global_status("silent").await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The only slot is taken until the silent request times out (at
    // 300 ms): this one waits for it, then goes through within its own
    // timeout (at 350 ms).
    let started = std::time::Instant::now();
    client.global_commit("x:1:1").await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert!(matches!(silent.await.unwrap(), Err(TxnError::Timeout(300))));
}

#[tokio::test]
async fn closed_client_fails_requests_at_once() {
    let a = FakeTc::start().await;
    let client = TcClient::connect(options(vec![a.addr.clone()]))
        .await
        .unwrap();
    client.close();
    let started = std::time::Instant::now();
    assert!(matches!(
        client.global_status("x:1:1").await,
        Err(TxnError::Transport(_))
    ));
    assert!(started.elapsed() < Duration::from_secs(1));
    eventually("the fake to see the close", || {
        a.conns
            .lock()
            .unwrap()
            .iter()
            .all(|c| c.closed.load(Ordering::SeqCst))
    })
    .await;
}

#[tokio::test]
async fn lost_begin_is_not_resent_but_lost_commit_is() {
    let (a, b) = (FakeTc::start().await, FakeTc::start().await);
    let client = TcClient::connect(options(vec![a.addr.clone(), b.addr.clone()]))
        .await
        .unwrap();
    assert!(client.wait_connected(2, 3_000).await);

    // The node closes the connection on receiving the begin: outcome
    // unknown, reported, not resent.
    assert!(matches!(
        client.global_begin("drop", 1_000).await,
        Err(TxnError::Transport(_))
    ));
    let names = a.state(|s| s.begin_names.len()) + b.state(|s| s.begin_names.len());
    assert_eq!(names, 1);

    // A commit is idempotent: resent to another node (or the same one once
    // reconnected). Both nodes drop the first commit they see.
    assert!(client.wait_connected(2, 3_000).await);
    assert_eq!(
        client.global_commit("drop-once").await.unwrap(),
        GlobalStatus::Committed
    );
    assert!(a.state(|s| s.drop_once_seen) && b.state(|s| s.drop_once_seen));
    let commits = a.state(|s| s.commits.len()) + b.state(|s| s.commits.len());
    assert_eq!(commits, 1);
}

#[tokio::test]
async fn heartbeats_are_sent_when_idle() {
    let a = FakeTc::start().await;
    let mut opts = options(vec![a.addr.clone()]);
    opts.heartbeat_interval_ms = 20;
    opts.read_idle_timeout_ms = 2_000;
    let _client = TcClient::connect(opts).await.unwrap();
    eventually("heartbeats", || a.state(|s| s.heartbeats >= 3)).await;
    // Heartbeats keep the connection (no re-registration).
    assert_eq!(a.state(|s| s.register_tm.len()), 1);
}

#[tokio::test]
async fn read_idle_connection_is_reopened() {
    let a = FakeTc::start().await;
    let mut opts = options(vec![a.addr.clone()]);
    opts.heartbeat_interval_ms = 30;
    opts.read_idle_timeout_ms = 150;
    let client = TcClient::connect(opts).await.unwrap();
    // Answered heartbeats keep the connection up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(a.state(|s| s.register_tm.len()), 1);
    // A TC that stops answering is dropped and reconnected.
    a.state.lock().unwrap().mute_heartbeats = true;
    eventually("reconnection after read idle", || {
        a.state(|s| s.register_tm.len() >= 2)
    })
    .await;
    a.state.lock().unwrap().mute_heartbeats = false;
    assert!(client.wait_connected(1, 3_000).await);
}

#[tokio::test]
async fn connect_fails_when_no_node_is_reachable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let mut opts = options(vec![addr]);
    opts.connect_timeout_ms = 300;
    assert!(matches!(
        TcClient::connect(opts).await,
        Err(ConnectError::Unreachable { .. })
    ));
    assert!(matches!(
        TcClient::connect(TcClientOptions::default()).await,
        Err(ConnectError::InvalidOptions(_))
    ));
}

#[tokio::test]
async fn template_runs_over_the_network_client() {
    let a = FakeTc::start().await;
    let client: Arc<dyn TcApi> = Arc::new(
        TcClient::connect(options(vec![a.addr.clone()]))
            .await
            .unwrap(),
    );
    let info = rhea_txn_client::TransactionInfo::named("order");
    let xid = rhea_txn_client::tm::execute(&client, &info, || async {
        Ok::<_, String>(rhea_txn_client::context::current_xid())
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(a.state(|s| s.commits.clone()), vec![xid]);
    assert_eq!(a.state(|s| s.begin_names.clone()), vec!["order"]);
}
