//! Admin commands (`RHEA.ADMIN ...` on the client port; the `rhea admin`
//! CLI sends them), like SOFAJRaft's CliService. Changes run on the region
//! leader: another node answers `NOTLEADER` with the leader's address and the
//! CLI follows it. Membership changes and transfers wait (up to
//! `ADMIN_WAIT_MS`) until they completed, and say how they ended.
//!
//! ```text
//! LEADERS                                   one row per region: id leader term voters learners
//! TRANSFER <region> <node>                  leader transfer (node 0: most up-to-date voter)
//! SNAPSHOT <region>                         snapshot this node's replica now
//! CHANGEPEERS <region> <voters> <learners>  comma lists, "-" for none
//! ADDPEER <region> <node> <raft_addr>       add a voter (registers its raft address first)
//! REMOVEPEER <region> <node>
//! ADDLEARNER <region> <node> <raft_addr>
//! REMOVELEARNER <region> <node>
//! ```

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rhea_raft::{NodeId, Role};

use crate::command::KvCommand;
use crate::error::KvError;
use crate::region::RegionId;
use crate::resp::Value;
use crate::router::{Router, error_to_resp};
use crate::store::KvStore;

/// How long a membership change or transfer may take before the admin
/// command reports a timeout (the change may still finish later).
pub const ADMIN_WAIT_MS: u64 = 30_000;

fn s(b: &Bytes) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn num(b: Option<&Bytes>) -> Result<u64, KvError> {
    b.and_then(|b| std::str::from_utf8(b).ok()?.parse().ok())
        .ok_or_else(|| KvError::Invalid("expected a number".into()))
}

fn set(b: Option<&Bytes>) -> Result<BTreeSet<NodeId>, KvError> {
    let b = b.ok_or_else(|| KvError::Invalid("expected a node list".into()))?;
    let t = s(b);
    if t == "-" || t.is_empty() {
        return Ok(BTreeSet::new());
    }
    t.split(',')
        .map(|x| {
            x.trim()
                .parse::<NodeId>()
                .map_err(|_| KvError::Invalid(format!("bad node id {x:?}")))
        })
        .collect()
}

