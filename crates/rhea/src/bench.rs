//! `rhea bench`: a closed-loop load generator for a running Rhea cluster.
//!
//! `--concurrency` workers (tokio tasks) each keep exactly one request in
//! flight: send an operation, wait for its reply, send the next. So the
//! figures are the **throughput at that concurrency** and the **latency seen
//! by a client**: from just before the request is handed to the client
//! library until its reply is decoded, retries and redirects inside the
//! client included. Being closed-loop, the latencies do not include time a
//! request would have spent waiting had requests arrived at a fixed rate
//! (no correction for coordinated omission).
//!
//! Each operation is a read (`GET`) with probability `--read-ratio`, else a
//! write (`SET`, a value of `--value-bytes` bytes), of a key drawn uniformly
//! from `--keys` keys. Key `i` is the 8 big-endian bytes of `splitmix64(i)`
//! followed by the decimal digits of `i`, so keys spread evenly over the
//! first byte and a layout split on the first byte loads every region. Each
//! worker has its own PRNG seeded from `--seed` and its index, so a run's
//! per-worker operation sequences are reproducible.
//!
//! Two clients:
//! * `smart`: the Rust client [`rhea_kv::KvClient`], which fetches the region
//!   layout and sends each request to its region's leader itself;
//! * `resp`: plain Redis `GET`/`SET` on one connection per worker to the
//!   first `--addr` (after `READMODE <mode>` unless linearizable); the node
//!   forwards to the region leader when it is not the leader.
//!
//! `--warmup-keys` first writes every key once (not measured) so that reads
//! find values. The run is `--requests` operations, or `--duration-secs`
//! seconds. Ctrl-C stops it early and still prints the summary.
//!
//! Output (stdout, one `name: fields` line each): the parameters, the
//! optional warmup, the total, then writes and reads with latency
//! percentiles in milliseconds. "ops" counts **successful** operations only;
//! failed ones (an error reply, a connection failure, a timeout) are counted
//! under "errors", have no latency recorded, and the first one is printed.
//! Latencies are recorded in microseconds in HDR histograms (3 significant
//! digits), one pair (reads, writes) per worker for up to
//! [`MAX_HISTOGRAM_SHARDS`] workers, shared by several workers above that.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use rhea_kv::resp::{RespLimits, Value};
use rhea_kv::router::Conn;
use rhea_kv::{KvClient, ReadConsistency, RouterOptions};
use tokio::task::JoinSet;

