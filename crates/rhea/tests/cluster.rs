//! Process-level tests of `rhea server`: real processes on loopback
//! addresses (node i on 127.0.0.(1+i)), killed with SIGKILL, paused with
//! SIGSTOP and restarted on their data directories, with client histories
//! checked by the simulator's linearizability checker.
//!
//! Run with `cargo test -p rhea --test cluster -- --test-threads=1`. Set
//! `RHEA_IT_KEEP=1` to keep the data directories and logs of a run. Each
//! test uses its own two ports (`PORTS_*` offsets from `common::port_base`)
//! on every node's address, so the tests may also run in parallel.
//!
//! `admin_membership_change_through_a_follower` and
//! `forwarded_writes_survive_a_leader_kill_exactly_once` are regression tests
//! for two bugs these tests found (see their documentation).

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Cluster, Outcome, Workload, call, info_stat, run_cli};
use rhea_kv::resp::{RespLimits, Value};
use rhea_kv::router::Conn;
use rhea_sim::linearizability::{KvFailureKind, KvInput, KvOutput, check_kv_history};

/// Per-test port offsets (see `common::port_base`): each test uses two
/// ports (raft, client) on every node's own loopback address.
const PORTS_KILL_LEADER: u16 = 0;
const PORTS_KILL_ALL: u16 = 2;
const PORTS_FALLBACK: u16 = 4;
const PORTS_RESP: u16 = 6;
const PORTS_ADMIN: u16 = 8;
const PORTS_BAD_FLAGS: u16 = 10;
const PORTS_ADMIN_FOLLOWER: u16 = 12;
const PORTS_FORWARDED: u16 = 14;

/// Leader transfers of the read-index fallback test.
const TRANSFERS: usize = 80;

/// Readers (spread over the nodes) and writers (on the leader) during each
/// leader transfer.
const PROBE_READERS: usize = 12;
const PROBE_WRITERS: usize = 3;

/// Search budget of the linearizability checker, per key.
const CHECK_BUDGET: u64 = 5_000_000;

/// Run a test body with a deadline: a hung test fails instead of blocking
/// the run (the cluster inside is dropped, which kills its processes and
/// prints their logs).
async fn with_deadline<F: std::future::Future<Output = ()>>(name: &str, secs: u64, f: F) {
    let started = Instant::now();
    if tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .is_err()
    {
        panic!("{name}: did not finish within {secs} s");
    }
    eprintln!("{name}: passed in {:.1} s", started.elapsed().as_secs_f64());
}

/// Keys of region 1 (first byte < 0x80) and of region 2 (>= 0x80) of a
/// two-region layout.
fn two_region_keys(per_region: usize) -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = (0..per_region)
        .map(|i| format!("a{i}").into_bytes())
        .collect();
    keys.extend((0..per_region).map(|i| {
        let mut k = vec![0xF0];
        k.extend(format!("k{i}").bytes());
        k
    }));
    keys
}

fn check_history(w: &Workload, what: &str) {
    let history = w.history.lock().unwrap().clone();
    let started = Instant::now();
    let report = check_kv_history(&history, CHECK_BUDGET);
    eprintln!(
        "{what}: {report} (checked in {:.2} s); {}",
        started.elapsed().as_secs_f64(),
        w.summary()
    );
    if report.is_ok() {
        return;
    }
    // The whole history of every failing key goes to a file; the operations
    // around each blocking one go into the message.
    let path = std::env::temp_dir().join(format!(
        "rhea-it-history-{}-{}.txt",
        what.replace(' ', "-"),
        std::process::id()
    ));
    let mut file = String::new();
    let mut around = String::new();
    for f in &report.failures {
        let ops = w.describe_key(f.key);
        file.push_str(&format!("===== key {} =====\n", f.key));
        for (_, line) in &ops {
            file.push_str(line);
            file.push('\n');
        }
        if let KvFailureKind::NotLinearizable { blocking_op, .. } = &f.kind {
            let t = blocking_op.call;
            around.push_str(&format!(
                "operations on key {} called within 150 ms of op #{}:\n",
                f.key, blocking_op.index
            ));
            for (call, line) in &ops {
                if call.abs_diff(t) <= 150_000 {
                    around.push_str(line);
                    around.push('\n');
                }
            }
        }
    }
    let _ = std::fs::write(&path, &file);
    panic!(
        "{what}: {report}\n{around}\nevents (history clock, microseconds):\n{}\nfull history of the failing keys: {}",
        w.events.lock().unwrap().join("\n"),
        path.display()
    );
}

fn assert_no_anomalies(w: &Workload) {
    let a = w.anomalies.lock().unwrap();
    assert!(
        a.is_empty(),
        "replies that are neither a result nor a retryable error ({}): {:#?}",
        a.len(),
        &a[..a.len().min(20)]
    );
}

async fn spawn_clients(
    w: &Arc<Workload>,
    n: u64,
    addrs: &[std::net::SocketAddr],
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..n)
        .map(|i| {
            tokio::spawn(
                w.clone()
                    .client(i + 1, addrs.to_vec(), usize::try_from(i).unwrap()),
            )
        })
        .collect()
}

async fn stop_clients(w: &Workload, handles: Vec<tokio::task::JoinHandle<()>>) {
    w.stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.await.unwrap();
    }
}

