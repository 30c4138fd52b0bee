//! `rhea server`: resolve settings, start the node, the RESP listener and
//! the metrics endpoint; stop cleanly on SIGTERM or Ctrl-C.

use std::sync::Arc;

use anyhow::Context;
use rhea_kv::{KvLimits, KvNode, KvOptions, NodeConfig, ServerOptions};
use rhea_runtime::DriverOptions;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::{ServerArgs, Settings, cluster_id, write_meta};

fn init_logs(level: &str) -> anyhow::Result<()> {
    let level: tracing::Level = level.parse().map_err(|_| {
        anyhow::anyhow!("--log-level {level:?}: use error, warn, info, debug or trace")
    })?;
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .try_init();
    Ok(())
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let s: Settings = args.resolve()?;
    init_logs(&s.log_level)?;
    if !s.sync_writes {
        warn!("--unsafe-no-fsync: acknowledged writes may be lost on power failure");
    }
    std::fs::create_dir_all(&s.data_dir)
        .with_context(|| format!("cannot create data directory {}", s.data_dir.display()))?;
    // Bind the client port first: a port in use fails before anything is stored.
    let listener = TcpListener::bind(s.meta.client_addr)
        .await
        .with_context(|| {
            format!(
                "cannot listen on client address {} (port in use?)",
                s.meta.client_addr
            )
        })?;
    let tc_listener = match s.meta.tc_addr {
        Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen on transaction coordinator address {addr} (port in use? --tc-addr off disables it)")
        })?),
        None => None,
    };
    let prometheus = crate::metrics_http::install()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let metrics_task = match s.metrics_addr {
        Some(addr) => Some(crate::metrics_http::serve(addr, prometheus, stop_rx.clone()).await?),
        None => None,
    };

    let mut cfg = NodeConfig::new(
        s.meta.node_id,
        s.data_dir.clone(),
        s.meta.raft_addr,
        s.meta.client_addr.to_string(),
    );
    cfg.initial_cluster = s.initial_cluster.clone();
    cfg.join = s.meta.join;
    cfg.regions = rhea_kv::even_split(s.meta.regions).map_err(anyhow::Error::msg)?;
    cfg.cluster_id = cluster_id(&s.meta.cluster_name);
    cfg.election_timeout_ms = s.election_timeout_ms;
    cfg.heartbeat_interval_ms = s.heartbeat_interval_ms;
    cfg.snapshot_every_entries = s.snapshot_every_entries;
    cfg.snapshot_throttle_bytes_per_sec = s.snapshot_throttle_bytes_per_sec;
    cfg.driver = DriverOptions {
        tick_interval_ms: s.tick_interval_ms,
        sync_writes: s.sync_writes,
        ..DriverOptions::default()
    };
    cfg.kv = KvOptions {
        limits: KvLimits {
            max_key_bytes: s.max_key_bytes,
            max_value_bytes: s.max_value_bytes,
            ..KvLimits::default()
        },
        debug_fail_read_index_every: s.debug_fail_read_index_every,
        ..KvOptions::default()
    };
    if s.debug_fail_read_index_every > 0 {
        warn!(
            every = s.debug_fail_read_index_every,
            "fault injection on: read index fails on purpose"
        );
    }
    let tc_cfg = match s.meta.tc_addr {
        Some(addr) => {
            let node_id = u16::try_from(s.meta.node_id).context(
                "a node that serves the transaction coordinator needs --node-id <= 65535",
            )?;
            let mut t = rhea_txn::tc::TcConfig::new(
                node_id,
                s.tc_advertise_addr
                    .clone()
                    .unwrap_or_else(|| addr.to_string()),
            );
            t.session_partitions = s.meta.tc_session_partitions;
            t.lock_partitions = s.meta.tc_lock_partitions;
            t.session.retry = s.tc_retry;
            t.branch_call_timeout_ms = s.tc_branch_call_timeout_ms;
            t.validate().map_err(anyhow::Error::msg)?;
            Some(t)
        }
        None => None,
    };
    let (groups, replicas) = match &tc_cfg {
        Some(t) => {
            let (g, r) = rhea_txn::tc::partition_machines(t).map_err(anyhow::Error::msg)?;
            (g, Some(r))
        }
        None => (Vec::new(), None),
    };
    let mut node = KvNode::start_with_groups(cfg, groups)
        .await
        .with_context(|| format!("starting node {}", s.meta.node_id))?;
    let tc = match (tc_cfg, replicas, tc_listener) {
        (Some(t), Some(r), Some(l)) => Some(
            rhea_txn::tc::TcServer::start(t, r, node.router().clone(), l)
                .map_err(anyhow::Error::msg)?,
        ),
        _ => None,
    };
    if !s.resumed {
        write_meta(&s.data_dir, &s.meta)?;
    } else {
        // Addresses given again may have changed.
        write_meta(&s.data_dir, &s.meta)?;
    }
    let resp_limits = rhea_kv::resp::RespLimits {
        max_request_bytes: s.max_request_bytes,
        ..Default::default()
    };
    let opts = ServerOptions {
        max_connections: s.max_connections,
        resp_limits,
        default_read_mode: s.default_read_mode,
        extension: tc.as_ref().map(|t| t.extension()),
        ..ServerOptions::default()
    };
    let info_text = {
        let s = s.clone();
        let raft = node.raft_addr();
        Arc::new(move || {
            format!(
                "rhea_version:{}\r\nnode_id:{}\r\nraft_addr:{raft}\r\nclient_addr:{}\r\ntc_addr:{}\r\ndata_dir:{}\r\nregions:{}\r\nsync_writes:{}\r\n",
                env!("CARGO_PKG_VERSION"),
                s.meta.node_id,
                s.meta.client_addr,
                s.meta
                    .tc_addr
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| "off".into()),
                s.data_dir.display(),
                s.meta.regions,
                s.sync_writes
            )
        }) as rhea_kv::server::InfoFn
    };
    rhea_kv::server::announce(&s.meta.client_addr);
    info!(
        node = s.meta.node_id,
        client = %s.meta.client_addr,
        raft = %node.raft_addr(),
        resumed = s.resumed,
        "rhea server ready"
    );
    let server = tokio::spawn(rhea_kv::serve(
        listener,
        node.router().clone(),
        opts,
        info_text,
        stop_rx,
    ));

    let fatal = tokio::select! {
        _ = shutdown_signal() => None,
        r = node.driver_stopped() => Some(r),
    };
    let _ = stop_tx.send(true);
    let _ = server.await;
    if let Some(tc) = tc {
        tc.shutdown().await;
    }
    if let Some(t) = metrics_task {
        let _ = t.await;
    }
    match fatal {
        Some(r) => {
            let _ = node.shutdown().await;
            match r {
                Ok(()) => anyhow::bail!("the raft driver stopped unexpectedly"),
                Err(e) => Err(e).context("the raft driver stopped"),
            }
        }
        None => {
            info!("shutting down");
            node.shutdown().await.context("shutting down")?;
            info!("stopped cleanly");
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => info!("SIGTERM received"),
                    _ = tokio::signal::ctrl_c() => info!("interrupt received"),
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