fn list(ids: &BTreeSet<NodeId>) -> String {
    if ids.is_empty() {
        return "-".into();
    }
    ids.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Serve one admin command on this node. Every failure, `NOTLEADER`
/// included, is answered as the structured RESP error of the internal
/// protocol (the CLI follows `NOTLEADER` to the leader).
pub async fn serve_admin(router: &Router, args: &[Bytes]) -> Result<Value, KvError> {
    let Some(store) = router.local() else {
        return Ok(Value::error("ERR not a server"));
    };
    Ok(admin_command(router, store, args)
        .await
        .unwrap_or_else(|e| Value::Error(error_to_resp(&e))))
}

async fn admin_command(router: &Router, store: &KvStore, args: &[Bytes]) -> Result<Value, KvError> {
    let Some(first) = args.first() else {
        return Ok(Value::error("ERR RHEA.ADMIN needs a subcommand"));
    };
    let sub = s(first).to_ascii_uppercase();
    match sub.as_str() {
        "LEADERS" => leaders(store).await,
        "SNAPSHOT" => {
            let region = num(args.get(1))?;
            store
                .driver()
                .snapshot(region)
                .await
                .map(|i| Value::Simple(format!("OK snapshot of region {region} at index {i}")))
                .map_err(|e| KvError::Failed(e.to_string()))
        }
        "TRANSFER" => transfer(store, num(args.get(1))?, num(args.get(2))?).await,
        "CHANGEPEERS" => {
            change(
                store,
                num(args.get(1))?,
                set(args.get(2))?,
                set(args.get(3))?,
            )
            .await
        }
        "ADDPEER" | "ADDLEARNER" | "REMOVEPEER" | "REMOVELEARNER" => {
            let region = num(args.get(1))?;
            let node = num(args.get(2))?;
            let st = leader_status(store, region).await?;
            let mut voters = st.membership.voters.clone();
            let mut learners = st.membership.learners.clone();
            if sub.starts_with("ADD") {
                let Some(addr) = args.get(3) else {
                    return Ok(Value::error(format!(
                        "ERR {sub} needs <region> <node> <raft_addr>"
                    )));
                };
                let addr = s(addr);
                if addr.parse::<std::net::SocketAddr>().is_err() {
                    return Ok(Value::error(format!("ERR bad raft address {addr:?}")));
                }
                // The node directory lives in the KV regions: a group that
                // is not one (a transaction coordinator partition) records
                // the address through the first region.
                let register = KvCommand::RegisterNode {
                    node,
                    raft_addr: addr,
                    client_addr: String::new(),
                };
                match store.layout().first().map(|r| r.id) {
                    // This node leads `region` (checked above).
                    _ if store.range(region).is_ok() => {
                        store.write(region, None, register).await?;
                    }
                    // Through the first region's leader, wherever it is (a
                    // NOTLEADER for that region would send the CLI away from
                    // the group's leader, and back: a ping-pong).
                    Some(first) => {
                        router.write_region(first, register).await?;
                    }
                    None => {}
                }
            }
            match sub.as_str() {
                "ADDPEER" => {
                    learners.remove(&node);
                    voters.insert(node);
                }
                "ADDLEARNER" => {
                    learners.insert(node);
                }
                "REMOVEPEER" => {
                    voters.remove(&node);
                }
                _ => {
                    learners.remove(&node);
                }
            }
            change(store, region, voters, learners).await
        }
        _ => Ok(Value::error(format!("ERR unknown admin command '{sub}'"))),
    }
}

async fn leaders(store: &KvStore) -> Result<Value, KvError> {
    let mut rows = Vec::new();
    let groups = store
        .layout()
        .iter()
        .map(|r| r.id)
        .chain(store.extra_groups().iter().copied());
    for id in groups {
        let st = store.status(id).await?;
        rows.push(Value::Array(vec![
            Value::Integer(id as i64),
            Value::Integer(st.leader as i64),
            Value::Integer(st.term as i64),
            Value::Bulk(Bytes::from(list(&st.membership.voters))),
            Value::Bulk(Bytes::from(list(&st.membership.learners))),
        ]));
    }
    Ok(Value::Array(rows))
}

async fn leader_status(
    store: &KvStore,
    region: RegionId,
) -> Result<rhea_runtime::GroupStatus, KvError> {
    let st = store.status(region).await?;
    if st.role != Role::Leader {
        let addr = store
            .directory()
            .get(&st.leader)
            .map(|a| a.client_addr.clone())
            .filter(|a| !a.is_empty());
        return Err(KvError::NotLeader {
            region,
            leader: st.leader,
            leader_addr: addr,
        });
    }
    Ok(st)
}

async fn transfer(store: &KvStore, region: RegionId, target: NodeId) -> Result<Value, KvError> {
    leader_status(store, region).await?;
    store
        .driver()
        .transfer_leader(region, target)
        .await
        .map_err(|e| KvError::Failed(e.to_string()))?;
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(ADMIN_WAIT_MS) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let st = store.status(region).await?;
        if st.leader != store.node_id() && st.leader != 0 && (target == 0 || st.leader == target) {
            return Ok(Value::Simple(format!(
                "OK region {region} leader is now {}",
                st.leader
            )));
        }
    }
    Ok(Value::error(format!(
        "ERR transfer of region {region} did not complete within {ADMIN_WAIT_MS} ms"
    )))
}

async fn change(
    store: &KvStore,
    region: RegionId,
    voters: BTreeSet<NodeId>,
    learners: BTreeSet<NodeId>,
) -> Result<Value, KvError> {
    let st = leader_status(store, region).await?;
    let m = &st.membership;
    if !m.is_joint() && m.voters == voters && m.learners == learners {
        return Ok(Value::Simple(format!(
            "OK region {region} already has voters {} learners {}",
            list(&m.voters),
            list(&m.learners)
        )));
    }
    store
        .driver()
        .change_membership(region, voters.clone(), learners.clone())
        .await
        .map_err(|e| KvError::Failed(e.to_string()))?;
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(ADMIN_WAIT_MS) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let st = match store.status(region).await {
            Ok(st) => st,
            Err(e) => return Err(e),
        };
        let m = &st.membership;
        if !m.is_joint() && !st.membership_change_pending {
            if m.voters == voters && m.learners == learners {
                return Ok(Value::Simple(format!(
                    "OK region {region} voters {} learners {}",
                    list(&m.voters),
                    list(&m.learners)
                )));
            }
            return Ok(Value::error(format!(
                "ERR membership change of region {region} was aborted; voters {} learners {}",
                list(&m.voters),
                list(&m.learners)
            )));
        }
    }
    Ok(Value::error(format!(
        "ERR membership change of region {region} did not complete within {ADMIN_WAIT_MS} ms"
    )))
}
