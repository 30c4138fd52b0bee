//! The Redis-protocol (RESP2) front end. Any node accepts any command and
//! forwards it to the region leader through the node's [`Router`]; clients
//! that speak Redis (redis-cli, redis-benchmark, client libraries) work
//! unchanged. Commands and replies are listed in `docs/kv.md`.
//!
//! Limits: `max_connections` (further clients get Redis's "max number of
//! clients reached" and are closed), the RESP limits of
//! [`RespLimits`] (a malformed or oversize request gets a protocol error and
//! the connection is closed), and the store's key/value limits.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use rhea_raft::Role;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::client::KvClient;
use crate::error::KvError;
use crate::resp::{RespLimits, Value, parse_command};
use crate::router::Router;
use crate::store::ReadConsistency;

/// Options of the RESP server.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Most client connections at once. Default 10,000.
    pub max_connections: usize,
    pub resp_limits: RespLimits,
    /// Read consistency of a new connection (changed with `READMODE`).
    pub default_read_mode: ReadConsistency,
    /// Most pairs `RSCAN` returns when no LIMIT is given. Default 1,000.
    pub default_scan_limit: u32,
    /// Serves `RHEA.X <args>`: node-to-node requests of a layer above the
    /// KV store (the transaction coordinator relays phase-two calls with it).
    pub extension: Option<Extension>,
}

/// A boxed, sendable future.
pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// A handler of `RHEA.X` requests; `args` are the arguments after `RHEA.X`.
pub trait ServerExtension: Send + Sync + 'static {
    fn call(&self, args: Vec<Bytes>) -> BoxFuture<Value>;
}

/// A [`ServerExtension`] in [`ServerOptions`].
#[derive(Clone)]
pub struct Extension(pub Arc<dyn ServerExtension>);

impl std::fmt::Debug for Extension {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Extension")
    }
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_connections: 10_000,
            resp_limits: RespLimits::default(),
            default_read_mode: ReadConsistency::Linearizable,
            default_scan_limit: 1000,
            extension: None,
        }
    }
}

/// Extra lines for `INFO` (the binary adds its addresses and version).
pub type InfoFn = Arc<dyn Fn() -> String + Send + Sync>;

struct Shared {
    router: Router,
    opts: ServerOptions,
    connections: AtomicUsize,
    total_connections: AtomicU64,
    commands: AtomicU64,
    info: InfoFn,
}

