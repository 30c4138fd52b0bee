//! Helpers of the process-level cluster tests: spawning `rhea server`
//! processes on loopback addresses, killing, pausing and restarting them,
//! talking RESP to them, and a concurrent SET/GET/CAS workload that records a
//! history for the simulator's linearizability checker.
//!
//! Every child process lives in a [`Cluster`], whose `Drop` kills them all
//! (also when the test panics or times out) and prints the tail of every
//! node's log unless the test reached [`Cluster::finish`].

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rhea_kv::resp::{RespLimits, Value};
use rhea_kv::router::Conn;
use rhea_sim::linearizability::{KvInput, KvOutput, Operation};

pub const BIN: &str = env!("CARGO_BIN_EXE_rhea");

/// Raft timing short enough for fast tests (multiples of the tick).
pub const FAST_TIMING: [&str; 6] = [
    "--tick-interval-ms",
    "20",
    "--election-timeout-ms",
    "400",
    "--heartbeat-interval-ms",
    "40",
];

/// First port of this test process: 20 ports per process, picked from the
/// pid so that concurrent test runs rarely collide (20000..29999, below the
/// ephemeral range and away from 6379-6399 and 7380-7399).
pub fn port_base() -> u16 {
    20_000 + u16::try_from(std::process::id() % 500).unwrap() * 20
}

/// Node `i`'s loopback address: 127.0.0.(1+i).
pub fn node_ip(id: u64) -> String {
    format!("127.0.0.{}", 1 + id)
}

/// A node's transaction coordinator address: its raft port - 10,000 on its
/// own IP (10000..19999, away from the other test ports).
pub fn tc_addr_of(ip: &str, raft_port: u16) -> SocketAddr {
    addr(ip, raft_port - 10_000)
}

pub fn addr(ip: &str, port: u16) -> SocketAddr {
    format!("{ip}:{port}").parse().unwrap()
}

pub struct Node {
    pub id: u64,
    pub raft: SocketAddr,
    pub client: SocketAddr,
    pub dir: PathBuf,
    pub log: PathBuf,
    pub args: Vec<String>,
    pub child: Option<Child>,
    pub starts: u32,
}

/// A set of `rhea server` processes of one test, under one temp directory.
pub struct Cluster {
    pub name: String,
    pub root: PathBuf,
    pub nodes: BTreeMap<u64, Node>,
    raft_port: u16,
    client_port: u16,
    finished: bool,
}