/// Most workers.
const MAX_CONCURRENCY: i64 = 10_000;
/// Largest value (bytes).
const MAX_VALUE_BYTES: i64 = 4 * 1024 * 1024;
/// Longest `--duration-secs` (one day).
const MAX_DURATION_SECS: u64 = 86_400;
/// Longest `--timeout-ms` (ten minutes).
const MAX_TIMEOUT_MS: u64 = 600_000;
/// Time allowed to open one connection (capped by `--timeout-ms`).
const CONNECT_TIMEOUT_MS: u64 = 2_000;
/// Pause after a failed reconnection (resp client) before the next attempt,
/// so that a dead node does not turn the run into a busy loop.
const RECONNECT_PAUSE_MS: u64 = 20;
/// Latencies above this (one hour, in microseconds) are recorded as this.
const MAX_LATENCY_US: u64 = 3_600_000_000;
/// Most latency histogram pairs: workers beyond this share them, which
/// bounds memory at high concurrency (a histogram is tens of KiB).
const MAX_HISTOGRAM_SHARDS: usize = 64;
/// How often the progress bar is updated.
const PROGRESS_TICK_MS: u64 = 200;
/// Longest error message kept (bytes).
const MAX_ERROR_CHARS: usize = 300;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Client addresses of cluster nodes (repeat the flag or separate with
    /// commas). The smart client asks them for the region layout; the resp
    /// client sends everything to the first one.
    #[arg(
        long = "addr",
        value_name = "HOST:PORT",
        value_delimiter = ',',
        default_value = "127.0.0.1:6380",
        env = "RHEA_ADDR"
    )]
    pub addrs: Vec<String>,
    /// Concurrent workers (tokio tasks), each with one request in flight (1..=10000).
    #[arg(long, value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=MAX_CONCURRENCY))]
    pub concurrency: u32,
    /// Total operations (reads and writes) of the measured run.
    #[arg(long, value_name = "N", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..),
          conflicts_with = "duration_secs")]
    pub requests: u64,
    /// Run for this many seconds instead of a number of requests (1..=86400).
    #[arg(long, value_name = "S",
          value_parser = clap::value_parser!(u64).range(1..=MAX_DURATION_SECS))]
    pub duration_secs: Option<u64>,
    /// Number of distinct keys; each operation picks one uniformly.
    #[arg(long, value_name = "N", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub keys: u64,
    /// Size of each written value in bytes (0..=4194304).
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(0..=MAX_VALUE_BYTES))]
    pub value_bytes: u32,
    /// Fraction of operations that are reads, in [0, 1]; the rest are writes.
    #[arg(long, value_name = "F", default_value_t = 0.5, value_parser = parse_ratio)]
    pub read_ratio: f64,
    /// Consistency of reads.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = ReadMode::Linearizable)]
    pub read_mode: ReadMode,
    /// First write every key once (not measured) so that reads find values.
    #[arg(long)]
    pub warmup_keys: bool,
    /// Which client sends the operations.
    #[arg(long, value_enum, value_name = "KIND", default_value_t = ClientKind::Smart)]
    pub client: ClientKind,
    /// Seed of the workers' random number generators.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub seed: u64,
    /// Time allowed for one operation, the smart client's retries included
    /// (1..=600000); connecting is allowed min(this, 2000) ms.
    #[arg(long, value_name = "MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_MS))]
    pub timeout_ms: u64,
}

/// `--read-mode`: see [`ReadConsistency`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReadMode {
    /// ReadIndex on the region leader.
    Linearizable,
    /// The leader's lease.
    Lease,
    /// ReadIndex asked of the leader, served by the replica that got the request.
    Follower,
    /// The replica's applied state, no check.
    Stale,
}

impl ReadMode {
    fn consistency(self) -> ReadConsistency {
        match self {
            ReadMode::Linearizable => ReadConsistency::Linearizable,
            ReadMode::Lease => ReadConsistency::Lease,
            ReadMode::Follower => ReadConsistency::Follower,
            ReadMode::Stale => ReadConsistency::Stale,
        }
    }
}

/// `--client`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ClientKind {
    /// The Rhea Rust client: routes each key to its region leader.
    Smart,
    /// Plain Redis GET/SET, one connection per worker to the first --addr.
    Resp,
}

impl ClientKind {
    fn name(self) -> &'static str {
        match self {
            ClientKind::Smart => "smart",
            ClientKind::Resp => "resp",
        }
    }
}

fn parse_ratio(s: &str) -> Result<f64, String> {
    let f: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number"))?;
    if !(0.0..=1.0).contains(&f) {
        return Err(format!("{s} is not in [0, 1]"));
    }
    Ok(f)
}

// ---------------------------------------------------------------------------
// Keys, values and randomness
// ---------------------------------------------------------------------------

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The splitmix64 finalizer: a bijection on u64 that mixes every bit.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `splitmix64(i)`: the i-th output of a splitmix64 generator seeded with 0.
fn splitmix64(i: u64) -> u64 {
    mix64(i.wrapping_add(1).wrapping_mul(GOLDEN_GAMMA))
}

/// A splitmix64 generator.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Rng {
        Rng(mix64(seed ^ mix64(stream.wrapping_add(GOLDEN_GAMMA))))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN_GAMMA);
        mix64(self.0)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n) (n > 0), by multiply-high.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// Key `i`: 8 big-endian bytes of `splitmix64(i)`, then `i` in ASCII.