/// Serve RESP clients on `listener` until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    opts: ServerOptions,
    info: InfoFn,
    mut stop: watch::Receiver<bool>,
) {
    let shared = Arc::new(Shared {
        router,
        opts,
        connections: AtomicUsize::new(0),
        total_connections: AtomicU64::new(0),
        commands: AtomicU64::new(0),
        info,
    });
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            a = listener.accept() => a,
        };
        let (mut sock, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        if shared.connections.load(Ordering::Acquire) >= shared.opts.max_connections {
            let _ = sock
                .write_all(b"-ERR max number of clients reached\r\n")
                .await;
            metrics::counter!("rhea_kv_connections_refused_total").increment(1);
            continue;
        }
        shared.connections.fetch_add(1, Ordering::AcqRel);
        shared.total_connections.fetch_add(1, Ordering::Relaxed);
        let s = shared.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let _ = sock.set_nodelay(true);
            if let Err(e) = connection(&s, sock, stop).await {
                debug!(%peer, error = %e, "client connection ended");
            }
            s.connections.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

struct Conn {
    client: KvClient,
}

async fn connection(
    s: &Shared,
    mut sock: TcpStream,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut c = Conn {
        client: KvClient::from_router(s.router.clone()).with_consistency(s.opts.default_read_mode),
    };
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut out: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::select! {
            _ = stop.wait_for(|s| *s) => return Ok(()),
            n = sock.read(&mut chunk) => n?,
        };
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut consumed = 0;
        let mut quit = false;
        loop {
            match parse_command(&buf[consumed..], &s.opts.resp_limits) {
                Ok(Some((args, used))) => {
                    consumed += used;
                    if args.is_empty() {
                        continue;
                    }
                    s.commands.fetch_add(1, Ordering::Relaxed);
                    let (v, q) = command(s, &mut c, &args).await;
                    v.encode(&mut out);
                    if q {
                        quit = true;
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    warn!(error = %e, "malformed client request; closing the connection");
                    metrics::counter!("rhea_kv_protocol_errors_total").increment(1);
                    Value::error(format!("ERR {e}")).encode(&mut out);
                    sock.write_all(&out).await?;
                    return Ok(());
                }
            }
        }
        buf.drain(..consumed);
        if !out.is_empty() {
            sock.write_all(&out).await?;
            out.clear();
        }
        if quit {
            return Ok(());
        }
    }
}

fn arity(name: &str) -> Value {
    Value::error(format!(
        "ERR wrong number of arguments for '{}' command",
        name.to_ascii_lowercase()
    ))
}

fn user_error(e: &KvError) -> Value {
    Value::error(match e {
        KvError::Unavailable { .. } => format!("CLUSTERDOWN {e}"),
        KvError::Timeout { .. } | KvError::Indeterminate { .. } => format!("TIMEOUT {e}"),
        KvError::Invalid(m) => format!("ERR {m}"),
        KvError::Failed(m) => format!("ERR {m}"),
        e if e.is_retryable() => format!("TRYAGAIN {e}"),
        e => format!("ERR {e}"),
    })
}

fn bulk_or_nil(v: Option<Bytes>) -> Value {
    v.map_or(Value::Nil, Value::Bulk)
}

fn to_str(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn parse_u64(b: &[u8]) -> Option<u64> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// Execute one command. Returns the reply and whether to close afterwards.
async fn command(s: &Shared, c: &mut Conn, args: &[Bytes]) -> (Value, bool) {
    let name = to_str(&args[0]).to_ascii_uppercase();
    let a = &args[1..];
    let cl = &c.client;
    metrics::counter!("rhea_kv_commands_total").increment(1);
    let r: Result<Value, KvError> = match (name.as_str(), a.len()) {
        ("PING", 0) => Ok(Value::Simple("PONG".into())),
        ("PING", 1) => Ok(Value::Bulk(a[0].clone())),
        ("ECHO", 1) => Ok(Value::Bulk(a[0].clone())),
        ("QUIT", _) => return (Value::ok(), true),
        ("SELECT", 1) => Ok(if &a[0][..] == b"0" {
            Value::ok()
        } else {
            Value::error("ERR DB index is out of range (Rhea has one database, 0)")
        }),
        ("COMMAND", _) => Ok(Value::Array(Vec::new())),
        ("CONFIG", n) if n >= 1 => Ok(Value::Array(Vec::new())),
        ("CLIENT", n) if n >= 1 => Ok(Value::ok()),
        ("HELLO", _) => Ok(Value::error(
            "NOPROTO Rhea speaks RESP2 only; connect without HELLO 3",
        )),
        ("GET", 1) => cl.get(a[0].clone()).await.map(bulk_or_nil),
        ("SET", n) if n >= 2 => set(cl, a).await,
        ("SETNX", 2) => cl
            .put_if_absent(a[0].clone(), a[1].clone())
            .await
            .map(|prev| Value::Integer(i64::from(prev.is_none()))),
        ("GETSET", 2) => cl
            .get_and_put(a[0].clone(), a[1].clone())
            .await
            .map(bulk_or_nil),
        ("MGET", n) if n >= 1 => cl
            .multi_get(a.to_vec())
            .await
            .map(|vs| Value::Array(vs.into_iter().map(bulk_or_nil).collect())),
        ("MSET", n) if n >= 2 && n % 2 == 0 => {
            let pairs = a.chunks(2).map(|p| (p[0].clone(), p[1].clone())).collect();
            cl.batch_put(pairs).await.map(|_| Value::ok())
        }
        ("DEL", 1) => cl
            .delete(a[0].clone())
            .await
            .map(|b| Value::Integer(i64::from(b))),
        ("DEL", n) if n > 1 => cl
            .batch_delete(a.to_vec())
            .await
            .map(|n| Value::Integer(n as i64)),
        ("EXISTS", 1) => cl
            .contains_key(a[0].clone())
            .await
            .map(|b| Value::Integer(i64::from(b))),
        ("EXISTS", n) if n > 1 => cl
            .multi_get(a.to_vec())
            .await
            .map(|vs| Value::Integer(vs.iter().filter(|v| v.is_some()).count() as i64)),
        ("CAS", 3) => cl
            .compare_and_put(a[0].clone(), a[1].clone(), a[2].clone())
            .await
            .map(|b| Value::Integer(i64::from(b))),
        ("RSCAN" | "RREVSCAN", n) if n == 2 || n == 4 => {
            let limit = if n == 4 {
                if !a[2].eq_ignore_ascii_case(b"LIMIT") {
                    return (Value::error("ERR syntax error: expected LIMIT n"), false);
                }
                match parse_u64(&a[3]).and_then(|l| u32::try_from(l).ok()) {
                    Some(l) => l,
                    None => {
                        return (
                            Value::error("ERR LIMIT must be a non-negative integer"),
                            false,
                        );
                    }
                }
            } else {
                s.opts.default_scan_limit
            };
            cl.scan(a[0].clone(), a[1].clone(), limit, name == "RREVSCAN")
                .await
                .map(|pairs| {
                    Value::Array(
                        pairs
                            .into_iter()
                            .flat_map(|(k, v)| [Value::Bulk(k), Value::Bulk(v)])
                            .collect(),
                    )
                })
        }
        ("DELRANGE", 2) => cl
            .delete_range(a[0].clone(), a[1].clone())
            .await
            .map(|n| Value::Integer(n as i64)),
        ("READMODE", 0) => Ok(Value::Bulk(Bytes::from_static(
            cl.consistency().name().as_bytes(),
        ))),
        ("READMODE", 1) => match ReadConsistency::parse(&to_str(&a[0])) {
            Some(m) => {
                c.client = c.client.with_consistency(m);
                Ok(Value::ok())
            }
            None => Ok(Value::error(
                "ERR READMODE takes linearizable, lease, follower or stale",
            )),
        },
        ("INFO", _) => Ok(Value::Bulk(Bytes::from(info(s).await))),
        ("RHEA.R", _) => Ok(s.router.serve_internal(args).await),
        ("RHEA.EXEC", _) => Ok(s.router.serve_group(args).await),
        ("RHEA.X", n) if n >= 1 => match &s.opts.extension {
            Some(ext) => Ok(ext.0.call(args.get(1..).unwrap_or_default().to_vec()).await),
            None => Ok(Value::error("ERR RHEA.X: no extension on this node")),
        },
        ("RHEA.REGIONS", 0) => regions(s).await,
        ("RHEA.ADMIN", n) if n >= 1 => crate::admin::serve_admin(&s.router, a).await,
        (
            "GET" | "SET" | "SETNX" | "GETSET" | "MGET" | "MSET" | "DEL" | "EXISTS" | "CAS"
            | "RSCAN" | "RREVSCAN" | "DELRANGE" | "READMODE" | "PING" | "ECHO" | "SELECT"
            | "RHEA.REGIONS" | "RHEA.ADMIN" | "CONFIG" | "CLIENT",
            _,
        ) => Ok(arity(&name)),
        _ => {
            let mut msg = format!(
                "ERR unknown command '{}', with args beginning with:",
                to_str(&args[0])
            );
            for x in a.iter().take(3) {
                msg.push_str(&format!(" '{}'", to_str(x)));
            }
            Ok(Value::error(msg))
        }
    };
    (r.unwrap_or_else(|e| user_error(&e)), false)
}

async fn set(cl: &KvClient, a: &[Bytes]) -> Result<Value, KvError> {
    let (key, value) = (a[0].clone(), a[1].clone());
    let (mut nx, mut get) = (false, false);
    for opt in &a[2..] {
        match to_str(opt).to_ascii_uppercase().as_str() {
            "NX" => nx = true,
            "GET" => get = true,
            "XX" => {
                return Ok(Value::error(
                    "ERR SET XX is not supported by Rhea (use CAS)",
                ));
            }
            "EX" | "PX" | "EXAT" | "PXAT" | "KEEPTTL" => {
                return Ok(Value::error(
                    "ERR key expiry (EX, PX, EXAT, PXAT, KEEPTTL) is not supported by Rhea",
                ));
            }
            _ => return Ok(Value::error("ERR syntax error")),
        }
    }
    Ok(match (nx, get) {
        (false, false) => {
            cl.put(key, value).await?;
            Value::ok()
        }
        (false, true) => bulk_or_nil(cl.get_and_put(key, value).await?),
        (true, false) => match cl.put_if_absent(key, value).await? {
            None => Value::ok(),
            Some(_) => Value::Nil,
        },
        (true, true) => bulk_or_nil(cl.put_if_absent(key, value).await?),
    })
}

async fn regions(s: &Shared) -> Result<Value, KvError> {
    let Some(local) = s.router.local() else {
        return Ok(Value::error("ERR not a server"));
    };
    let dir = local.directory();
    let mut out = Vec::new();
    for r in local.layout() {
        let st = local.status(r.id).await?;
        let epoch = local.epoch(r.id)?;
        let addr = dir
            .get(&st.leader)
            .map(|a| a.client_addr.clone())
            .unwrap_or_default();
        out.push(Value::Array(vec![
            Value::Integer(r.id as i64),
            Value::Bulk(r.start_key.clone()),
            Value::Bulk(r.end_key.clone()),
            Value::Integer(epoch.conf_ver as i64),
            Value::Integer(epoch.version as i64),
            Value::Integer(st.leader as i64),
            Value::Bulk(Bytes::from(addr)),
        ]));
    }
    Ok(Value::Array(out))
}

async fn info(s: &Shared) -> String {
    let mut o = String::new();
    o.push_str("# Server\r\n");
    o.push_str(&(s.info)());
    o.push_str(&format!(
        "connected_clients:{}\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\n",
        s.connections.load(Ordering::Relaxed),
        s.total_connections.load(Ordering::Relaxed),
        s.commands.load(Ordering::Relaxed)
    ));
    if let Some(local) = s.router.local() {
        o.push_str("\r\n# Stats\r\n");
        for (k, v) in local.counters().snapshot() {
            o.push_str(&format!("{k}:{v}\r\n"));
        }
        o.push_str("\r\n# Regions\r\n");
        for r in local.layout() {
            match local.status(r.id).await {
                Ok(st) => {
                    let role = match st.role {
                        Role::Leader => "leader",
                        Role::Follower => "follower",
                        Role::Candidate => "candidate",
                        Role::PreCandidate => "precandidate",
                        Role::Learner => "learner",
                    };
                    let voters: Vec<String> =
                        st.membership.voters.iter().map(|v| v.to_string()).collect();
                    let learners: Vec<String> = st
                        .membership
                        .learners
                        .iter()
                        .map(|v| v.to_string())
                        .collect();
                    o.push_str(&format!(
                        "region{}:role={role},leader={},term={},commit={},applied={},voters={},learners={}\r\n",
                        r.id,
                        st.leader,
                        st.term,
                        st.commit,
                        st.applied,
                        voters.join("|"),
                        learners.join("|")
                    ));
                }
                Err(e) => o.push_str(&format!("region{}:error={e}\r\n", r.id)),
            }
        }
    }
    o
}

/// Log the listening address.
pub fn announce(addr: &std::net::SocketAddr) {
    info!(%addr, "serving the Redis protocol");
}
