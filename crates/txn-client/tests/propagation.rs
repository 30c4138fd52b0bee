//! The TM API and the template's six propagation modes against an in-memory
//! TC that records every call.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rhea_txn::protocol::{BranchStatus, BranchType, GlobalStatus, TransactionExceptionCode};
use rhea_txn_client::context::{self, LockRetryConfig};
use rhea_txn_client::tm::{self, execute};
use rhea_txn_client::{
    BoxFuture, GlobalTransaction, GlobalTransactionRole, Propagation, TcApi, TemplateError,
    TransactionInfo, TransactionalTemplate, TxnError,
};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Call {
    Begin(String),
    Commit(String),
    Rollback(String),
    Status(String),
}

#[derive(Default)]
struct FakeTc {
    calls: Mutex<Vec<Call>>,
    next: AtomicU32,
    /// Commits that fail with a transport error before one succeeds.
    commit_failures: AtomicU32,
    rollback_failures: AtomicU32,
    begin_fails: Mutex<bool>,
    /// The error the failing commits answer (default: transport).
    commit_error: Mutex<Option<TransactionExceptionCode>>,
    commit_status: Mutex<Option<GlobalStatus>>,
}

impl FakeTc {
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
    fn record(&self, c: Call) {
        self.calls.lock().unwrap().push(c);
    }
}

fn take_failure(n: &AtomicU32) -> bool {
    n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
        .is_ok()
}

impl TcApi for FakeTc {
    fn global_begin<'a>(
        &'a self,
        name: &'a str,
        _timeout_ms: u32,
    ) -> BoxFuture<'a, Result<String, TxnError>> {
        Box::pin(async move {
            if *self.begin_fails.lock().unwrap() {
                return Err(TxnError::Transport("down".into()));
            }
            let n = self.next.fetch_add(1, Ordering::SeqCst) + 1;
            let xid = format!("127.0.0.1:8091:{n}");
            self.record(Call::Begin(name.to_owned()));
            Ok(xid)
        })
    }

    fn global_commit<'a>(&'a self, xid: &'a str) -> BoxFuture<'a, Result<GlobalStatus, TxnError>> {
        Box::pin(async move {
            self.record(Call::Commit(xid.to_owned()));
            if take_failure(&self.commit_failures) {
                return Err(match *self.commit_error.lock().unwrap() {
                    Some(code) => TxnError::Tc {
                        code,
                        message: "tc".into(),
                    },
                    None => TxnError::Transport("lost".into()),
                });
            }
            Ok(self
                .commit_status
                .lock()
                .unwrap()
                .unwrap_or(GlobalStatus::Committed))
        })
    }

    fn global_rollback<'a>(
        &'a self,
        xid: &'a str,
    ) -> BoxFuture<'a, Result<GlobalStatus, TxnError>> {
        Box::pin(async move {
            self.record(Call::Rollback(xid.to_owned()));
            if take_failure(&self.rollback_failures) {
                return Err(TxnError::Timeout(1));
            }
            Ok(GlobalStatus::Rollbacked)
        })
    }

    fn global_status<'a>(&'a self, xid: &'a str) -> BoxFuture<'a, Result<GlobalStatus, TxnError>> {
        Box::pin(async move {
            self.record(Call::Status(xid.to_owned()));
            Ok(GlobalStatus::Begin)
        })
    }

    fn branch_register<'a>(
        &'a self,
        _: BranchType,
        _: &'a str,
        _: &'a str,
        _: &'a str,
        _: Option<&'a str>,
    ) -> BoxFuture<'a, Result<i64, TxnError>> {
        Box::pin(async { Ok(1) })
    }

    fn branch_report<'a>(
        &'a self,
        _: BranchType,
        _: &'a str,
        _: i64,
        _: BranchStatus,
        _: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), TxnError>> {
        Box::pin(async { Ok(()) })
    }

    fn global_lock_query<'a>(
        &'a self,
        _: BranchType,
        _: Option<&'a str>,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<bool, TxnError>> {
        Box::pin(async { Ok(true) })
    }
}

fn setup() -> (Arc<FakeTc>, Arc<dyn TcApi>) {
    let fake = Arc::new(FakeTc::default());
    let tc: Arc<dyn TcApi> = fake.clone();
    (fake, tc)
}

fn info(p: Propagation) -> TransactionInfo {
    TransactionInfo::named("t").with_propagation(p)
}