/// Wait until node `id`'s applied index of `region` reaches `index`.
async fn wait_applied(c: &Cluster, id: u64, region: u64, index: u64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let last = match c.region_info(id, region).await {
            Ok(m) => {
                let applied: u64 = m.get("applied").and_then(|a| a.parse().ok()).unwrap_or(0);
                if applied >= index {
                    return;
                }
                format!("{m:?}")
            }
            Err(e) => e,
        };
        assert!(
            Instant::now() < deadline,
            "node {id} did not apply region {region} up to {index} within {within:?} (last INFO: {last})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------
// 1. kill -9 the leader of a region under a concurrent load, restart it.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_kill_leader_under_load() {
    with_deadline("three_nodes_kill_leader_under_load", 58, async {
        let mut c = Cluster::new("kill-leader", 3, PORTS_KILL_LEADER, &["--regions", "2"]);
        c.start_all();
        c.wait_ready(
            &[1, 2, 3],
            &[b"a-ready", b"\xF0-ready"],
            Duration::from_secs(20),
        )
        .await;
        let w = Workload::new(two_region_keys(5), Duration::from_secs(3));
        let handles = spawn_clients(&w, 8, &c.client_addrs()).await;

        tokio::time::sleep(Duration::from_millis(1500)).await;
        let before_kill = w.ok.load(Ordering::Relaxed);
        let victim = c.leader_of(1, &[1, 2, 3], Duration::from_secs(10)).await;
        eprintln!("killing node {victim}, leader of region 1, after {before_kill} ops");
        c.kill9(victim);
        w.event(format!("killed node {victim}"));
        tokio::time::sleep(Duration::from_secs(2)).await;
        let during_outage = w.ok.load(Ordering::Relaxed) - before_kill;
        c.start(victim);
        w.event(format!("restarted node {victim}"));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let at_restart = w.ok.load(Ordering::Relaxed);
        // Keep the load until some operations succeed with all three nodes back.
        let deadline = Instant::now() + Duration::from_secs(10);
        while w.ok.load(Ordering::Relaxed) < at_restart + 50 {
            assert!(
                Instant::now() < deadline,
                "no progress after the restart: {}",
                w.summary()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop_clients(&w, handles).await;
        eprintln!(
            "ops: {before_kill} before the kill, {during_outage} during the outage; {}",
            w.summary()
        );
        assert!(before_kill > 0, "no operation succeeded before the kill");
        assert!(
            during_outage > 0,
            "no operation succeeded while node {victim} was down (2 of 3 nodes are a quorum)"
        );
        assert_no_anomalies(&w);
        check_history(&w, "kill-leader history");

        // The restarted node catches up with the leaders' commit indexes.
        for region in [1u64, 2] {
            let live: Vec<u64> = vec![1, 2, 3];
            let leader = c.leader_of(region, &live, Duration::from_secs(10)).await;
            let commit: u64 = c.region_info(leader, region).await.unwrap()["commit"]
                .parse()
                .unwrap();
            wait_applied(&c, victim, region, commit, Duration::from_secs(15)).await;
        }
        c.finish();
    })
    .await;
}

// ---------------------------------------------------------------------------
// 2. kill -9 every node, restart them all: every acknowledged write is there.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_all_and_restart_loses_nothing() {
    with_deadline("kill_all_and_restart_loses_nothing", 58, async {
        let mut c = Cluster::new("kill-all", 3, PORTS_KILL_ALL, &["--regions", "2"]);
        c.start_all();
        c.wait_ready(
            &[1, 2, 3],
            &[b"a-ready", b"\xF0-ready"],
            Duration::from_secs(20),
        )
        .await;
        let key = |i: usize| -> Vec<u8> {
            // Both regions: even keys below 0x80, odd keys above.
            if i.is_multiple_of(2) {
                format!("key-{i:03}").into_bytes()
            } else {
                let mut k = vec![0xC0];
                k.extend(format!("key-{i:03}").bytes());
                k
            }
        };
        let value = |i: usize| format!("value-{i}-{}", "x".repeat(i % 50)).into_bytes();
        // 4 writers, each through its own node, 50 keys each.
        let t = Instant::now();
        let addrs = c.client_addrs();
        let mut writers = Vec::new();
        for wi in 0..4usize {
            let addr = addrs[wi % addrs.len()];
            writers.push(tokio::spawn(async move {
                let mut conn = Conn::connect(
                    &addr.to_string(),
                    Duration::from_secs(1),
                    RespLimits::default(),
                )
                .await
                .unwrap();
                for i in (wi..200).step_by(4) {
                    let (k, v) = (key(i), value(i));
                    let r = conn.call(&[b"SET", &k, &v]).await.unwrap();
                    assert_eq!(r, Value::Simple("OK".into()), "SET key {i} through {addr}");
                }
            }));
        }
        for h in writers {
            h.await.unwrap();
        }
        let writes_took = t.elapsed();
        let t = Instant::now();
        for id in [1, 2, 3] {
            c.kill9(id);
        }
        c.start_all();
        c.wait_ready(
            &[1, 2, 3],
            &[b"a-ready", b"\xF0-ready"],
            Duration::from_secs(20),
        )
        .await;
        eprintln!(
            "kill-all: 200 writes took {:.1} s; the restarted cluster was ready after {:.1} s",
            writes_took.as_secs_f64(),
            t.elapsed().as_secs_f64()
        );
        // Read back through every node (linearizable reads, the default),
        // 4 readers per node.
        let t = Instant::now();
        let mut readers = Vec::new();
        for id in [1u64, 2, 3] {
            for r in 0..4usize {
                let addr = c.client_addr(id);
                readers.push(tokio::spawn(async move {
                    let mut conn = Conn::connect(
                        &addr.to_string(),
                        Duration::from_secs(1),
                        RespLimits::default(),
                    )
                    .await
                    .unwrap();
                    let mut wrong = Vec::new();
                    for i in (r..200).step_by(4) {
                        let got = conn.call(&[b"GET", &key(i)]).await.unwrap();
                        if got != Value::Bulk(value(i).into()) {
                            wrong.push(format!("node {id} key {i}: {got:?}"));
                        }
                    }
                    wrong
                }));
            }
        }
        let mut missing = Vec::new();
        for r in readers {
            missing.extend(r.await.unwrap());
        }
        eprintln!("kill-all: 600 GETs took {:.1} s", t.elapsed().as_secs_f64());
        assert!(
            missing.is_empty(),
            "lost or wrong after restart: {missing:#?}"
        );
        c.finish();
    })
    .await;
}

// ---------------------------------------------------------------------------
// 3. Reads whose read index fails go through the raft log.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_index_fallback_goes_through_the_log() {
    with_deadline("read_index_fallback_goes_through_the_log", 58, async {
        let mut c = Cluster::new(
            "fallback",
            3,
            PORTS_FALLBACK,
            &["--debug-fail-read-index-every", "2"],
        );
        c.start_all();
        c.wait_ready(&[1, 2, 3], &[b"ready"], Duration::from_secs(20)).await;
        let nkeys = 6u64;
        let keys: Vec<Vec<u8>> = (0..nkeys).map(|i| format!("f{i}").into_bytes()).collect();
        let w = Workload::new(keys, Duration::from_secs(3));
        let handles = spawn_clients(&w, 6, &c.client_addrs()).await;
        tokio::time::sleep(Duration::from_millis(1000)).await;

        // Leader transfers under load. The old leader sends TimeoutNow to the
        // target before the append that tells it the last entries are
        // committed, then acknowledges those writes; the target wins its
        // election without knowing they are committed. Until its first entry
        // commits, its read index fails (and every 2nd fails on purpose
        // anyway) while its state machine lacks acknowledged writes: a read
        // that fell back must go through the log, not read that state.
        let mut transfers = 0;
        let mut probe_client = 1000u64;
        let mut leader = c.leader_of(1, &[1, 2, 3], Duration::from_secs(10)).await;
        for _ in 0..TRANSFERS {
            let target = leader % 3 + 1;
            // Readers on every node while the target takes over.
            let stop = Arc::new(AtomicBool::new(false));
            let mut probes = Vec::new();
            let first_probe = probe_client + 1;
            for i in 0..PROBE_READERS {
                probe_client += 1;
                probes.push(tokio::spawn(probe(
                    w.clone(),
                    probe_client,
                    c.client_addr(i as u64 % 3 + 1),
                    stop.clone(),
                    false,
                )));
            }
            // Writers on the old leader, so that writes are in flight when
            // it hands over.
            for _ in 0..PROBE_WRITERS {
                probe_client += 1;
                probes.push(tokio::spawn(probe(
                    w.clone(),
                    probe_client,
                    c.client_addr(leader),
                    stop.clone(),
                    true,
                )));
            }
            w.event(format!(
                "transfer {leader} -> {target}, probe clients {first_probe}..={probe_client}"
            ));
            let r = c
                .call(
                    leader,
                    &[b"RHEA.ADMIN", b"TRANSFER", b"1", target.to_string().as_bytes()],
                )
                .await;
            w.event(format!("transfer {leader} -> {target}: {r:?}"));
            tokio::time::sleep(Duration::from_millis(20)).await;
            stop.store(true, Ordering::Relaxed);
            for p in probes {
                p.await.unwrap();
            }
            match r {
                Ok(Value::Simple(s)) if s.starts_with("OK") => {
                    transfers += 1;
                    leader = target;
                }
                r => {
                    eprintln!("transfer {leader} -> {target}: {r:?}");
                    leader = c.leader_of(1, &[1, 2, 3], Duration::from_secs(10)).await;
                }
            }
        }
        eprintln!("{transfers} of {TRANSFERS} leader transfers done");
        assert!(transfers > 0, "no leader transfer succeeded");

        // A paused leader: while it is stopped the others elect a new leader
        // and acknowledge new values; reads queued at the old leader are
        // served when it resumes, and it may believe it leads for a moment.
        // The fallback must not answer them from its (stale) local state.
        {
            let old = c.leader_of(1, &[1, 2, 3], Duration::from_secs(10)).await;
            let others: Vec<u64> = [1u64, 2, 3].into_iter().filter(|&i| i != old).collect();
            c.signal(old, "STOP");
            w.event(format!("SIGSTOP {old}"));
            let deadline = Instant::now() + Duration::from_secs(10);
            let new = loop {
                let l = c.leader_of(1, &others, Duration::from_secs(10)).await;
                if l != old {
                    break l;
                }
                assert!(Instant::now() < deadline, "no new leader while {old} is stopped");
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            // Fresh, acknowledged values on every key through the new leader.
            let mut conn = Conn::connect(
                &c.client_addr(new).to_string(),
                Duration::from_secs(1),
                RespLimits::default(),
            )
            .await
            .unwrap();
            probe_client += 1;
            for key in 0..nkeys {
                let value = (probe_client << 32) | key;
                match w
                    .run_op(probe_client, c.client_addr(new), &mut conn, KvInput::Put { key, value })
                    .await
                {
                    Outcome::Known(_) => {}
                    Outcome::Unknown { .. } => {
                        panic!("SET through the new leader {new} failed: {}", w.summary())
                    }
                }
            }
            // Reads queued at the stopped old leader, 3 per key.
            let mut probes = Vec::new();
            for key in 0..nkeys {
                for _ in 0..3 {
                    probe_client += 1;
                    let (w, addr, id) = (w.clone(), c.client_addr(old), probe_client);
                    probes.push(tokio::spawn(async move {
                        let Ok(mut conn) = Conn::connect(
                            &addr.to_string(),
                            Duration::from_secs(1),
                            RespLimits::default(),
                        )
                        .await
                        else {
                            return None;
                        };
                        match w.run_op(id, addr, &mut conn, KvInput::Get { key }).await {
                            Outcome::Known(KvOutput::Get(v)) => Some((key, v)),
                            _ => None,
                        }
                    }));
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            c.signal(old, "CONT");
            w.event(format!("SIGCONT {old}"));
            let mut answered = 0;
            for p in probes {
                if p.await.unwrap().is_some() {
                    answered += 1;
                }
            }
            eprintln!(
                "leader {old} paused, {new} took over; {answered} of {} reads queued at {old} answered",
                nkeys * 3
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop_clients(&w, handles).await;
        assert_no_anomalies(&w);
        check_history(&w, "read-index-fallback history");

        // The fallback really ran: the leader counts reads through the log.
        let leader = c.leader_of(1, &[1, 2, 3], Duration::from_secs(10)).await;
        let info = c.info(leader).await.unwrap();
        let fallback = info_stat(&info, "reads_log_fallback").unwrap_or(0);
        let mut all = BTreeMap::new();
        for id in [1u64, 2, 3] {
            let i = c.info(id).await.unwrap();
            all.insert(
                id,
                (
                    info_stat(&i, "reads_log_fallback"),
                    info_stat(&i, "read_index_failures"),
                    info_stat(&i, "reads_read_index"),
                ),
            );
        }
        eprintln!("(reads_log_fallback, read_index_failures, reads_read_index) by node: {all:?}");
        assert!(
            fallback > 0,
            "INFO of leader {leader} reports reads_log_fallback:{fallback}:\n{info}"
        );
        c.finish();
    })
    .await;
}

/// GETs of every key in a loop on one connection to `addr` until `stop`.
async fn probe(
    w: Arc<Workload>,
    client: u64,
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    write: bool,
) {
    let Ok(mut conn) = Conn::connect(
        &addr.to_string(),
        Duration::from_secs(1),
        RespLimits::default(),
    )
    .await
    else {
        return;
    };
    let nkeys = w.keys.len() as u64;
    let mut key = client % nkeys;
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let input = if write {
            KvInput::Put {
                key,
                value: (client << 32) | seq,
            }
        } else {
            KvInput::Get { key }
        };
        if let Outcome::Unknown { reconnect: true } = w.run_op(client, addr, &mut conn, input).await
        {
            return;
        }
        key = (key + 1) % nkeys;
    }
}

// ---------------------------------------------------------------------------
// 4. RESP edge cases on one node.
// ---------------------------------------------------------------------------

/// Send raw bytes on a fresh connection, read until the server closes it
/// (or `within`); returns what was read and whether it closed.
fn raw_exchange(addr: std::net::SocketAddr, send: &[u8], within: Duration) -> (String, bool) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(within)).unwrap();
    s.write_all(send).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return (String::from_utf8_lossy(&got).into_owned(), false);
            }
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), true),
        }
    }
}

