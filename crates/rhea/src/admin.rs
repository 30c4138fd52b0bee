//! `rhea admin`: SOFAJRaft CliService-style operations over the client port
//! (`RHEA.ADMIN ...`, see `rhea_kv::admin`), and the transaction
//! coordinator's operator commands (`RHEA.X TC.*`, see `rhea_txn::tc`). Changes go to the region
//! leader: a `NOTLEADER` answer is followed to the leader it names, and a
//! region without a leader is retried, both a bounded number of times.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use rhea_kv::resp::{RespLimits, Value};
use rhea_kv::router::Conn;

/// Hops to follow `NOTLEADER` and retries while a region has no leader.
const MAX_REDIRECTS: usize = 20;
const RETRY_SLEEP_MS: u64 = 200;
const CONNECT_TIMEOUT_MS: u64 = 2_000;

#[derive(Args, Debug)]
pub struct AdminArgs {
    /// Client address of any node.
    #[arg(long, default_value = "127.0.0.1:6380", env = "RHEA_ADDR")]
    pub addr: String,
    #[command(subcommand)]
    pub cmd: AdminCmd,
}

#[derive(Subcommand, Debug)]
pub enum AdminCmd {
    /// Leader, term, voters and learners of every region.
    Leaders,
    /// Move a region's leadership (to the most up-to-date voter if --to is 0).
    TransferLeader {
        #[arg(long)]
        region: u64,
        #[arg(long, default_value_t = 0)]
        to: u64,
    },
    /// Snapshot a region's replica on the node at --addr now.
    Snapshot {
        #[arg(long)]
        region: u64,
    },
    /// Add a voter (joint consensus; waits until done). Start it first with `rhea server --join`.
    AddPeer {
        #[command(flatten)]
        target: GroupTarget,
        #[arg(long)]
        node: u64,
        /// The new node's raft address.
        #[arg(long)]
        raft_addr: String,
    },
    /// Remove a voter.
    RemovePeer {
        #[command(flatten)]
        target: GroupTarget,
        #[arg(long)]
        node: u64,
    },
    /// Add a learner (non-voting replica).
    AddLearner {
        #[command(flatten)]
        target: GroupTarget,
        #[arg(long)]
        node: u64,
        #[arg(long)]
        raft_addr: String,
    },
    /// Remove a learner.
    RemoveLearner {
        #[command(flatten)]
        target: GroupTarget,
        #[arg(long)]
        node: u64,
    },
    /// Set a region's voters and learners at once (comma lists; "-" for none).
    ChangePeers {
        #[arg(long)]
        region: u64,
        #[arg(long)]
        voters: String,
        #[arg(long, default_value = "-")]
        learners: String,
    },
    /// Transaction coordinator: global sessions in every partition (xid, status, branches, age, phase-two failures).
    TcSessions {
        #[arg(long, default_value_t = 1000)]
        limit: u64,
    },
    /// Transaction coordinator: the status of one global transaction.
    TcStatus {
        #[arg(long)]
        xid: String,
    },
    /// Transaction coordinator: forget a stuck global transaction and release its row locks
    /// (after repairing its data by hand; e.g. RollbackRetryTimeout, RollbackFailed).
    TcForceFinish {
        #[arg(long)]
        xid: String,
    },
}

/// Which raft groups a membership command changes.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct GroupTarget {
    /// One region, or a transaction coordinator group (1000000+p, 2000000+p).
    #[arg(long)]
    region: Option<u64>,
    /// Every group the cluster hosts: all regions and all TC groups, one after another.
    #[arg(long)]
    all: bool,
}

/// The group ids `target` names (all of them from `LEADERS` for `--all`).
async fn target_groups(addr: &str, target: &GroupTarget) -> anyhow::Result<Vec<u64>> {
    if let Some(r) = target.region {
        return Ok(vec![r]);
    }
    let v = admin(addr, vec!["LEADERS".into()]).await?;
    let mut ids = Vec::new();
    if let Value::Array(rows) = &v {
        for r in rows {
            if let Value::Array(f) = r
                && let Some(Value::Integer(id)) = f.first()
            {
                ids.push(u64::try_from(*id).context("negative group id")?);
            }
        }
    }
    if ids.is_empty() {
        bail!("the cluster reported no groups");
    }
    Ok(ids)
}

/// Run a membership command on each group of `target`, printing each
/// outcome; fails after trying them all if any failed.
async fn membership(
    addr: &str,
    target: &GroupTarget,
    command: &str,
    rest: &[String],
) -> anyhow::Result<()> {
    let mut failed = 0;
    for g in target_groups(addr, target).await? {
        let mut args = vec![command.to_string(), g.to_string()];
        args.extend(rest.iter().cloned());
        match admin(addr, args).await {
            Ok(v) => println!("{}", text(&v)),
            Err(e) => {
                failed += 1;
                println!("group {g}: error: {e:#}");
            }
        }
    }
    if failed > 0 {
        bail!("{failed} group(s) failed");
    }
    Ok(())
}

async fn call(addr: &str, args: &[String]) -> anyhow::Result<Value> {
    let mut c = Conn::connect(
        addr,
        Duration::from_millis(CONNECT_TIMEOUT_MS),
        RespLimits::default(),
    )
    .await
    .with_context(|| format!("cannot reach {addr}"))?;
    let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
    Ok(c.call(&a).await?)
}