const X1: &str = "127.0.0.1:8091:1";
const X2: &str = "127.0.0.1:8091:2";

#[tokio::test]
async fn required_without_tx_begins_and_commits() {
    let (fake, tc) = setup();
    let seen = execute(&tc, &info(Propagation::Required), || async {
        Ok::<_, String>(context::current_xid())
    })
    .await
    .unwrap();
    assert_eq!(seen.as_deref(), Some(X1));
    assert_eq!(
        fake.calls(),
        vec![Call::Begin("t".into()), Call::Commit(X1.into())]
    );
    assert_eq!(context::current_xid(), None);
}

#[tokio::test]
async fn required_inside_required_joins_and_only_the_outer_commits() {
    let (fake, tc) = setup();
    let tc2 = tc.clone();
    let (outer, inner) = execute(&tc, &info(Propagation::Required), || async move {
        let outer = context::current_xid();
        let inner = execute(&tc2, &info(Propagation::Required), || async {
            Ok::<_, String>(context::current_xid())
        })
        .await
        .map_err(|e| e.to_string())?;
        Ok::<_, String>((outer, inner))
    })
    .await
    .unwrap();
    assert_eq!(outer.as_deref(), Some(X1));
    assert_eq!(inner.as_deref(), Some(X1));
    assert_eq!(
        fake.calls(),
        vec![Call::Begin("t".into()), Call::Commit(X1.into())]
    );
}

#[tokio::test]
async fn requires_new_inside_required_begins_a_second_tx_and_restores_the_outer() {
    let (fake, tc) = setup();
    let tc2 = tc.clone();
    let (inner, after) = execute(&tc, &info(Propagation::Required), || async move {
        let inner = execute(&tc2, &info(Propagation::RequiresNew), || async {
            Ok::<_, String>(context::current_xid())
        })
        .await
        .map_err(|e| e.to_string())?;
        Ok::<_, String>((inner, context::current_xid()))
    })
    .await
    .unwrap();
    assert_eq!(inner.as_deref(), Some(X2));
    assert_eq!(after.as_deref(), Some(X1));
    assert_eq!(
        fake.calls(),
        vec![
            Call::Begin("t".into()),
            Call::Begin("t".into()),
            Call::Commit(X2.into()),
            Call::Commit(X1.into()),
        ]
    );
}

#[tokio::test]
async fn requires_new_inner_failure_rolls_back_only_the_inner() {
    let (fake, tc) = setup();
    let tc2 = tc.clone();
    execute(&tc, &info(Propagation::Required), || async move {
        let r = execute(&tc2, &info(Propagation::RequiresNew), || async {
            Err::<(), _>("inner failed".to_owned())
        })
        .await;
        assert!(matches!(r, Err(TemplateError::Business(ref m)) if m == "inner failed"));
        Ok::<_, String>(())
    })
    .await
    .unwrap();
    assert_eq!(
        fake.calls(),
        vec![
            Call::Begin("t".into()),
            Call::Begin("t".into()),
            Call::Rollback(X2.into()),
            Call::Commit(X1.into()),
        ]
    );
}

#[tokio::test]
async fn not_supported_hides_the_xid_and_restores_it() {
    let (fake, tc) = setup();
    let tc2 = tc.clone();
    let (inside, after) = execute(&tc, &info(Propagation::Required), || async move {
        let inside = execute(&tc2, &info(Propagation::NotSupported), || async {
            Ok::<_, String>(context::current_xid())
        })
        .await
        .map_err(|e| e.to_string())?;
        Ok::<_, String>((inside, context::current_xid()))
    })
    .await
    .unwrap();
    assert_eq!(inside, None);
    assert_eq!(after.as_deref(), Some(X1));
    assert_eq!(fake.calls().len(), 2);
}