fn key(i: u64) -> Bytes {
    let mut k = Vec::with_capacity(8 + 20);
    k.extend_from_slice(&splitmix64(i).to_be_bytes());
    let _ = write!(k, "{i}");
    Bytes::from(k)
}

/// The value written by every SET: `n` pseudo-random lowercase letters.
fn value(n: usize, seed: u64) -> Bytes {
    let mut rng = Rng::new(seed, u64::MAX);
    (0..n)
        .map(|_| b'a' + (rng.below(26) as u8))
        .collect::<Vec<u8>>()
        .into()
}

// ---------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------

fn truncate(mut s: String) -> String {
    if s.len() > MAX_ERROR_CHARS {
        let mut end = MAX_ERROR_CHARS;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("...");
    }
    s
}

fn unexpected(cmd: &str, v: &Value) -> String {
    truncate(format!("unexpected reply to {cmd}: {v:?}"))
}

/// A resp-client worker's connection, reopened after a failure.
struct RespClient {
    addr: Arc<str>,
    mode: ReadConsistency,
    connect_timeout: Duration,
    op_timeout: Duration,
    conn: Option<Conn>,
}

impl RespClient {
    /// Connect, and set the read mode when it is not the default.
    async fn open(&self) -> Result<Conn, String> {
        let mut conn = Conn::connect(&self.addr, self.connect_timeout, RespLimits::default())
            .await
            .map_err(|e| e.to_string())?;
        if self.mode != ReadConsistency::Linearizable {
            let name = self.mode.name();
            match tokio::time::timeout(self.op_timeout, conn.call(&[b"READMODE", name.as_bytes()]))
                .await
            {
                Ok(Ok(Value::Simple(_))) => {}
                Ok(Ok(Value::Error(m))) => return Err(format!("READMODE {name}: {m}")),
                Ok(Ok(v)) => return Err(unexpected("READMODE", &v)),
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => {
                    return Err(format!(
                        "no reply to READMODE from {} within {} ms",
                        self.addr,
                        self.op_timeout.as_millis()
                    ));
                }
            }
        }
        Ok(conn)
    }

    async fn call(&mut self, args: &[&[u8]]) -> Result<Value, String> {
        let conn = match &mut self.conn {
            Some(c) => c,
            None => match self.open().await {
                Ok(c) => self.conn.insert(c),
                Err(e) => {
                    tokio::time::sleep(Duration::from_millis(RECONNECT_PAUSE_MS)).await;
                    return Err(e);
                }
            },
        };
        match tokio::time::timeout(self.op_timeout, conn.call(args)).await {
            Ok(Ok(Value::Error(m))) => Err(truncate(m)),
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                self.conn = None;
                Err(truncate(e.to_string()))
            }
            Err(_) => {
                // A late reply would be taken for the next one's: reconnect.
                self.conn = None;
                Err(format!(
                    "no reply from {} within {} ms",
                    self.addr,
                    self.op_timeout.as_millis()
                ))
            }
        }
    }
}

/// One worker's client.
enum Client {
    Smart(KvClient),
    Resp(RespClient),
}

impl Client {
    /// Read `key`; true when it has a value.
    async fn get(&mut self, key: Bytes) -> Result<bool, String> {
        match self {
            Client::Smart(c) => c
                .get(key)
                .await
                .map(|v| v.is_some())
                .map_err(|e| truncate(e.to_string())),
            Client::Resp(c) => match c.call(&[b"GET", &key]).await? {
                Value::Bulk(_) => Ok(true),
                Value::Nil => Ok(false),
                v => Err(unexpected("GET", &v)),
            },
        }
    }

    async fn put(&mut self, key: Bytes, value: Bytes) -> Result<(), String> {
        match self {
            Client::Smart(c) => c.put(key, value).await.map_err(|e| truncate(e.to_string())),
            Client::Resp(c) => match c.call(&[b"SET", &key, &value]).await? {
                Value::Simple(_) => Ok(()),
                v => Err(unexpected("SET", &v)),
            },
        }
    }
}

// ---------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------

