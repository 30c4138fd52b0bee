//! Process-level tests of the transaction coordinator served by `rhea
//! server` and of `rhea txn bank` (AT mode over the PostgreSQL and MariaDB
//! of this machine): the bank's total holds, and no undo log or row lock is
//! left, when TC nodes are killed mid-run and when the application (the RM)
//! is killed between the phases and restarted.
//!
//! Each test uses its own bank table and its own TC addresses (undo logs
//! are told apart by the XID prefix), so they may run in parallel.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Cluster, run_cli};

use common::BIN;
const PORTS_BANK_KILL_TC: u16 = 0;
const PORTS_RM_RESTART: u16 = 2;
const PORTS_JOIN: u16 = 4;

fn bank_args(tc: &str, table: &str, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "txn",
        "bank",
        "--tc",
        tc,
        "--table",
        table,
        "--accounts",
        "20",
        "--concurrency",
        "6",
        "--abort-ratio",
        "0.2",
        "--settle-timeout-ms",
        "60000",
        "--quiet",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn spawn_bank(args: &[String]) -> Child {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Wait for the bank to exit (killing it after `within`); its status and
/// output.
fn wait_bank(mut child: Child, within: Duration) -> (bool, String) {
    let deadline = Instant::now() + within;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn tc_list(c: &Cluster) -> String {
    c.ids()
        .iter()
        .map(|&i| c.tc_addr(i).to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Transfers run through a 3-node TC while each node in turn is killed with
/// SIGKILL and restarted: sessions, branches and locks live on raft, so the
/// total holds and phase two completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_total_holds_while_tc_nodes_are_killed() {
    let mut c = Cluster::new(
        "txn-kill-tc",
        3,
        PORTS_BANK_KILL_TC,
        &["--tc-session-partitions", "2", "--tc-lock-partitions", "2"],
    );
    c.start_all();
    c.wait_ready(&[1, 2, 3], &[b"warm"], Duration::from_secs(20))
        .await;
    let tc = tc_list(&c);
    let bank = spawn_bank(&bank_args(
        &tc,
        "rhea_it_bank_kill_tc",
        &["--transfers", "2500", "--reset", "--timeout-ms", "20000"],
    ));
    // Kill every node in turn mid-run (each leads some partitions).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut bank = bank;
    for id in [1u64, 2, 3] {
        c.kill9(id);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        c.start(id);
        tokio::time::sleep(Duration::from_millis(2000)).await;
        if bank.try_wait().unwrap().is_some() {
            eprintln!("the bank finished before node {id} was killed again");
            break;
        }
    }
    let (ok, out) = wait_bank(bank, Duration::from_secs(240));
    assert!(
        ok,
        "bank failed while TC nodes were killed:\n{out}\n{}",
        c.log_tails(40)
    );
    assert!(out.contains("OK: the total holds"), "{out}");
    assert!(
        out.contains("phase two: 0 undo logs pending in PostgreSQL, 0 in MariaDB"),
        "{out}"
    );
    assert!(
        out.contains("locks: 0 account batches still locked"),
        "{out}"
    );
    c.finish();
}

/// The application is frozen (SIGSTOP) and then killed with SIGKILL while
/// its global transactions are between phase one and phase two; a
/// restarted RM receives the pending phase two (rollbacks of the timed-out
/// transactions, undo-log deletes of the committed ones) and the total
/// holds with nothing left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rm_killed_between_phases_recovers_on_restart() {
    let mut c = Cluster::new(
        "txn-rm-restart",
        1,
        PORTS_RM_RESTART,
        &[
            "--tc-retry-interval-ms",
            "200",
            "--tc-branch-call-timeout-ms",
            "1000",
        ],
    );
    c.start_all();
    c.wait_ready(&[1], &[b"warm"], Duration::from_secs(20))
        .await;
    let tc = tc_list(&c);
    let table = "rhea_it_bank_rm_restart";
    let bank = spawn_bank(&bank_args(
        &tc,
        table,
        &["--transfers", "100000", "--reset", "--timeout-ms", "3000"],
    ));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let pid = bank.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    // Phase-two calls to the frozen RM time out and are retried.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut bank = bank;
    let _ = bank.kill();
    let (_, first) = wait_bank(bank, Duration::from_secs(5));
    let check = spawn_bank(&bank_args(&tc, table, &["--transfers", "0"]));
    let (ok, out) = wait_bank(check, Duration::from_secs(120));
    assert!(
        ok,
        "settling after the RM restart failed:\n{out}\nfirst run:\n{first}\n{}",
        c.log_tails(40)
    );
    assert!(out.contains("OK: the total holds"), "{out}");
    assert!(
        out.contains("locks: 0 account batches still locked"),
        "{out}"
    );
    c.finish();
}

/// `rhea admin add-learner --all` then `add-peer --all` bring a node that
/// joined with `--join` into every region and TC group (regression test:
/// registering the node's address for a TC group made the CLI bounce
/// between the group's leader and the first region's leader), after which
/// the new node serves as a TC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joined_node_added_to_all_groups_serves_the_tc() {
    let mut c = Cluster::new(
        "txn-join",
        3,
        PORTS_JOIN,
        &["--tc-session-partitions", "2", "--tc-lock-partitions", "2"],
    );
    c.start_all();
    c.wait_ready(&[1, 2, 3], &[b"warm"], Duration::from_secs(20))
        .await;
    let initial = c.initial_cluster();
    c.define(
        4,
        &initial,
        &[
            "--join",
            "--tc-session-partitions",
            "2",
            "--tc-lock-partitions",
            "2",
        ],
    );
    c.start(4);
    let raft4 = c.node(4).raft.to_string();
    let a1 = c.client_addr(1).to_string();
    for cmd in ["add-learner", "add-peer"] {
        let (st, out, err) = run_cli(
            [
                "admin",
                "--addr",
                &a1,
                cmd,
                "--all",
                "--node",
                "4",
                "--raft-addr",
                &raft4,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        )
        .await;
        assert!(
            st.success(),
            "{cmd} --all failed: {out}\n{err}\n{}",
            c.log_tails(30)
        );
        // 1 region and 2 + 2 TC groups.
        assert_eq!(
            out.lines().filter(|l| l.starts_with("OK")).count(),
            5,
            "{out}"
        );
    }
    let (st, out, _) = run_cli(
        ["admin", "--addr", &a1, "leaders"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    )
    .await;
    assert!(st.success());
    for g in ["1 ", "1000000", "1000001", "2000000", "2000001"] {
        let row = out
            .lines()
            .find(|l| l.starts_with(g))
            .unwrap_or_else(|| panic!("no row for {g}: {out}"));
        assert!(row.contains("1,2,3,4"), "{row}");
    }
    let tc4 = c.tc_addr(4).to_string();
    let bank = spawn_bank(&bank_args(
        &tc4,
        "rhea_it_bank_join",
        &["--transfers", "200", "--reset"],
    ));
    let (ok, out) = wait_bank(bank, Duration::from_secs(120));
    assert!(
        ok,
        "bank through the joined node failed:\n{out}\n{}",
        c.log_tails(30)
    );
    assert!(out.contains("OK: the total holds"), "{out}");
    c.finish();
}