impl Cluster {
    /// `n` voters (ids 1..=n) sharing `extra` flags; node i listens on
    /// 127.0.0.(1+i) at ports `port_base() + port_offset` (raft) and
    /// `+ port_offset + 1` (client). Nothing is started yet.
    pub fn new(name: &str, n: u64, port_offset: u16, extra: &[&str]) -> Cluster {
        let root = std::env::temp_dir().join(format!("rhea-it-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let raft_port = port_base() + port_offset;
        let client_port = raft_port + 1;
        let initial: Vec<String> = (1..=n)
            .map(|i| format!("{i}={}", addr(&node_ip(i), raft_port)))
            .collect();
        let initial = initial.join(",");
        let mut c = Cluster {
            name: name.to_string(),
            root,
            nodes: BTreeMap::new(),
            raft_port,
            client_port,
            finished: false,
        };
        for id in 1..=n {
            c.define(id, &initial, extra);
        }
        c
    }

    /// The `--initial-cluster` value of the voters defined so far.
    pub fn initial_cluster(&self) -> String {
        self.nodes
            .values()
            .map(|n| format!("{}={}", n.id, n.raft))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Define node `id` (not started) with the given initial cluster.
    pub fn define(&mut self, id: u64, initial_cluster: &str, extra: &[&str]) {
        let ip = node_ip(id);
        let raft = addr(&ip, self.raft_port);
        let client = addr(&ip, self.client_port);
        let tc = tc_addr_of(&ip, self.raft_port);
        let dir = self.root.join(format!("node{id}"));
        let log = self.root.join(format!("node{id}.log"));
        let mut args: Vec<String> = vec![
            "server".into(),
            "--node-id".into(),
            id.to_string(),
            "--data-dir".into(),
            dir.display().to_string(),
            "--raft-addr".into(),
            raft.to_string(),
            "--client-addr".into(),
            client.to_string(),
            "--tc-addr".into(),
            tc.to_string(),
            "--initial-cluster".into(),
            initial_cluster.to_string(),
        ];
        args.extend(FAST_TIMING.iter().map(|s| s.to_string()));
        args.extend(extra.iter().map(|s| s.to_string()));
        self.nodes.insert(
            id,
            Node {
                id,
                raft,
                client,
                dir,
                log,
                args,
                child: None,
                starts: 0,
            },
        );
    }

    pub fn node(&self, id: u64) -> &Node {
        &self.nodes[&id]
    }

    pub fn client_addr(&self, id: u64) -> SocketAddr {
        self.nodes[&id].client
    }

    /// Node `id`'s transaction coordinator address.
    pub fn tc_addr(&self, id: u64) -> SocketAddr {
        tc_addr_of(&node_ip(id), self.nodes[&id].raft.port())
    }

    pub fn client_addrs(&self) -> Vec<SocketAddr> {
        self.nodes.values().map(|n| n.client).collect()
    }

    pub fn ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    /// Start (or restart, same data dir and flags) node `id`.
    pub fn start(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).unwrap();
        assert!(node.child.is_none(), "node {id} is already running");
        node.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .unwrap();
        writeln!(
            log,
            "===== test harness: start #{} of node {id}: rhea {} =====",
            node.starts,
            node.args.join(" ")
        )
        .unwrap();
        let child = Command::new(BIN)
            .args(&node.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {BIN}: {e}"));
        node.child = Some(child);
    }

    pub fn start_all(&mut self) {
        for id in self.ids() {
            self.start(id);
        }
    }

    fn pid(&self, id: u64) -> u32 {
        self.nodes[&id]
            .child
            .as_ref()
            .unwrap_or_else(|| panic!("node {id} is not running"))
            .id()
    }

    /// kill -9 node `id` and reap it.
    pub fn kill9(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).unwrap();
        let mut child = node.child.take().expect("node is running");
        let _ = child.kill();
        let _ = child.wait();
        note(&node.log, "killed with SIGKILL");
    }

    /// Send a signal (`STOP`, `CONT`, `TERM`) to node `id`.
    pub fn signal(&self, id: u64, sig: &str) {
        let pid = self.pid(id);
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(st.success(), "kill -{sig} {pid} failed");
        note(&self.nodes[&id].log, &format!("sent SIG{sig}"));
    }

    /// Wait (up to `within`) for node `id` to exit by itself; `None` on timeout.
    pub fn wait_exit(&mut self, id: u64, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        let node = self.nodes.get_mut(&id).unwrap();
        loop {
            let child = node.child.as_mut().expect("node is running");
            if let Some(st) = child.try_wait().unwrap() {
                node.child = None;
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// True if node `id` was started and has exited on its own.
    pub fn exited(&mut self, id: u64) -> Option<ExitStatus> {
        let node = self.nodes.get_mut(&id).unwrap();
        node.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// The last `lines` lines of every node's log.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for n in self.nodes.values() {
            out.push_str(&format!(
                "----- {} node {} log ({}), last {lines} lines -----\n",
                self.name,
                n.id,
                n.log.display()
            ));
            out.push_str(&tail(&n.log, lines));
        }
        out
    }

    /// The test passed: do not print logs when dropped.
    pub fn finish(mut self) {
        self.finished = true;
    }

    /// Send `args` to node `id`, with a deadline.
    pub async fn call(&self, id: u64, args: &[&[u8]]) -> Result<Value, String> {
        call(self.client_addr(id), args).await
    }

    /// Wait until every running node answers PING and a SET of each of
    /// `keys` succeeds through each node in `via`.
    pub async fn wait_ready(&self, via: &[u64], keys: &[&[u8]], within: Duration) {
        let deadline = Instant::now() + within;
        for &id in via {
            loop {
                if let Ok(Value::Simple(s)) = self.call(id, &[b"PING"]).await
                    && s == "PONG"
                {
                    break;
                }
                self.check_deadline(deadline, &format!("node {id} never answered PING"));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        for &id in via {
            for key in keys {
                loop {
                    let last = match self.call(id, &[b"SET", key, b"ready"]).await {
                        Ok(Value::Simple(s)) if s == "OK" => break,
                        Ok(v) => format!("{v:?}"),
                        Err(e) => e,
                    };
                    self.check_deadline(
                        deadline,
                        &format!(
                            "SET {} through node {id} never succeeded (last: {last})",
                            String::from_utf8_lossy(key).escape_debug()
                        ),
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn check_deadline(&self, deadline: Instant, what: &str) {
        if Instant::now() > deadline {
            panic!("{}: {what}", self.name);
        }
    }

    /// `RHEA.ADMIN LEADERS` through node `via`: region -> (leader, term).
    pub async fn leaders(&self, via: u64) -> Result<BTreeMap<u64, (u64, u64)>, String> {
        let v = self.call(via, &[b"RHEA.ADMIN", b"LEADERS"]).await?;
        let Value::Array(rows) = v else {
            return Err(format!("LEADERS answered {v:?}"));
        };
        let mut out = BTreeMap::new();
        for r in rows {
            match r.as_slice_of_ints() {
                Some(f) if f.len() >= 3 => {
                    out.insert(f[0], (f[1], f[2]));
                }
                _ => return Err(format!("odd LEADERS row {r:?}")),
            }
        }
        Ok(out)
    }

    /// The leader of `region` as seen by the running nodes in `via` (all of
    /// them agree, and it is one of `via` or not): polls until known.
    pub async fn leader_of(&self, region: u64, via: &[u64], within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        loop {
            let mut seen = Vec::new();
            for &id in via {
                if let Ok(l) = self.leaders(id).await
                    && let Some((leader, term)) = l.get(&region)
                {
                    seen.push((*leader, *term));
                }
            }
            if seen.len() == via.len() && seen[0].0 != 0 && seen.iter().all(|s| *s == seen[0]) {
                return seen[0].0;
            }
            self.check_deadline(
                deadline,
                &format!("no agreed leader of region {region} among {via:?} (seen {seen:?})"),
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// INFO of node `id`.
    pub async fn info(&self, id: u64) -> Result<String, String> {
        match self.call(id, &[b"INFO"]).await? {
            Value::Bulk(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
            v => Err(format!("INFO answered {v:?}")),
        }
    }

    /// Node `id`'s `regionN:` line of INFO as a map (role, leader, term, commit, applied, ...).
    pub async fn region_info(
        &self,
        id: u64,
        region: u64,
    ) -> Result<BTreeMap<String, String>, String> {
        let info = self.info(id).await?;
        region_line(&info, region).ok_or_else(|| format!("no region{region} line in INFO:\n{info}"))
    }
}

/// Parse `regionN:k=v,k=v` of an INFO text.
pub fn region_line(info: &str, region: u64) -> Option<BTreeMap<String, String>> {
    let prefix = format!("region{region}:");
    let line = info.lines().find(|l| l.starts_with(&prefix))?;
    Some(
        line[prefix.len()..]
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect(),
    )
}

/// A `name:value` stat of an INFO text.
pub fn info_stat(info: &str, name: &str) -> Option<u64> {
    let prefix = format!("{name}:");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

trait Ints {
    fn as_slice_of_ints(&self) -> Option<Vec<u64>>;
}

impl Ints for Value {
    /// The leading integers of an array (stops at the first non-integer).
    fn as_slice_of_ints(&self) -> Option<Vec<u64>> {
        let Value::Array(a) = self else { return None };
        Some(
            a.iter()
                .map_while(|v| match v {
                    Value::Integer(i) => u64::try_from(*i).ok(),
                    _ => None,
                })
                .collect(),
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in self.nodes.values_mut() {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if !self.finished || std::thread::panicking() {
            eprintln!(
                "===== {}: test did not finish; node logs follow =====\n{}",
                self.name,
                self.log_tails(60)
            );
        }
        if std::env::var_os("RHEA_IT_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.root);
        } else {
            eprintln!("keeping {}", self.root.display());
        }
    }
}

fn note(log: &Path, what: &str) {
    if let Ok(mut f) = OpenOptions::new().append(true).open(log) {
        let _ = writeln!(f, "===== test harness: {what} =====");
    }
}

pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    let mut out = all[all.len().saturating_sub(lines)..].join("\n");
    out.push('\n');
    out
}

/// One command on a fresh connection, with a deadline.
pub async fn call(addr: SocketAddr, args: &[&[u8]]) -> Result<Value, String> {
    let fut = async {
        let mut c = Conn::connect(
            &addr.to_string(),
            Duration::from_secs(1),
            RespLimits::default(),
        )
        .await
        .map_err(|e| e.to_string())?;
        c.call(args).await.map_err(|e| e.to_string())
    };
    match tokio::time::timeout(Duration::from_secs(5), fut).await {
        Ok(r) => r,
        Err(_) => Err(format!("{addr}: no answer within 5 s")),
    }
}

/// Run the `rhea` binary with `args` (not a server), with a deadline.
pub async fn run_cli(args: Vec<String>) -> (ExitStatus, String, String) {
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(BIN)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

// ---------------------------------------------------------------------------
// The workload.
// ---------------------------------------------------------------------------

/// xorshift64*: enough randomness for a workload, no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A recorded history of SET/GET/CAS on a few keys, and what the clients saw.
pub struct Workload {
    pub start: Instant,
    pub keys: Vec<Vec<u8>>,
    pub history: Mutex<Vec<Operation<KvInput, KvOutput>>>,
    pub stop: AtomicBool,
    pub ok: AtomicU64,
    pub unknown: AtomicU64,
    pub errors: Mutex<BTreeMap<String, u64>>,
    /// Replies of a kind no command should produce.
    pub anomalies: Mutex<Vec<String>>,
    /// Operation timeout of the clients.
    pub op_timeout: Duration,
    /// What the test did when (kills, transfers, ...), on the history's clock.
    pub events: Mutex<Vec<String>>,
    /// For each operation of `history` (same index): the node it was sent
    /// to and, for an unknown outcome, why.
    pub notes: Mutex<Vec<String>>,
    /// Relative weights of GET, SET and CAS in `client`.
    pub mix: [u64; 3],
}

/// What one request ended as.
pub enum Outcome {
    Known(KvOutput),
    /// Error, timeout or lost connection: the request may or may not have
    /// taken effect.
    Unknown {
        reconnect: bool,
    },
}

impl Workload {
    /// 40% GET, 30% SET, 30% CAS.
    pub fn new(keys: Vec<Vec<u8>>, op_timeout: Duration) -> Arc<Workload> {
        Workload::with_mix(keys, op_timeout, [4, 3, 3])
    }

    pub fn with_mix(keys: Vec<Vec<u8>>, op_timeout: Duration, mix: [u64; 3]) -> Arc<Workload> {
        Arc::new(Workload {
            start: Instant::now(),
            keys,
            history: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            ok: AtomicU64::new(0),
            unknown: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
            anomalies: Mutex::new(Vec::new()),
            op_timeout,
            events: Mutex::new(Vec::new()),
            notes: Mutex::new(Vec::new()),
            mix,
        })
    }

    /// Note what the test does now, on the history's clock (microseconds).
    pub fn event(&self, what: impl Into<String>) {
        let line = format!("t={} {}", self.now(), what.into());
        self.events.lock().unwrap().push(line);
    }

    pub fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros()).unwrap()
    }

    fn args(&self, input: &KvInput) -> Vec<Vec<u8>> {
        let key = |k: u64| self.keys[usize::try_from(k).unwrap()].clone();
        match *input {
            KvInput::Put { key: k, value } => {
                vec![b"SET".to_vec(), key(k), value.to_string().into_bytes()]
            }
            KvInput::Get { key: k } => vec![b"GET".to_vec(), key(k)],
            KvInput::Cas {
                key: k,
                expected,
                new,
            } => vec![
                b"CAS".to_vec(),
                key(k),
                expected.to_string().into_bytes(),
                new.to_string().into_bytes(),
            ],
        }
    }

    fn classify(&self, input: &KvInput, v: &Value) -> Outcome {
        let parse = |b: &[u8]| std::str::from_utf8(b).ok()?.parse::<u64>().ok();
        let out = match (input, v) {
            (KvInput::Put { .. }, Value::Simple(s)) if s == "OK" => Some(KvOutput::Put),
            (KvInput::Get { .. }, Value::Nil) => Some(KvOutput::Get(None)),
            (KvInput::Get { .. }, Value::Bulk(b)) => parse(b).map(|x| KvOutput::Get(Some(x))),
            (KvInput::Cas { .. }, Value::Integer(i @ (0 | 1))) => Some(KvOutput::Cas(*i == 1)),
            (_, Value::Error(e)) => {
                let kind = e.split_whitespace().next().unwrap_or("").to_string();
                *self.errors.lock().unwrap().entry(kind).or_default() += 1;
                // TRYAGAIN / CLUSTERDOWN: retryable states; TIMEOUT: the node
                // says the outcome is unknown (a forwarded write whose leader
                // died mid-request). All are recorded as unknown outcome.
                if !(e.starts_with("TRYAGAIN")
                    || e.starts_with("CLUSTERDOWN")
                    || e.starts_with("TIMEOUT"))
                {
                    // Not a documented error of these kinds: keep it for the report.
                    self.anomalies
                        .lock()
                        .unwrap()
                        .push(format!("{input}: error {e}"));
                }
                return Outcome::Unknown { reconnect: false };
            }
            _ => None,
        };
        match out {
            Some(o) => Outcome::Known(o),
            None => {
                self.anomalies
                    .lock()
                    .unwrap()
                    .push(format!("{input}: unexpected reply {v:?}"));
                Outcome::Unknown { reconnect: true }
            }
        }
    }

    /// Run `input` on `conn` (connected to `via`) and record it. Returns the
    /// outcome; the caller drops the connection when told to reconnect.
    pub async fn run_op(
        &self,
        client: u64,
        via: SocketAddr,
        conn: &mut Conn,
        input: KvInput,
    ) -> Outcome {
        let args = self.args(&input);
        let argv: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let call = self.now();
        let mut note = format!("via {via}");
        let outcome = match tokio::time::timeout(self.op_timeout, conn.call(&argv)).await {
            Ok(Ok(v)) => {
                if let Value::Error(e) = &v {
                    note.push_str(&format!(": {e}"));
                }
                self.classify(&input, &v)
            }
            Ok(Err(e)) => {
                note.push_str(&format!(": {e}"));
                *self
                    .errors
                    .lock()
                    .unwrap()
                    .entry(format!("connection: {}", short(&e.to_string())))
                    .or_default() += 1;
                Outcome::Unknown { reconnect: true }
            }
            Err(_) => {
                note.push_str(": client timeout");
                *self
                    .errors
                    .lock()
                    .unwrap()
                    .entry("client timeout".into())
                    .or_default() += 1;
                Outcome::Unknown { reconnect: true }
            }
        };
        self.record(client, input, call, &outcome, note);
        outcome
    }

    pub fn record(&self, client: u64, input: KvInput, call: u64, outcome: &Outcome, note: String) {
        let op = match outcome {
            Outcome::Known(o) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                Operation {
                    client_id: client,
                    input,
                    call,
                    output: Some(*o),
                    return_time: Some(self.now()),
                }
            }
            Outcome::Unknown { .. } => {
                self.unknown.fetch_add(1, Ordering::Relaxed);
                Operation {
                    client_id: client,
                    input,
                    call,
                    output: None,
                    return_time: None,
                }
            }
        };
        let mut history = self.history.lock().unwrap();
        history.push(op);
        self.notes.lock().unwrap().push(note);
    }

    /// Every operation on `key`, in call order, one per line.
    pub fn describe_key(&self, key: u64) -> Vec<(u64, String)> {
        let history = self.history.lock().unwrap();
        let notes = self.notes.lock().unwrap();
        let mut out: Vec<(u64, String)> = history
            .iter()
            .enumerate()
            .filter(|(_, op)| op.input.key() == key)
            .map(|(i, op)| {
                let ret = op
                    .return_time
                    .map_or_else(|| "never".to_string(), |t| t.to_string());
                let output = op
                    .output
                    .map_or_else(|| "unknown".to_string(), |o| o.to_string());
                (
                    op.call,
                    format!(
                        "op #{i} client {} [{}, {ret}] {} -> {output} ({})",
                        op.client_id,
                        op.call,
                        op.input,
                        notes.get(i).map_or("", String::as_str)
                    ),
                )
            })
            .collect();
        out.sort();
        out
    }

    /// A client: random SET/GET/CAS on the keys through `addrs[first]`,
    /// moving to the next address when a connection fails, until `stop`.
    pub async fn client(self: Arc<Self>, client: u64, addrs: Vec<SocketAddr>, first: usize) {
        let mut rng = Rng::new(client * 7919 + 17);
        let mut idx = first % addrs.len();
        let mut conn: Option<Conn> = None;
        let mut seq: u64 = 0;
        let mut seen: BTreeMap<u64, u64> = BTreeMap::new();
        let nkeys = self.keys.len() as u64;
        while !self.stop.load(Ordering::Relaxed) {
            let Some(c) = conn.as_mut() else {
                match Conn::connect(
                    &addrs[idx].to_string(),
                    Duration::from_millis(500),
                    RespLimits::default(),
                )
                .await
                {
                    Ok(c) => conn = Some(c),
                    Err(_) => {
                        idx = (idx + 1) % addrs.len();
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                continue;
            };
            let key = rng.below(nkeys);
            seq += 1;
            let fresh = (client << 32) | seq;
            let roll = rng.below(self.mix.iter().sum());
            let input = match roll {
                r if r < self.mix[0] => KvInput::Get { key },
                r if r < self.mix[0] + self.mix[1] => KvInput::Put { key, value: fresh },
                _ => KvInput::Cas {
                    key,
                    // The last value this client saw, so that some CAS succeed.
                    expected: seen.get(&key).copied().unwrap_or(1),
                    new: fresh,
                },
            };
            match self.run_op(client, addrs[idx], c, input).await {
                Outcome::Known(out) => match (input, out) {
                    (KvInput::Put { value, .. }, _) => {
                        seen.insert(key, value);
                    }
                    (KvInput::Get { .. }, KvOutput::Get(Some(v))) => {
                        seen.insert(key, v);
                    }
                    (KvInput::Cas { new, .. }, KvOutput::Cas(true)) => {
                        seen.insert(key, new);
                    }
                    _ => {}
                },
                Outcome::Unknown { reconnect } => {
                    if reconnect {
                        conn = None;
                        idx = (idx + 1) % addrs.len();
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    pub fn summary(&self) -> String {
        format!(
            "{} ops known, {} unknown outcome; errors {:?}",
            self.ok.load(Ordering::Relaxed),
            self.unknown.load(Ordering::Relaxed),
            self.errors.lock().unwrap()
        )
    }
}

fn short(s: &str) -> String {
    // "connection to 127.0.0.2:1234: Connection reset by peer" -> the reason.
    s.rsplit(": ").next().unwrap_or(s).to_string()
}