fn histogram() -> anyhow::Result<Histogram<u64>> {
    // Auto-resizing: starts small, grows to the largest latency recorded.
    Histogram::new(3).context("cannot create a latency histogram")
}

/// Results of one phase for some workers.
struct Stats {
    /// Latencies of successful reads, microseconds.
    reads: Histogram<u64>,
    /// Latencies of successful writes, microseconds.
    writes: Histogram<u64>,
    read_errors: u64,
    write_errors: u64,
    /// Successful reads that found a value.
    found: u64,
    /// The earliest error seen.
    first_error: Option<(Instant, String)>,
}

impl Stats {
    fn new() -> anyhow::Result<Stats> {
        Ok(Stats {
            reads: histogram()?,
            writes: histogram()?,
            read_errors: 0,
            write_errors: 0,
            found: 0,
            first_error: None,
        })
    }

    fn note_error(&mut self, at: Instant, msg: String) {
        if self.first_error.as_ref().is_none_or(|(t, _)| at < *t) {
            self.first_error = Some((at, msg));
        }
    }

    fn merge(&mut self, o: &Stats) -> anyhow::Result<()> {
        self.reads
            .add(&o.reads)
            .context("cannot merge latency histograms")?;
        self.writes
            .add(&o.writes)
            .context("cannot merge latency histograms")?;
        self.read_errors += o.read_errors;
        self.write_errors += o.write_errors;
        self.found += o.found;
        if let Some((t, m)) = &o.first_error {
            self.note_error(*t, m.clone());
        }
        Ok(())
    }

    fn ok_ops(&self) -> u64 {
        self.reads.len() + self.writes.len()
    }