/// Send an admin command, following NOTLEADER redirects.
async fn admin(addr: &str, args: Vec<String>) -> anyhow::Result<Value> {
    let mut target = addr.to_string();
    let mut full = vec!["RHEA.ADMIN".to_string()];
    full.extend(args);
    for _ in 0..MAX_REDIRECTS {
        let v = call(&target, &full).await?;
        if let Value::Error(m) = &v {
            let w: Vec<&str> = m.split_whitespace().collect();
            if w.first() == Some(&"NOTLEADER") {
                match w.get(3) {
                    Some(a) if *a != "-" => {
                        target = a.to_string();
                        continue;
                    }
                    _ => {
                        tokio::time::sleep(Duration::from_millis(RETRY_SLEEP_MS)).await;
                        target = addr.to_string();
                        continue;
                    }
                }
            }
            if w.first() == Some(&"TRYAGAIN") {
                tokio::time::sleep(Duration::from_millis(RETRY_SLEEP_MS)).await;
                continue;
            }
            bail!("{m}");
        }
        return Ok(v);
    }
    bail!("no leader found after {MAX_REDIRECTS} attempts (is a quorum of the cluster up?)")
}

/// A transaction coordinator request (`RHEA.X ...`): any node serves it.
async fn tc(addr: &str, args: Vec<String>) -> anyhow::Result<Value> {
    let mut full = vec!["RHEA.X".to_string()];
    full.extend(args);
    match call(addr, &full).await? {
        Value::Error(m) => bail!("{m}"),
        v => Ok(v),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Simple(s) => s.clone(),
        Value::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
        Value::Integer(i) => i.to_string(),
        Value::Nil | Value::NilArray => "-".into(),
        Value::Error(e) => format!("error: {e}"),
        Value::Array(a) => a.iter().map(text).collect::<Vec<_>>().join(" "),
    }
}

pub async fn run(a: AdminArgs) -> anyhow::Result<()> {
    let s = |x: u64| x.to_string();
    let v = match a.cmd {
        AdminCmd::Leaders => {
            let v = admin(&a.addr, vec!["LEADERS".into()]).await?;
            println!(
                "{:<8} {:<8} {:<8} {:<16} learners",
                "region", "leader", "term", "voters"
            );
            if let Value::Array(rows) = &v {
                for r in rows {
                    if let Value::Array(f) = r {
                        let col = |i: usize| f.get(i).map(text).unwrap_or_default();
                        println!(
                            "{:<8} {:<8} {:<8} {:<16} {}",
                            col(0),
                            col(1),
                            col(2),
                            col(3),
                            col(4)
                        );
                    }
                }
            }
            return Ok(());
        }
        AdminCmd::TransferLeader { region, to } => {
            admin(&a.addr, vec!["TRANSFER".into(), s(region), s(to)]).await?
        }
        AdminCmd::Snapshot { region } => {
            // Local to the node at --addr: no redirect.
            let v = call(
                &a.addr,
                &["RHEA.ADMIN".into(), "SNAPSHOT".into(), s(region)],
            )
            .await?;
            if let Value::Error(m) = &v {
                bail!("{m}");
            }
            v
        }
        AdminCmd::AddPeer {
            target,
            node,
            raft_addr,
        } => return membership(&a.addr, &target, "ADDPEER", &[s(node), raft_addr]).await,
        AdminCmd::RemovePeer { target, node } => {
            return membership(&a.addr, &target, "REMOVEPEER", &[s(node)]).await;
        }
        AdminCmd::AddLearner {
            target,
            node,
            raft_addr,
        } => return membership(&a.addr, &target, "ADDLEARNER", &[s(node), raft_addr]).await,
        AdminCmd::RemoveLearner { target, node } => {
            return membership(&a.addr, &target, "REMOVELEARNER", &[s(node)]).await;
        }
        AdminCmd::TcSessions { limit } => {
            let v = tc(&a.addr, vec!["TC.SESSIONS".into(), s(limit)]).await?;
            println!(
                "{:<40} {:<26} {:>8} {:>10} {:>8}",
                "xid", "status", "branches", "age_ms", "failures"
            );
            if let Value::Array(rows) = &v {
                for r in rows {
                    if let Value::Array(f) = r {
                        let col = |i: usize| f.get(i).map(text).unwrap_or_default();
                        println!(
                            "{:<40} {:<26} {:>8} {:>10} {:>8}",
                            col(0),
                            col(1),
                            col(2),
                            col(3),
                            col(4)
                        );
                    }
                }
            }
            return Ok(());
        }
        AdminCmd::TcStatus { xid } => tc(&a.addr, vec!["TC.STATUS".into(), xid]).await?,
        AdminCmd::TcForceFinish { xid } => tc(&a.addr, vec!["TC.FORCE-FINISH".into(), xid]).await?,
        AdminCmd::ChangePeers {
            region,
            voters,
            learners,
        } => {
            admin(
                &a.addr,
                vec!["CHANGEPEERS".into(), s(region), voters, learners],
            )
            .await?
        }
    };
    println!("{}", text(&v));
    Ok(())
}
