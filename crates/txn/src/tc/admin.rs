//! `RHEA.X` requests between nodes and from `rhea admin`, served on the
//! client port by the KV server's extension hook:
//!
//! | request | answer |
//! |---|---|
//! | `TC.PHASE2 <action> <xid> <branch> <type> <resource> <client> <data>` | a relayed phase-two call (`docs/tc.md`): the branch status code |
//! | `TC.PEEK <xid>` | the status in the partition leader's replica (integer, nil if gone); leader only, not linearizable |
//! | `TC.STATUS <xid>` | the global status (through the log) |
//! | `TC.FORCE-FINISH <xid>` | operator: forget the session, release its locks; the status it had |
//! | `TC.SESSIONS [limit]` | every partition's sessions, from each partition's leader |
//! | `TC.PARTITION-SESSIONS <p> <limit>` | one partition's sessions, served by its leader only |

use bytes::Bytes;
use rhea_kv::resp::Value;

use super::machine::lock_shared;
use super::service::{Coordinator, PEEK_VERB, RELAY_VERB, now_ms};

/// Most sessions one listing returns per partition.
pub const MAX_LISTED_SESSIONS: usize = 10_000;

pub(crate) async fn serve(tc: &Coordinator, args: &[Bytes]) -> Value {
    let verb = args
        .first()
        .map(|v| String::from_utf8_lossy(v).to_ascii_uppercase());
    let text = |i: usize| args.get(i).and_then(|b| std::str::from_utf8(b).ok());
    match verb.as_deref() {
        Some(RELAY_VERB) => tc.serve_relay(args).await,
        Some(PEEK_VERB) if args.len() == 2 => match text(1) {
            Some(xid) => tc.serve_peek(xid),
            None => Value::error("ERR TC.PEEK <xid>"),
        },
        Some("TC.STATUS") if args.len() == 2 => match text(1) {
            Some(xid) => match tc.status(xid).await {
                Ok(s) => Value::Bulk(Bytes::from(s.java_name())),
                Err(e) => Value::error(format!("ERR {e}")),
            },
            None => Value::error("ERR TC.STATUS <xid>"),
        },
        Some("TC.FORCE-FINISH") if args.len() == 2 => match text(1) {
            Some(xid) => match tc.force_finish(xid).await {
                Ok(prev) => {
                    tracing::warn!(%xid, previous = %prev, "global session force-finished by an operator");
                    Value::Simple(format!(
                        "OK {xid} removed (was {prev}); its row locks are released"
                    ))
                }
                Err(e) => Value::error(format!("ERR {e}")),
            },
            None => Value::error("ERR TC.FORCE-FINISH <xid>"),
        },
        Some("TC.SESSIONS") => {
            let limit = text(1)
                .and_then(|l| l.parse::<usize>().ok())
                .unwrap_or(1000)
                .min(MAX_LISTED_SESSIONS);
            sessions(tc, limit).await
        }
        Some("TC.PARTITION-SESSIONS") => {
            let p = text(1).and_then(|p| p.parse::<u32>().ok());
            let limit = text(2)
                .and_then(|l| l.parse::<usize>().ok())
                .unwrap_or(1000)
                .min(MAX_LISTED_SESSIONS);
            match p {
                Some(p) if p < tc.config().session_partitions => {
                    if tc.leads_session(p) {
                        partition_sessions(tc, p, limit)
                    } else {
                        Value::error(format!("ERR this node does not lead session partition {p}"))
                    }
                }
                _ => Value::error("ERR TC.PARTITION-SESSIONS <partition> <limit>"),
            }
        }
        _ => Value::error("ERR unknown or malformed RHEA.X request"),
    }
}

/// One row per session of partition `p` in this node's replica: xid,
/// status, branches, age in ms, phase-two failures so far.
fn partition_sessions(tc: &Coordinator, p: u32, limit: usize) -> Value {
    let Some(shared) = tc.0.sessions.get(p as usize) else {
        return Value::Array(Vec::new());
    };
    let now = now_ms();
    let part = lock_shared(shared);
    let rows = part
        .global_sessions()
        .take(limit)
        .map(|g| {
            Value::Array(vec![
                Value::Bulk(Bytes::from(g.xid.clone())),
                Value::Bulk(Bytes::from(g.status.java_name())),
                Value::Integer(g.branches.len() as i64),
                Value::Integer(now.saturating_sub(g.begin_time_ms) as i64),
                Value::Integer(i64::from(g.retry.failures)),
            ])
        })
        .collect();
    Value::Array(rows)
}

/// Every partition's sessions, each from its leader (this node's replica
/// when it leads, else asked with `TC.PARTITION-SESSIONS`).
async fn sessions(tc: &Coordinator, limit: usize) -> Value {
    let mut out = Vec::new();
    for p in 0..tc.config().session_partitions {
        let part = if tc.leads_session(p) {
            partition_sessions(tc, p, limit)
        } else {
            match tc.session_leader_addr(p) {
                Some(addr) => {
                    let ps = p.to_string();
                    let l = limit.to_string();
                    let args: [&[u8]; 4] = [
                        b"RHEA.X",
                        b"TC.PARTITION-SESSIONS",
                        ps.as_bytes(),
                        l.as_bytes(),
                    ];
                    match tc.0.router.call_addr(&addr, &args).await {
                        Ok(v) => v,
                        Err(e) => Value::error(format!("ERR partition {p}: {e}")),
                    }
                }
                None => Value::error(format!("ERR partition {p}: no known leader")),
            }
        };
        match part {
            Value::Array(rows) => out.extend(rows),
            Value::Error(e) => return Value::Error(e),
            _ => {}
        }
    }
    Value::Array(out)
}