    fn errors(&self) -> u64 {
        self.read_errors + self.write_errors
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------
// Workers
// ---------------------------------------------------------------------------

/// What the workers of a phase do.
#[derive(Clone, Copy)]
enum Phase {
    /// Write keys 0..n once each.
    Warmup(u64),
    /// `n` random operations in all.
    Requests(u64),
    /// Random operations until this instant.
    Until(Instant),
}

/// Counters shared by the workers of a phase and the progress bar.
#[derive(Default)]
struct Progress {
    /// Next operation (or warmup key) number to claim.
    next: AtomicU64,
    /// Operations finished, errors included.
    done: AtomicU64,
    errors: AtomicU64,
}

struct Workload {
    keys: u64,
    read_ratio: f64,
    value: Bytes,
    seed: u64,
}

async fn worker(
    id: u32,
    mut client: Client,
    phase: Phase,
    work: Arc<Workload>,
    progress: Arc<Progress>,
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<Stats>>,
) -> Client {
    let mut rng = Rng::new(work.seed, u64::from(id));
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        // (is a read, key number)
        let (read, k) = match phase {
            Phase::Warmup(n) => {
                let i = progress.next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                (false, i)
            }
            Phase::Requests(n) => {
                if progress.next.fetch_add(1, Ordering::Relaxed) >= n {
                    break;
                }
                (rng.next_f64() < work.read_ratio, rng.below(work.keys))
            }
            Phase::Until(t) => {
                if Instant::now() >= t {
                    break;
                }
                (rng.next_f64() < work.read_ratio, rng.below(work.keys))
            }
        };
        let k = key(k);
        let started = Instant::now();
        let r = if read {
            client.get(k).await.map(Some)
        } else {
            client.put(k, work.value.clone()).await.map(|()| None)
        };
        let us = u64::try_from(started.elapsed().as_micros())
            .unwrap_or(u64::MAX)
            .min(MAX_LATENCY_US);
        {
            let mut s = lock(&stats);
            match r {
                Ok(found) => {
                    let h = if read { &mut s.reads } else { &mut s.writes };
                    // Cannot fail: auto-resizing, and the value is bounded.
                    let _ = h.record(us);
                    if found == Some(true) {
                        s.found += 1;
                    }
                }
                Err(e) => {
                    if read {
                        s.read_errors += 1;
                    } else {
                        s.write_errors += 1;
                    }
                    s.note_error(started, e);
                    progress.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        progress.done.fetch_add(1, Ordering::Relaxed);
    }
    client
}

/// The progress bar's updater; `total` is the number of operations, or the
/// phase's length in time.
fn spawn_progress(
    pb: ProgressBar,
    progress: Arc<Progress>,
    duration: Option<Duration>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let start = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(PROGRESS_TICK_MS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut last_t, mut last_done) = (start, 0u64);
        loop {
            tick.tick().await;
            let now = Instant::now();
            let done = progress.done.load(Ordering::Relaxed);
            let errors = progress.errors.load(Ordering::Relaxed);
            let dt = now.duration_since(last_t).as_secs_f64();
            let rate = if dt > 0.0 {
                done.saturating_sub(last_done) as f64 / dt
            } else {
                0.0
            };
            (last_t, last_done) = (now, done);
            match duration {
                Some(d) => {
                    let el = now.duration_since(start).min(d);
                    pb.set_position(el.as_millis() as u64);
                    pb.set_message(format!(
                        "{}/{} s, {done} ops, {rate:.0} ops/s, {errors} errors",
                        el.as_secs(),
                        d.as_secs()
                    ));
                }
                None => {
                    pb.set_position(done);
                    pb.set_message(format!("{rate:.0} ops/s, {errors} errors"));
                }
            }
        }
    })
}

fn progress_bar(len: u64, template: &str) -> anyhow::Result<ProgressBar> {
    let style = ProgressStyle::with_template(template)
        .context("bad progress bar template")?
        .progress_chars("=> ");
    Ok(ProgressBar::new(len).with_style(style))
}

/// Run one phase on all workers; give the clients back with the merged stats
/// and the phase's wall time.
async fn run_phase(
    clients: Vec<Client>,
    phase: Phase,
    work: &Arc<Workload>,
    stop: &Arc<AtomicBool>,
    pb: ProgressBar,
    duration: Option<Duration>,
) -> anyhow::Result<(Vec<Client>, Stats, Duration)> {
    let shards: Vec<Arc<Mutex<Stats>>> = (0..clients.len().clamp(1, MAX_HISTOGRAM_SHARDS))
        .map(|_| Stats::new().map(|s| Arc::new(Mutex::new(s))))
        .collect::<anyhow::Result<_>>()?;
    let progress = Arc::new(Progress::default());
    let ticker = spawn_progress(pb.clone(), progress.clone(), duration);
    let start = Instant::now();
    let mut set = JoinSet::new();
    for (i, client) in clients.into_iter().enumerate() {
        let stats = shards[i % shards.len()].clone();
        set.spawn(worker(
            i as u32,
            client,
            phase,
            work.clone(),
            progress.clone(),
            stop.clone(),
            stats,
        ));
    }
    let mut clients = Vec::new();
    while let Some(r) = set.join_next().await {
        clients.push(r.context("a bench worker failed")?);
    }
    let elapsed = start.elapsed();
    ticker.abort();
    pb.finish_and_clear();
    let mut total = Stats::new()?;
    for s in &shards {
        total.merge(&lock(s))?;
    }
    Ok((clients, total, elapsed))
}

// ---------------------------------------------------------------------------
// The command
// ---------------------------------------------------------------------------

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn rate(n: u64, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s > 0.0 { n as f64 / s } else { 0.0 }
}

fn kind_line(name: &str, h: &Histogram<u64>, errors: u64) -> String {
    let mut l = format!("{name}: {} ops", h.len());
    if !h.is_empty() {
        l.push_str(&format!(
            ", p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms, mean {:.3} ms",
            ms(h.value_at_quantile(0.50)),
            ms(h.value_at_quantile(0.90)),
            ms(h.value_at_quantile(0.99)),
            ms(h.value_at_quantile(0.999)),
            ms(h.max()),
            h.mean() / 1000.0,
        ));
    }
    l.push_str(&format!(", errors {errors}"));
    l
}

/// Open the workers' clients, failing clearly when the cluster cannot be reached.
async fn connect(a: &BenchArgs, addrs: &[String]) -> anyhow::Result<Vec<Client>> {
    let connect_timeout = Duration::from_millis(a.timeout_ms.min(CONNECT_TIMEOUT_MS));
    let n = a.concurrency as usize;
    match a.client {
        ClientKind::Smart => {
            let opts = RouterOptions {
                request_timeout_ms: a.timeout_ms,
                connect_timeout_ms: connect_timeout.as_millis() as u64,
                // Keep one idle connection per worker: with fewer, workers
                // would open and close connections all the time.
                max_idle_connections_per_node: n,
                ..RouterOptions::default()
            };
            let c = KvClient::connect(addrs.to_vec(), opts)
                .await
                .with_context(|| format!("cannot reach the cluster at {}", addrs.join(",")))?
                .with_consistency(a.read_mode.consistency());
            Ok((0..n).map(|_| Client::Smart(c.clone())).collect())
        }
        ClientKind::Resp => {
            let addr: Arc<str> = addrs[0].as_str().into();
            let mut out = Vec::with_capacity(n);
            for i in 0..n {
                let mut c = RespClient {
                    addr: addr.clone(),
                    mode: a.read_mode.consistency(),
                    connect_timeout,
                    op_timeout: Duration::from_millis(a.timeout_ms),
                    conn: None,
                };
                let conn = c.open().await.map_err(|e| {
                    if i == 0 {
                        anyhow::anyhow!("cannot reach the node at {addr}: {e}")
                    } else {
                        anyhow::anyhow!("connection {} of {n} to {addr} failed: {e}", i + 1)
                    }
                })?;
                c.conn = Some(conn);
                out.push(Client::Resp(c));
            }
            Ok(out)
        }
    }
}

pub async fn run(a: BenchArgs) -> anyhow::Result<()> {
    let addrs: Vec<String> = a
        .addrs
        .iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if addrs.is_empty() {
        bail!("--addr: give at least one HOST:PORT");
    }
    // The limits are checked by clap already; these guard direct callers.
    if !(1..=MAX_CONCURRENCY as u32).contains(&a.concurrency) {
        bail!("--concurrency must be in 1..={MAX_CONCURRENCY}");
    }
    if i64::from(a.value_bytes) > MAX_VALUE_BYTES {
        bail!("--value-bytes must be at most {MAX_VALUE_BYTES}");
    }
    if !(0.0..=1.0).contains(&a.read_ratio) {
        bail!("--read-ratio must be in [0, 1]");
    }
    if a.keys == 0 || a.requests == 0 {
        bail!("--keys and --requests must be at least 1");
    }
    let used_addrs = match a.client {
        ClientKind::Smart => addrs.clone(),
        ClientKind::Resp => addrs[..1].to_vec(),
    };
    let run_len = match a.duration_secs {
        Some(s) => format!("duration_secs={s}"),
        None => format!("requests={}", a.requests),
    };
    println!(
        "rhea bench: client={} addr={} concurrency={} {run_len} keys={} value_bytes={} read_ratio={:.2} read_mode={} warmup_keys={} seed={}",
        a.client.name(),
        used_addrs.join(","),
        a.concurrency,
        a.keys,
        a.value_bytes,
        a.read_ratio,
        a.read_mode.consistency().name(),
        a.warmup_keys,
        a.seed,
    );
    if a.client == ClientKind::Resp && addrs.len() > 1 {
        eprintln!(
            "note: --client resp sends everything to the first address ({}); the others are unused",
            addrs[0]
        );
    }

    let mut clients = connect(&a, &addrs).await?;
    let work = Arc::new(Workload {
        keys: a.keys,
        read_ratio: a.read_ratio,
        value: value(a.value_bytes as usize, a.seed),
        seed: a.seed,
    });

    // Ctrl-C: the first stops the workers after their current operation
    // (the summary is still printed), a second exits at once.
    let stop = Arc::new(AtomicBool::new(false));
    let interrupter = {
        let stop = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.store(true, Ordering::Relaxed);
                eprintln!(
                    "interrupted: stopping after the operations in flight (Ctrl-C again to quit)"
                );
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        })
    };