#[tokio::test]
async fn not_supported_without_tx_runs_without() {
    let (fake, tc) = setup();
    let r = execute(&tc, &info(Propagation::NotSupported), || async {
        Err::<(), _>("boom".to_owned())
    })
    .await;
    assert!(matches!(r, Err(TemplateError::Business(_))));
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn supports_joins_or_runs_without() {
    let (fake, tc) = setup();
    let outside = execute(&tc, &info(Propagation::Supports), || async {
        Ok::<_, String>(context::current_xid())
    })
    .await
    .unwrap();
    assert_eq!(outside, None);
    assert!(fake.calls().is_empty());

    let joined = context::scope(Some("a:1:7".into()), async {
        execute(&tc, &info(Propagation::Supports), || async {
            Ok::<_, String>(context::current_xid())
        })
        .await
    })
    .await
    .unwrap();
    assert_eq!(joined.as_deref(), Some("a:1:7"));
    assert!(
        fake.calls().is_empty(),
        "a participant never talks to the TC"
    );
}

#[tokio::test]
async fn never_fails_inside_a_tx_and_runs_outside() {
    let (fake, tc) = setup();
    let ran = Arc::new(AtomicU32::new(0));
    let r = context::scope(Some("a:1:7".into()), async {
        execute(&tc, &info(Propagation::Never), || async {
            ran.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>(())
        })
        .await
    })
    .await;
    assert!(matches!(
        r,
        Err(TemplateError::Propagation(TxnError::Propagation(_)))
    ));
    assert_eq!(ran.load(Ordering::SeqCst), 0);

    let seen = execute(&tc, &info(Propagation::Never), || async {
        Ok::<_, String>(context::current_xid())
    })
    .await
    .unwrap();
    assert_eq!(seen, None);
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn mandatory_fails_outside_a_tx_and_joins_inside() {
    let (fake, tc) = setup();
    let r = execute(&tc, &info(Propagation::Mandatory), || async {
        Ok::<_, String>(())
    })
    .await;
    assert!(matches!(
        r,
        Err(TemplateError::Propagation(TxnError::Propagation(_)))
    ));

    let tc2 = tc.clone();
    let seen = execute(&tc, &info(Propagation::Required), || async move {
        execute(&tc2, &info(Propagation::Mandatory), || async {
            Ok::<_, String>(context::current_xid())
        })
        .await
        .map_err(|e| e.to_string())
    })
    .await
    .unwrap();
    assert_eq!(seen.as_deref(), Some(X1));
    assert_eq!(fake.calls().len(), 2);
}

#[tokio::test]
async fn business_error_rolls_back_and_is_returned() {
    let (fake, tc) = setup();
    let r = execute(&tc, &info(Propagation::Required), || async {
        Err::<(), _>("insufficient stock".to_owned())
    })
    .await;
    match r {
        Err(TemplateError::Business(e)) => assert_eq!(e, "insufficient stock"),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        fake.calls(),
        vec![Call::Begin("t".into()), Call::Rollback(X1.into())]
    );
}

#[tokio::test]
async fn participant_error_is_rolled_back_once_by_the_launcher() {
    let (fake, tc) = setup();
    let tc2 = tc.clone();
    let r = execute(&tc, &info(Propagation::Required), || async move {
        execute(&tc2, &info(Propagation::Required), || async {
            Err::<(), _>("inner".to_owned())
        })
        .await
        .map_err(|e| e.into_business().unwrap_or_default())
    })
    .await;
    assert!(matches!(r, Err(TemplateError::Business(ref e)) if e == "inner"));
    assert_eq!(
        fake.calls(),
        vec![Call::Begin("t".into()), Call::Rollback(X1.into())]
    );
}

#[tokio::test]
async fn begin_failure_does_not_run_the_business() {
    let (fake, tc) = setup();
    *fake.begin_fails.lock().unwrap() = true;
    let ran = AtomicU32::new(0);
    let r = execute(&tc, &info(Propagation::Required), || async {
        ran.fetch_add(1, Ordering::SeqCst);
        Ok::<_, String>(())
    })
    .await;
    assert!(matches!(
        r,
        Err(TemplateError::Begin(TxnError::Transport(_)))
    ));
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn commit_reporting_a_rollback_is_ended() {
    let (fake, tc) = setup();
    *fake.commit_status.lock().unwrap() = Some(GlobalStatus::TimeoutRollbacking);
    let r = execute(&tc, &info(Propagation::Required), || async {
        Ok::<_, String>(())
    })
    .await;
    match r {
        Err(TemplateError::Commit(TxnError::Ended { xid, status })) => {
            assert_eq!(xid, X1);
            assert_eq!(status, GlobalStatus::TimeoutRollbacking);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn async_committing_is_success() {
    let (fake, tc) = setup();
    *fake.commit_status.lock().unwrap() = Some(GlobalStatus::AsyncCommitting);
    execute(&tc, &info(Propagation::Required), || async {
        Ok::<_, String>(())
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn commit_is_retried_on_transport_errors_up_to_the_retry_count() {
    let (fake, tc) = setup();
    fake.commit_failures.store(2, Ordering::SeqCst);
    execute(&tc, &info(Propagation::Required), || async {
        Ok::<_, String>(())
    })
    .await
    .unwrap();
    assert_eq!(fake.calls().len(), 1 + 3);

    let (fake, tc) = setup();
    fake.commit_failures.store(100, Ordering::SeqCst);
    let r = execute(&tc, &info(Propagation::Required), || async {
        Ok::<_, String>(())
    })
    .await;
    assert!(matches!(
        r,
        Err(TemplateError::Commit(TxnError::Transport(_)))
    ));
    assert_eq!(
        fake.calls().len(),
        1 + tm::DEFAULT_COMMIT_RETRY_COUNT as usize
    );
}

#[tokio::test]
async fn commit_is_retried_on_transient_tc_failures_only() {
    let (fake, tc) = setup();
    fake.commit_failures.store(2, Ordering::SeqCst);
    *fake.commit_error.lock().unwrap() = Some(TransactionExceptionCode::FailedStore);
    execute(&tc, &info(Propagation::Required), || async {
        Ok::<_, String>(())
    })
    .await
    .unwrap();
    assert_eq!(fake.calls().len(), 1 + 3);

    let (fake, tc) = setup();
    fake.commit_failures.store(2, Ordering::SeqCst);
    *fake.commit_error.lock().unwrap() = Some(TransactionExceptionCode::GlobalTransactionNotExist);
    let r = execute(&tc, &info(Propagation::Required), || async {
        Ok::<_, String>(())
    })
    .await;
    assert!(matches!(
        r,
        Err(TemplateError::Commit(TxnError::Tc {
            code: TransactionExceptionCode::GlobalTransactionNotExist,
            ..
        }))
    ));
    assert_eq!(fake.calls().len(), 1 + 1);
}

#[tokio::test]
async fn rollback_failure_keeps_the_business_error() {
    let (fake, tc) = setup();
    fake.rollback_failures.store(100, Ordering::SeqCst);
    let r = execute(&tc, &info(Propagation::Required), || async {
        Err::<(), _>("bad".to_owned())
    })
    .await;
    match r {
        Err(TemplateError::RollbackFailed { business, error }) => {
            assert_eq!(business, "bad");
            assert!(matches!(error, TxnError::Timeout(_)));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        fake.calls().len(),
        1 + tm::DEFAULT_ROLLBACK_RETRY_COUNT as usize
    );
}

#[tokio::test]
async fn business_outlasting_the_timeout_is_rolled_back() {
    let (fake, tc) = setup();
    let info = info(Propagation::Required).with_timeout_ms(5);
    let r = execute(&tc, &info, || async {
        tokio::time::sleep(Duration::from_millis(30)).await;
        Ok::<_, String>(())
    })
    .await;
    assert!(matches!(
        r,
        Err(TemplateError::Commit(TxnError::Ended {
            status: GlobalStatus::Rollbacked,
            ..
        }))
    ));
    assert_eq!(
        fake.calls(),
        vec![Call::Begin("t".into()), Call::Rollback(X1.into())]
    );
}

#[tokio::test]
async fn template_struct_and_lock_retry_config() {
    let (_fake, tc) = setup();
    let template = TransactionalTemplate::new(tc);
    let mut info = TransactionInfo::named("t");
    let cfg = LockRetryConfig {
        interval_ms: 5,
        times: 3,
    };
    info.lock_retry = Some(cfg);
    let seen = template
        .execute(&info, || async {
            Ok::<_, String>(context::lock_retry_config())
        })
        .await
        .unwrap();
    assert_eq!(seen, Some(cfg));
}

#[tokio::test]
async fn global_transaction_begin_suspend_resume_commit() {
    let (fake, tc) = setup();
    context::scope(None, async {
        let mut tx = GlobalTransaction::new(tc.clone());
        assert_eq!(tx.role(), GlobalTransactionRole::Launcher);
        assert_eq!(tx.local_status(), GlobalStatus::UnKnown);
        tx.begin(1000, "g").await.unwrap();
        assert_eq!(tx.xid(), Some(X1));
        assert_eq!(context::current_xid().as_deref(), Some(X1));
        assert_eq!(tx.status().await.unwrap(), GlobalStatus::Begin);

        // A second begin, or a begin while the context holds an XID, fails.
        assert!(matches!(
            tx.begin(1000, "g").await,
            Err(TxnError::Propagation(_))
        ));
        let mut other = GlobalTransaction::new(tc.clone());
        assert!(matches!(
            other.begin(1000, "g").await,
            Err(TxnError::Propagation(_))
        ));

        let suspended = tx.suspend();
        assert_eq!(suspended.as_ref().map(|s| s.xid()), Some(X1));
        assert_eq!(context::current_xid(), None);
        assert!(tm::suspend().is_none());
        tx.resume(suspended).unwrap();
        assert_eq!(context::current_xid().as_deref(), Some(X1));

        assert_eq!(tx.commit().await.unwrap(), GlobalStatus::Committed);
        assert_eq!(context::current_xid(), None, "commit unbinds");
    })
    .await;
    assert_eq!(
        fake.calls(),
        vec![
            Call::Begin("g".into()),
            Call::Status(X1.into()),
            Call::Commit(X1.into())
        ]
    );
}

#[tokio::test]
async fn participant_begin_commit_rollback_do_nothing() {
    let (fake, tc) = setup();
    context::scope(Some("a:1:9".into()), async {
        let mut tx = GlobalTransaction::current(tc.clone()).unwrap();
        assert_eq!(tx.role(), GlobalTransactionRole::Participant);
        tx.begin(1000, "x").await.unwrap();
        tx.commit().await.unwrap();
        tx.rollback().await.unwrap();
        assert_eq!(context::current_xid().as_deref(), Some("a:1:9"));
    })
    .await;
    assert!(GlobalTransaction::current(tc.clone()).is_none());
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn reloaded_transaction_rolls_back_but_cannot_begin() {
    let (fake, tc) = setup();
    let mut tx = GlobalTransaction::reload(tc, "a:1:5");
    assert!(matches!(
        tx.begin(1, "x").await,
        Err(TxnError::Propagation(_))
    ));
    assert_eq!(tx.rollback().await.unwrap(), GlobalStatus::Rollbacked);
    assert_eq!(fake.calls(), vec![Call::Rollback("a:1:5".into())]);
}

#[tokio::test]
async fn header_round_trip() {
    let header = context::scope(Some(X1.into()), async { context::outgoing_header() }).await;
    let (name, value) = header.unwrap();
    assert_eq!(name, context::XID_HEADER);
    let seen = context::scope_from_header(Some(&value), async { context::current_xid() })
        .await
        .unwrap();
    assert_eq!(seen.as_deref(), Some(X1));

    let none = context::scope_from_header(Some("  "), async { context::current_xid() })
        .await
        .unwrap();
    assert_eq!(none, None);
    let none = context::scope_from_header(None, async { context::current_xid() })
        .await
        .unwrap();
    assert_eq!(none, None);

    assert!(context::parse_xid_header(Some("a b")).is_err());
    assert!(context::parse_xid_header(Some("a\u{0}b")).is_err());
    let long = "x".repeat(context::MAX_XID_BYTES + 1);
    assert!(
        context::scope_from_header(Some(&long), async {})
            .await
            .is_err()
    );
    assert_eq!(context::outgoing_header(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_does_not_leak_between_tasks() {
    let (_fake, tc) = setup();
    // A task spawned inside a scope does not inherit its XID.
    let spawned = context::scope(Some(X1.into()), async {
        tokio::spawn(async { context::current_xid() })
            .await
            .unwrap()
    })
    .await;
    assert_eq!(spawned, None);

    // Concurrent transactions on separate tasks each see their own XID
    // across await points.
    let mut handles = Vec::new();
    for _ in 0..8 {
        let tc = tc.clone();
        handles.push(tokio::spawn(async move {
            execute(&tc, &info(Propagation::Required), || async {
                let before = context::current_xid();
                for _ in 0..5 {
                    tokio::task::yield_now().await;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                let after = context::current_xid();
                Ok::<_, String>((before, after))
            })
            .await
            .unwrap()
        }));
    }
    let mut seen = Vec::new();
    for h in handles {
        let (before, after) = h.await.unwrap();
        assert_eq!(before, after);
        seen.push(before.unwrap());
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 8);
}
