//! The phase-two worker of one node. For every session partition this node
//! leads it
//! * sends the due `BranchCommit` / `BranchRollback` requests (at most
//!   `phase_two_concurrency` in flight, never the same item twice at once)
//!   and proposes their outcomes;
//! * drains the lock-release outbox (releases the answers called for but
//!   that failed or were interrupted, e.g. by a leader change);
//! * proposes `TimeoutCheck` every `timeout_check_interval_ms` when some
//!   session may have timed out or is retrying.
//!
//! A new leader finds the due work in its replica, so an election loses
//! nothing; resending an item another node already sent is harmless
//! (phase two is idempotent at the RM).

use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, warn};

use super::machine::lock_shared;
use super::service::Coordinator;
use crate::coordinator::{LockRelease, PhaseTwoWork, SessionAnswer, SessionCommand};

pub(crate) async fn run(tc: Coordinator, mut stop: watch::Receiver<bool>) {
    let cfg = tc.config().clone();
    let tick = Duration::from_millis(cfg.worker_interval_ms.max(1));
    let mut last_timeout_check = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tc.0.wake.notified() => {}
            _ = tokio::time::sleep(tick) => {}
        }
        if *stop.borrow() {
            return;
        }
        let check_timeouts =
            last_timeout_check.elapsed() >= Duration::from_millis(cfg.timeout_check_interval_ms);
        if check_timeouts {
            last_timeout_check = tokio::time::Instant::now();
        }
        let now = super::service::now_ms();
        for p in 0..cfg.session_partitions {
            if !tc.leads_session(p) {
                continue;
            }
            let Some(shared) = tc.0.sessions.get(p as usize) else {
                continue;
            };
            let (due, releases, needs_check) = {
                let part = lock_shared(shared);
                let due = part.due_phase_two(now);
                let releases: Vec<LockRelease> = part.pending_lock_releases().cloned().collect();
                let needs_check = check_timeouts
                    && (!part.sessions_to_timeout(now).is_empty()
                        || part.next_phase_two_due_ms().is_some());
                (due, releases, needs_check)
            };
            for r in releases {
                spawn_release(&tc, p, r);
            }
            for w in due {
                spawn_phase_two(&tc, p, w);
            }
            if needs_check {
                let tc2 = tc.clone();
                tokio::spawn(async move {
                    let cmd = SessionCommand::TimeoutCheck {
                        now_ms: super::service::now_ms(),
                    };
                    match tc2.session(p, &cmd).await {
                        Ok(a) => {
                            if let SessionAnswer::TimeoutChecked {
                                timed_out,
                                retry_timed_out,
                                ..
                            } = &a
                            {
                                for xid in timed_out {
                                    warn!(%xid, "global transaction timed out; rolling back");
                                }
                                for xid in retry_timed_out {
                                    warn!(%xid, "global transaction gave up retrying phase two (final status kept; see docs/tc-state-machine.md)");
                                }
                            }
                            tc2.do_lock_work(p, a.lock_work()).await;
                            tc2.0.wake.notify_one();
                        }
                        Err(e) => debug!(partition = p, error = %e, "timeout check failed"),
                    }
                });
            }
        }
    }
}

fn spawn_release(tc: &Coordinator, p: u32, r: LockRelease) {
    let key = (p, r.release_id);
    if !lock_shared(&tc.0.releases_in_flight).insert(key) {
        return;
    }
    let tc = tc.clone();
    tokio::spawn(async move {
        if let Err(e) = tc.release(p, &r).await {
            debug!(release = r.release_id, error = %e, "lock release failed; retrying later");
        }
        lock_shared(&tc.0.releases_in_flight).remove(&key);
    });
}

fn spawn_phase_two(tc: &Coordinator, p: u32, w: PhaseTwoWork) {
    let key = (w.xid.clone(), w.branch_id);
    if !lock_shared(&tc.0.in_flight).insert(key.clone()) {
        return;
    }
    let Ok(permit) = tc.0.phase_two_permits.clone().try_acquire_owned() else {
        lock_shared(&tc.0.in_flight).remove(&key);
        return;
    };
    let tc = tc.clone();
    tokio::spawn(async move {
        if let Err(e) = tc.phase_two(p, &w).await {
            debug!(xid = %w.xid, branch = w.branch_id, error = %e, "phase two not recorded; retrying later");
        }
        lock_shared(&tc.0.in_flight).remove(&key);
        drop(permit);
        tc.0.wake.notify_one();
    });
}