    if a.warmup_keys {
        let pb = progress_bar(
            a.keys,
            "warmup [{elapsed_precise}] {bar:40} {pos}/{len} keys, {msg}",
        )?;
        let (c, s, took) =
            run_phase(clients, Phase::Warmup(a.keys), &work, &stop, pb, None).await?;
        clients = c;
        let ok = s.ok_ops();
        println!(
            "warmup: {ok} keys in {:.2} s = {:.0} ops/s, errors {}",
            took.as_secs_f64(),
            rate(ok, took),
            s.errors()
        );
        if let Some((_, m)) = &s.first_error {
            println!("warmup first error: {m}");
        }
        if stop.load(Ordering::Relaxed) {
            interrupter.abort();
            bail!("interrupted during the warmup");
        }
        if ok == 0 {
            interrupter.abort();
            bail!(
                "every warmup write failed; first error: {}",
                s.first_error.map(|(_, m)| m).unwrap_or_default()
            );
        }
    }

    let (phase, pb, duration) = match a.duration_secs {
        Some(secs) => {
            let d = Duration::from_secs(secs);
            let pb = progress_bar(d.as_millis() as u64, "[{elapsed_precise}] {bar:40} {msg}")?;
            (Phase::Until(Instant::now() + d), pb, Some(d))
        }
        None => {
            let pb = progress_bar(
                a.requests,
                "[{elapsed_precise}] {bar:40} {pos}/{len} ops, {msg}",
            )?;
            (Phase::Requests(a.requests), pb, None)
        }
    };
    let (_clients, s, took) = run_phase(clients, phase, &work, &stop, pb, duration).await?;
    let interrupted = stop.load(Ordering::Relaxed);
    interrupter.abort();