fn err_text(v: &Value) -> String {
    match v {
        Value::Error(e) => e.clone(),
        v => panic!("expected an error reply, got {v:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_protocol_edge_cases() {
    with_deadline("redis_protocol_edge_cases", 58, async {
        let mut c = Cluster::new(
            "resp",
            1,
            PORTS_RESP,
            &["--max-request-bytes", "1024", "--max-key-bytes", "64"],
        );
        c.start_all();
        c.wait_ready(&[1], &[b"ready"], Duration::from_secs(20))
            .await;
        let addr = c.client_addr(1);
        // A client that stays connected through everything below.
        let mut keeper = Conn::connect(
            &addr.to_string(),
            Duration::from_secs(1),
            RespLimits::default(),
        )
        .await
        .unwrap();
        let ok = Value::Simple("OK".into());
        assert_eq!(keeper.call(&[b"SET", b"keep1", b"v1"]).await.unwrap(), ok);
        let binary = b"bin\r\n\x00\xff$-1\r\n*2".to_vec();
        assert_eq!(keeper.call(&[b"SET", b"keep2", &binary]).await.unwrap(), ok);

        let raw = |send: &'static [u8]| {
            tokio::task::spawn_blocking(move || raw_exchange(addr, send, Duration::from_secs(5)))
        };
        // Malformed: a negative bulk length inside a command.
        let (got, closed) = raw(b"*2\r\n$3\r\nGET\r\n$-5\r\n").await.unwrap();
        assert_eq!(got, "-ERR Protocol error: invalid bulk length\r\n");
        assert!(closed, "the connection stays open after a protocol error");
        // A valid command pipelined before a malformed one is answered first.
        let (got, closed) = raw(b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$x\r\n")
            .await
            .unwrap();
        assert_eq!(got, "+PONG\r\n-ERR Protocol error: invalid bulk length\r\n");
        assert!(closed);
        // Not a '$' where a bulk string must start.
        let (got, closed) = raw(b"*1\r\n:5\r\n").await.unwrap();
        assert!(
            got.starts_with("-ERR Protocol error: expected '$'"),
            "{got:?}"
        );
        assert!(closed);
        // An oversize bulk string: refused from its header, before its data.
        let (got, closed) = raw(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5000\r\n")
            .await
            .unwrap();
        assert_eq!(
            got,
            "-ERR Protocol error: bulk string of 5000 bytes exceeds the limit of 1024 bytes\r\n"
        );
        assert!(closed);
        // Several bulk strings each under the limit, together over it.
        let mut big = b"*4\r\n$4\r\nMSET\r\n$1\r\nk\r\n$600\r\n".to_vec();
        big.extend(std::iter::repeat_n(b'v', 600));
        big.extend_from_slice(b"\r\n$600\r\n");
        let big: &'static [u8] = Vec::leak(big);
        let (got, closed) = raw(big).await.unwrap();
        assert!(
            got.starts_with("-ERR Protocol error: request of ")
                && got.contains("exceeds the limit of 1024 bytes"),
            "{got:?}"
        );
        assert!(closed);
        // A huge multibulk count.
        let (got, closed) = raw(b"*99999999999\r\n").await.unwrap();
        assert!(got.starts_with("-ERR Protocol error"), "{got:?}");
        assert!(closed);
        // Inline commands work; unbalanced quotes do not.
        let (got, closed) = raw(b"PING\r\nECHO \"a b\"\r\nQUIT\r\n").await.unwrap();
        assert_eq!(got, "+PONG\r\n$3\r\na b\r\n+OK\r\n");
        assert!(closed, "QUIT closes the connection");
        let (got, closed) = raw(b"SET \"k v\r\n").await.unwrap();
        assert_eq!(got, "-ERR Protocol error: unbalanced quotes in request\r\n");
        assert!(closed);
        // Empty commands are ignored.
        let (got, _) = tokio::task::spawn_blocking(move || {
            raw_exchange(
                addr,
                b"*0\r\n\r\n*-1\r\n*1\r\n$4\r\nPING\r\n",
                Duration::from_millis(500),
            )
        })
        .await
        .unwrap();
        assert_eq!(got, "+PONG\r\n");

        // Errors that keep the connection open.
        let mut conn = Conn::connect(
            &addr.to_string(),
            Duration::from_secs(1),
            RespLimits::default(),
        )
        .await
        .unwrap();
        let e = err_text(&conn.call(&[b"FLUSHALL", b"now"]).await.unwrap());
        assert_eq!(
            e,
            "ERR unknown command 'FLUSHALL', with args beginning with: 'now'"
        );
        for (args, name) in [
            (vec![&b"GET"[..]], "get"),
            (vec![&b"GET"[..], b"a", b"b"], "get"),
            (vec![&b"SET"[..], b"k"], "set"),
            (vec![&b"CAS"[..], b"k", b"v"], "cas"),
            (vec![&b"MSET"[..], b"k"], "mset"),
            (vec![&b"MSET"[..], b"k", b"v", b"k2"], "mset"),
            (vec![&b"DEL"[..]], "del"),
        ] {
            let e = err_text(&conn.call(&args).await.unwrap());
            assert_eq!(
                e,
                format!("ERR wrong number of arguments for '{name}' command")
            );
        }
        let e = err_text(
            &conn
                .call(&[b"SET", b"k", b"v", b"EX", b"10"])
                .await
                .unwrap(),
        );
        assert!(e.contains("not supported"), "{e}");
        let e = err_text(&conn.call(&[b"SET", b"k", b"v", b"BOGUS"]).await.unwrap());
        assert_eq!(e, "ERR syntax error");
        // Key limit: 64 bytes pass, 65 are refused for writes and reads.
        let k64 = vec![b'k'; 64];
        let k65 = vec![b'k'; 65];
        assert_eq!(conn.call(&[b"SET", &k64, b"at-limit"]).await.unwrap(), ok);
        for args in [
            vec![&b"SET"[..], &k65, b"v"],
            vec![&b"GET"[..], &k65],
            vec![&b"CAS"[..], &k65, b"a", b"b"],
            vec![&b"MSET"[..], b"fine", b"v", &k65, b"v"],
        ] {
            let e = err_text(&conn.call(&args).await.unwrap());
            assert_eq!(
                e, "ERR key of 65 bytes exceeds max_key_bytes 64",
                "{args:?}"
            );
        }
        // The refused MSET wrote nothing (not even its valid pair).
        assert_eq!(conn.call(&[b"GET", b"fine"]).await.unwrap(), Value::Nil);
        // READMODE with a bad mode.
        let e = err_text(&conn.call(&[b"READMODE", b"sometimes"]).await.unwrap());
        assert!(e.starts_with("ERR READMODE takes"), "{e}");
        // Still serving on this connection and on the keeper.
        assert_eq!(
            conn.call(&[b"PING"]).await.unwrap(),
            Value::Simple("PONG".into())
        );
        assert_eq!(
            keeper.call(&[b"GET", b"keep1"]).await.unwrap(),
            Value::Bulk("v1".into())
        );

        // Nothing lost, also across a clean shutdown (SIGTERM) and restart.
        c.signal(1, "TERM");
        let st = c
            .wait_exit(1, Duration::from_secs(15))
            .expect("no exit within 15 s of SIGTERM");
        assert!(st.success(), "SIGTERM exit status {st:?}");
        c.start(1);
        c.wait_ready(&[1], &[b"ready"], Duration::from_secs(20))
            .await;
        let expect = [
            (&b"keep1"[..], Value::Bulk("v1".into())),
            (b"keep2", Value::Bulk(binary.clone().into())),
            (&k64, Value::Bulk("at-limit".into())),
            (b"k", Value::Nil),
            (b"fine", Value::Nil),
        ];
        for (k, v) in expect {
            assert_eq!(call(addr, &[b"GET", k]).await.unwrap(), v, "{k:?}");
        }
        c.finish();
    })
    .await;
}

// ---------------------------------------------------------------------------
// 5. Admin: add a learner, follower reads on it, leader transfer.
// ---------------------------------------------------------------------------

async fn admin(addr: std::net::SocketAddr, args: &[&str]) -> String {
    let mut a = vec!["admin".to_string(), "--addr".into(), addr.to_string()];
    a.extend(args.iter().map(|s| s.to_string()));
    let (st, out, err) = run_cli(a).await;
    assert!(
        st.success(),
        "rhea admin {args:?} failed ({st:?}): stdout {out:?} stderr {err:?}"
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_transfer_and_learner() {
    with_deadline("admin_transfer_and_learner", 58, async {
        let mut c = Cluster::new("admin", 3, PORTS_ADMIN, &[]);
        c.start_all();
        c.wait_ready(&[1, 2, 3], &[b"ready"], Duration::from_secs(20))
            .await;
        let a1 = c.client_addr(1);
        for i in 0..20 {
            let r = call(
                a1,
                &[
                    b"SET",
                    format!("adm{i}").as_bytes(),
                    format!("val{i}").as_bytes(),
                ],
            )
            .await
            .unwrap();
            assert_eq!(r, Value::Simple("OK".into()));
        }

        // Node 4 joins: it knows the three voters and waits to be added.
        let initial = c.initial_cluster();
        c.define(4, &initial, &["--join"]);
        c.start(4);
        let a4 = c.client_addr(4);
        let deadline = Instant::now() + Duration::from_secs(15);
        while call(a4, &[b"PING"]).await != Ok(Value::Simple("PONG".into())) {
            assert!(Instant::now() < deadline, "node 4 never answered PING");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Membership changes are sent to the leader: through a follower
        // they fail (see `admin_membership_change_through_a_follower`).
        let leader = c.leader_of(1, &[1, 2, 3], Duration::from_secs(10)).await;
        let raft4 = c.node(4).raft.to_string();
        let out = admin(
            c.client_addr(leader),
            &[
                "add-learner",
                "--region",
                "1",
                "--node",
                "4",
                "--raft-addr",
                &raft4,
            ],
        )
        .await;
        assert_eq!(out.trim(), "OK region 1 voters 1,2,3 learners 4");

        // A write after the learner was added reaches it too.
        assert_eq!(
            call(a1, &[b"SET", b"adm-late", b"late"]).await.unwrap(),
            Value::Simple("OK".into())
        );
        for mode in ["follower", "stale"] {
            let deadline = Instant::now() + Duration::from_secs(15);
            let mut conn = Conn::connect(
                &a4.to_string(),
                Duration::from_secs(1),
                RespLimits::default(),
            )
            .await
            .unwrap();
            assert_eq!(
                conn.call(&[b"READMODE", mode.as_bytes()]).await.unwrap(),
                Value::Simple("OK".into())
            );
            for (k, v) in [("adm7", "val7"), ("adm-late", "late")] {
                loop {
                    let r = conn.call(&[b"GET", k.as_bytes()]).await.unwrap();
                    if r == Value::Bulk(v.to_string().into()) {
                        break;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "READMODE {mode} GET {k} on learner 4 gives {r:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        let r4 = c.region_info(4, 1).await.unwrap();
        assert_eq!(r4["role"], "learner", "{r4:?}");
        assert_eq!(r4["learners"], "4", "{r4:?}");
        // The learner served those reads itself.
        let info4 = c.info(4).await.unwrap();
        assert!(
            info_stat(&info4, "reads_follower").unwrap_or(0) > 0
                && info_stat(&info4, "reads_stale").unwrap_or(0) > 0,
            "{info4}"
        );
        // `rhea admin leaders`: region, leader, term, voters, learners.
        let leader = c.leader_of(1, &[1, 2, 3], Duration::from_secs(10)).await;
        let table = admin(a1, &["leaders"]).await;
        let row: Vec<&str> = table
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.first() == Some(&"1"))
            .unwrap_or_else(|| panic!("no region 1 in {table:?}"));
        let leader = leader.to_string();
        assert_eq!(
            (row[1], row[3], row.get(4).copied()),
            (leader.as_str(), "1,2,3", Some("4")),
            "{table}"
        );

        // Leader transfer to node 2 (first away from it if it already
        // leads), asked of the learner: the CLI follows its NOTLEADER answer.
        if c.leader_of(1, &[1, 2, 3], Duration::from_secs(10)).await == 2 {
            let out = admin(a4, &["transfer-leader", "--region", "1", "--to", "3"]).await;
            assert_eq!(out.trim(), "OK region 1 leader is now 3");
        }
        let out = admin(a4, &["transfer-leader", "--region", "1", "--to", "2"]).await;
        assert_eq!(out.trim(), "OK region 1 leader is now 2");
        let r2 = c.region_info(2, 1).await.unwrap();
        assert_eq!(r2["role"], "leader", "{r2:?}");
        assert_eq!(
            c.leader_of(1, &[1, 2, 3, 4], Duration::from_secs(10)).await,
            2
        );
        // Writes still work through the learner after the transfer.
        assert_eq!(
            call(a4, &[b"SET", b"adm-after", b"after"]).await.unwrap(),
            Value::Simple("OK".into())
        );
        assert_eq!(
            call(c.client_addr(1), &[b"GET", b"adm-after"])
                .await
                .unwrap(),
            Value::Bulk("after".into())
        );
        c.finish();
    })
    .await;
}

/// `rhea admin add-learner` (also add-peer, remove-peer, remove-learner)
/// through a node that does not lead the region must be followed to the
/// leader. Regression: `serve_admin` let the `NotLeader` error of these
/// branches escape its `error_to_resp` mapping, the RESP server answered
/// TRYAGAIN, and the CLI retried the same follower until it gave up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_membership_change_through_a_follower() {
    with_deadline("admin_membership_change_through_a_follower", 58, async {
        let mut c = Cluster::new("admin-follower", 3, PORTS_ADMIN_FOLLOWER, &[]);
        c.start_all();
        c.wait_ready(&[1, 2, 3], &[b"ready"], Duration::from_secs(20))
            .await;
        let initial = c.initial_cluster();
        c.define(4, &initial, &["--join"]);
        c.start(4);
        let leader = c.leader_of(1, &[1, 2, 3], Duration::from_secs(10)).await;
        let follower = leader % 3 + 1;
        let raft4 = c.node(4).raft.to_string();
        let raw = c
            .call(
                follower,
                &[b"RHEA.ADMIN", b"ADDLEARNER", b"1", b"4", raft4.as_bytes()],
            )
            .await
            .unwrap();
        assert!(
            matches!(&raw, Value::Error(e) if e.starts_with(&format!("NOTLEADER 1 {leader} "))),
            "RHEA.ADMIN ADDLEARNER on follower {follower} (leader {leader}) answered {raw:?}"
        );
        let out = admin(
            c.client_addr(follower),
            &[
                "add-learner",
                "--region",
                "1",
                "--node",
                "4",
                "--raft-addr",
                &raft4,
            ],
        )
        .await;
        assert_eq!(out.trim(), "OK region 1 voters 1,2,3 learners 4");
        c.finish();
    })
    .await;
}

/// A write forwarded to a leader that dies before answering must not be
/// executed again. Regression: the router retried a connection lost
/// mid-request (or a reply timeout) like any retryable error, also for
/// writes whose first attempt may have been committed, so a CAS could take
/// effect and still answer 0, and a SET could be applied twice. Now a
/// request that was sent without an answer is `Indeterminate` (RESP
/// `TIMEOUT ...`, outcome unknown) and writes are not retried. Clients here
/// talk only to followers, so every write is forwarded, and the leader is
/// killed under a CAS-heavy load four times; the history must stay
/// linearizable.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forwarded_writes_survive_a_leader_kill_exactly_once() {
    with_deadline(
        "forwarded_writes_survive_a_leader_kill_exactly_once",
        58,
        async {
            let mut c = Cluster::new("forwarded", 3, PORTS_FORWARDED, &[]);
            c.start_all();
            c.wait_ready(&[1, 2, 3], &[b"ready"], Duration::from_secs(20))
                .await;
            let keys: Vec<Vec<u8>> = (0..3).map(|i| format!("d{i}").into_bytes()).collect();
            let w = Workload::with_mix(keys, Duration::from_secs(5), [3, 1, 6]);
            for round in 0..4u64 {
                let leader = c.leader_of(1, &[1, 2, 3], Duration::from_secs(10)).await;
                let followers: Vec<std::net::SocketAddr> = [1u64, 2, 3]
                    .into_iter()
                    .filter(|&i| i != leader)
                    .map(|i| c.client_addr(i))
                    .collect();
                w.stop.store(false, Ordering::Relaxed);
                let handles: Vec<_> = (0..8u64)
                    .map(|i| {
                        tokio::spawn(w.clone().client(
                            round * 100 + i + 1,
                            followers.clone(),
                            usize::try_from(i).unwrap(),
                        ))
                    })
                    .collect();
                tokio::time::sleep(Duration::from_millis(700)).await;
                c.kill9(leader);
                w.event(format!("killed node {leader}"));
                tokio::time::sleep(Duration::from_millis(1500)).await;
                stop_clients(&w, handles).await;
                c.start(leader);
                w.event(format!("restarted node {leader}"));
                c.wait_ready(&[1, 2, 3], &[b"ready"], Duration::from_secs(20))
                    .await;
            }
            assert_no_anomalies(&w);
            check_history(&w, "forwarded-writes history");
            c.finish();
        },
    )
    .await;
}

// ---------------------------------------------------------------------------
// 6. Startup failures: a port in use, bad flags.
// ---------------------------------------------------------------------------

/// Run `rhea server` with `args` expecting it to fail fast: returns its
/// exit status and stderr.
fn server_fails(c: &Cluster, name: &str, args: &[String]) -> (std::process::ExitStatus, String) {
    let log = c.root.join(format!("{name}.log"));
    let f = std::fs::File::create(&log).unwrap();
    let mut child = std::process::Command::new(common::BIN)
        .arg("server")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(f)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let st = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{name}: the server is still running after 10 s; log:\n{}",
                common::tail(&log, 40)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let err = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!st.success(), "{name}: exited successfully; stderr:\n{err}");
    (st, err)
}

#[test]
fn port_in_use_and_bad_flags() {
    let started = Instant::now();
    let c = Cluster::new("bad-flags", 0, PORTS_BAD_FLAGS, &[]);
    let base = common::port_base() + PORTS_BAD_FLAGS;
    let ip = common::node_ip(1);
    let client = common::addr(&ip, base);
    let raft = common::addr(&ip, base + 1);
    let dir = c.root.join("data");
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "--node-id",
            "1",
            "--data-dir",
            dir.to_str().unwrap(),
            "--raft-addr",
            &raft.to_string(),
            "--client-addr",
            &client.to_string(),
            "--tc-addr",
            "off",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let single = format!("1={raft}");

    // The client port is taken.
    {
        let _taken = std::net::TcpListener::bind(client).unwrap();
        let t = Instant::now();
        let (_, err) = server_fails(&c, "client-port", &args(&["--initial-cluster", &single]));
        assert!(
            err.contains(&client.to_string()) && err.contains("client address"),
            "the error does not name the client address {client}:\n{err}"
        );
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "took {:?}",
            t.elapsed()
        );
        assert!(
            !dir.join("rhea-node.toml").exists(),
            "a failed start stored the node file"
        );
    }
    // The raft port is taken.
    {
        let _taken = std::net::TcpListener::bind(raft).unwrap();
        let (_, err) = server_fails(&c, "raft-port", &args(&["--initial-cluster", &single]));
        assert!(
            err.contains(&raft.to_string()),
            "the error does not name the raft address {raft}:\n{err}"
        );
        assert!(
            !dir.join("rhea-node.toml").exists(),
            "a failed start stored the node file"
        );
    }
    // Garbage initial clusters.
    for (bad, expect) in [
        ("garbage", "\"garbage\" is not ID=HOST:PORT"),
        ("x=127.0.0.2:1", "node id \"x\""),
        ("1=localhost:1", "is not HOST:PORT"),
        ("0=127.0.0.2:1", "node id 0 is reserved"),
        ("1=127.0.0.2:1,1=127.0.0.2:2", "node 1 appears twice"),
        ("2=127.0.0.3:1", "node 1 is not in --initial-cluster"),
        (",", "the initial cluster is empty"),
    ] {
        let (_, err) = server_fails(&c, "initial-cluster", &args(&["--initial-cluster", bad]));
        assert!(
            err.contains(expect),
            "--initial-cluster {bad:?}: expected {expect:?} in:\n{err}"
        );
    }
    // Other bad values.
    for (extra, expect) in [
        (
            &[
                "--initial-cluster",
                single.as_str(),
                "--default-read-mode",
                "sometimes",
            ][..],
            "--default-read-mode \"sometimes\"",
        ),
        (
            &["--initial-cluster", single.as_str(), "--log-level", "loud"][..],
            "--log-level \"loud\"",
        ),
        (
            &[
                "--initial-cluster",
                single.as_str(),
                "--tick-interval-ms",
                "100",
                "--election-timeout-ms",
                "100",
            ][..],
            "election_timeout_ms",
        ),
        (
            &["--initial-cluster", single.as_str(), "--bogus"][..],
            "unexpected argument '--bogus'",
        ),
        (
            &["--initial-cluster", single.as_str(), "--regions", "many"][..],
            "invalid value 'many'",
        ),
    ] {
        let (_, err) = server_fails(&c, "bad-flag", &args(extra));
        assert!(
            err.contains(expect),
            "{extra:?}: expected {expect:?} in:\n{err}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(50),
        "took {:?}",
        started.elapsed()
    );
    eprintln!(
        "port_in_use_and_bad_flags: passed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    c.finish();
}