    let ok = s.ok_ops();
    println!(
        "total: {ok} ops in {:.2} s = {:.0} ops/s, errors {}{}",
        took.as_secs_f64(),
        rate(ok, took),
        s.errors(),
        if interrupted { " (interrupted)" } else { "" }
    );
    println!("{}", kind_line("writes", &s.writes, s.write_errors));
    println!(
        "{}, found {}",
        kind_line("reads", &s.reads, s.read_errors),
        s.found
    );
    if let Some((_, m)) = &s.first_error {
        println!("first error: {m}");
    }
    if ok == 0 && s.errors() > 0 {
        bail!(
            "every operation failed; first error: {}",
            s.first_error.map(|(_, m)| m).unwrap_or_default()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_spread_over_the_first_byte() {
        let mut seen = [0u32; 256];
        for i in 0..25_600 {
            seen[key(i)[0] as usize] += 1;
        }
        // Uniform would be 100 per byte value.
        assert!(seen.iter().all(|&n| (50..=150).contains(&n)), "{seen:?}");
    }

    #[test]
    fn keys_are_distinct_and_end_with_the_index() {
        let k = key(12345);
        assert_eq!(&k[8..], b"12345");
        assert_ne!(key(1), key(2));
    }

    #[test]
    fn rng_ranges() {
        let mut r = Rng::new(7, 0);
        for _ in 0..10_000 {
            let f = r.next_f64();
            assert!((0.0..1.0).contains(&f));
            assert!(r.below(10) < 10);
        }
        assert_ne!(Rng::new(7, 0).next_u64(), Rng::new(7, 1).next_u64());
    }

    #[test]
    fn ratio_parser() {
        assert_eq!(parse_ratio("0.25"), Ok(0.25));
        assert!(parse_ratio("1.5").is_err());
        assert!(parse_ratio("-0.1").is_err());
        assert!(parse_ratio("NaN").is_err());
        assert!(parse_ratio("x").is_err());
    }

    #[test]
    fn value_has_the_requested_size() {
        assert_eq!(value(0, 1).len(), 0);
        assert_eq!(value(1000, 1).len(), 1000);
    }
}
