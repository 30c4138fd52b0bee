//! AT mode against the real databases (PostgreSQL on 127.0.0.1:5432,
//! MariaDB on 127.0.0.1:3306), with an in-memory TC. Every scenario runs on
//! both; each test uses its own tables and XIDs, `undo_log` is shared.

mod fake_tc;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use fake_tc::FakeTc;
use rhea_txn::protocol::BranchStatus;
use rhea_txn_at::{AtDataSource, AtError, AtOptions, Rows};
use rhea_txn_client::{ResourceManager, context};

const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const MY_URL: &str = "mysql://root@127.0.0.1:3306/test";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Db {
    Pg,
    My,
}

type TestResult = Result<(), AtError>;

fn options() -> AtOptions {
    AtOptions {
        max_connections: 4,
        lock_retry_times: 3,
        lock_retry_interval_ms: 1,
        ..AtOptions::default()
    }
}

async fn open(db: Db, tc: Arc<FakeTc>, opts: AtOptions) -> Result<AtDataSource, AtError> {
    match db {
        Db::Pg => AtDataSource::postgres(PG_URL, tc, opts).await,
        Db::My => AtDataSource::mysql(MY_URL, tc, opts).await,
    }
}

fn xid(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("127.0.0.1:8091:{name}-{}-{nanos}", std::process::id())
}

/// Plain local transaction (no XID bound).
async fn plain(ds: &AtDataSource, sql: &str) -> Result<u64, AtError> {
    let mut tx = ds.begin().await?;
    let n = tx.execute(sql).await?;
    tx.commit().await?;
    Ok(n)
}

async fn query(ds: &AtDataSource, sql: &str) -> Result<Rows, AtError> {
    let mut tx = ds.begin().await?;
    let rows = tx.query(sql).await?;
    tx.rollback().await?;
    Ok(rows)
}

/// The rows of a table, ordered, as text.
async fn dump(
    ds: &AtDataSource,
    table: &str,
    order: &str,
) -> Result<Vec<Vec<Option<String>>>, AtError> {
    Ok(
        query(ds, &format!("SELECT * FROM {table} ORDER BY {order}"))
            .await?
            .rows,
    )
}

/// `log_status` of the undo log rows of `xid`.
async fn undo_rows(ds: &AtDataSource, xid: &str) -> Result<Vec<String>, AtError> {
    let rows = query(
        ds,
        &format!("SELECT log_status FROM undo_log WHERE xid = '{xid}' ORDER BY branch_id"),
    )
    .await?;
    Ok(rows
        .rows
        .into_iter()
        .map(|r| r.into_iter().next().flatten().unwrap_or_default())
        .collect())
}

/// One local transaction of the global transaction `xid` running `sqls`.
async fn branch(ds: &AtDataSource, xid: &str, sqls: &[&str]) -> Result<u64, AtError> {
    let sqls: Vec<String> = sqls.iter().map(|s| s.to_string()).collect();
    context::scope(Some(xid.to_owned()), async {
        ds.run(|tx| {
            let sqls = sqls.clone();
            Box::pin(async move {
                let mut n = 0;
                for s in &sqls {
                    n += tx.execute(s).await?;
                }
                Ok(n)
            })
        })
        .await
    })
    .await
}

/// A fresh table: `DROP` then `CREATE` (columns in generic SQL).
async fn table(ds: &AtDataSource, name: &str, columns: &str, rows: &[&str]) -> TestResult {
    plain(ds, &format!("DROP TABLE IF EXISTS {name}")).await?;
    plain(ds, &format!("CREATE TABLE {name} ({columns})")).await?;
    for r in rows {
        plain(ds, &format!("INSERT INTO {name} VALUES ({r})")).await?;
    }
    Ok(())
}

/// Remove the undo log rows a test left behind on purpose (defensive rows,
/// branches never finished), so the shared table does not grow.
async fn forget(ds: &AtDataSource, xids: &[&str]) -> TestResult {
    ds.flush_undo_deletes().await?;
    for x in xids {
        plain(ds, &format!("DELETE FROM undo_log WHERE xid = '{x}'")).await?;
    }
    Ok(())
}

fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

fn only_branch(tc: &FakeTc, xid: &str) -> i64 {
    let regs = tc.registrations(xid);
    assert_eq!(regs.len(), 1, "one registration expected: {regs:?}");
    regs[0].branch_id.expect("registered")
}

const ACCOUNT: &str = "id INT PRIMARY KEY, name VARCHAR(64), balance INT";

async fn commit_keeps_data_and_deletes_undo_log(db: Db) -> TestResult {
    let tc = Arc::new(FakeTc::new());
    let ds = open(db, tc.clone(), options()).await?;
    let t = "at_t_commit";
    table(&ds, t, ACCOUNT, &["1, 'a', 100", "2, 'b', 50"]).await?;
    let x = xid("commit");
    let n = branch(
        &ds,
        &x,
        &[&format!(
            "UPDATE {t} SET balance = balance - 10 WHERE id = 1"
        )],
    )
    .await?;
    assert_eq!(n, 1);
    let regs = tc.registrations(&x);
    assert_eq!(regs.len(), 1);
    assert_eq!(regs[0].lock_key, format!("{t}:1"));
    assert_eq!(regs[0].resource_id, ds.resource_id());
    let bid = only_branch(&tc, &x);
    assert_eq!(undo_rows(&ds, &x).await?, vec!["0"]);
    assert_eq!(
        ds.branch_commit(&x, bid, None).await,
        BranchStatus::PhaseTwoCommitted
    );
    ds.flush_undo_deletes().await?;
    assert!(undo_rows(&ds, &x).await?.is_empty());
    assert_eq!(dump(&ds, t, "id").await?[0], vec![s("1"), s("a"), s("90")]);
    // Idempotent.
    assert_eq!(
        ds.branch_commit(&x, bid, None).await,
        BranchStatus::PhaseTwoCommitted
    );
    ds.flush_undo_deletes().await?;
    Ok(())
}

async fn rollback_restores_update_insert_delete(db: Db) -> TestResult {
    let tc = Arc::new(FakeTc::new());
    let ds = open(db, tc.clone(), options()).await?;
    let t = "at_t_rollback";
    table(
        &ds,
        t,
        ACCOUNT,
        &["1, 'a', 100", "2, 'it''s', 50", "3, NULL, 7"],
    )
    .await?;
    let original = dump(&ds, t, "id").await?;
    let x = xid("rollback");
    branch(
        &ds,
        &x,
        &[
            &format!("UPDATE {t} SET balance = balance + 1, name = 'x''y' WHERE id IN (1, 2)"),
            &format!("INSERT INTO {t} (id, name, balance) VALUES (10, 'new', 1), (11, NULL, 2)"),
            &format!("DELETE FROM {t} WHERE id = 3"),
        ],
    )
    .await?;
    let bid = only_branch(&tc, &x);
    assert_eq!(tc.registrations(&x)[0].lock_key, format!("{t}:1,10,11,2,3"));
    assert_ne!(dump(&ds, t, "id").await?, original);
    assert_eq!(
        ds.branch_rollback(&x, bid, None).await,
        BranchStatus::PhaseTwoRollbacked
    );
    assert_eq!(dump(&ds, t, "id").await?, original);
    assert!(undo_rows(&ds, &x).await?.is_empty());
    // Idempotent: a second rollback leaves the defensive row, data untouched.
    assert_eq!(
        ds.branch_rollback(&x, bid, None).await,
        BranchStatus::PhaseTwoRollbacked
    );
    assert_eq!(dump(&ds, t, "id").await?, original);
    assert_eq!(undo_rows(&ds, &x).await?, vec!["1"]);
    forget(&ds, &[&x]).await?;
    Ok(())
}

async fn rollback_of_generated_keys(db: Db) -> TestResult {
    let tc = Arc::new(FakeTc::new());
    let ds = open(db, tc.clone(), options()).await?;
    let t = "at_t_genkey";
    let cols = match db {
        Db::Pg => "id SERIAL PRIMARY KEY, name VARCHAR(64)",
        Db::My => "id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(64)",
    };
    table(&ds, t, cols, &[]).await?;
    plain(&ds, &format!("INSERT INTO {t} (name) VALUES ('keep')")).await?;
    let x = xid("genkey");
    let n = branch(
        &ds,
        &x,
        &[&format!("INSERT INTO {t} (name) VALUES ('a'), ('b')")],
    )
    .await?;
    assert_eq!(n, 2);
    assert_eq!(tc.registrations(&x)[0].lock_key, format!("{t}:2,3"));
    let bid = only_branch(&tc, &x);
    assert_eq!(
        ds.branch_rollback(&x, bid, None).await,
        BranchStatus::PhaseTwoRollbacked
    );
    assert_eq!(dump(&ds, t, "id").await?, vec![vec![s("1"), s("keep")]]);
    Ok(())
}

async fn dirty_rollback_is_refused(db: Db) -> TestResult {
    let tc = Arc::new(FakeTc::new());
    let ds = open(db, tc.clone(), options()).await?;
    let t = "at_t_dirty";
    table(&ds, t, ACCOUNT, &["1, 'a', 100"]).await?;
    let x = xid("dirty");
    branch(
        &ds,
        &x,
        &[&format!("UPDATE {t} SET balance = 90 WHERE id = 1")],
    )
    .await?;
    let bid = only_branch(&tc, &x);
    // Someone outside the global transaction overwrites the row.
    plain(&ds, &format!("UPDATE {t} SET balance = 5 WHERE id = 1")).await?;
    for _ in 0..2 {
        assert_eq!(
            ds.branch_rollback(&x, bid, None).await,
            BranchStatus::PhaseTwoRollbackFailedUnretryable
        );
    }
    assert_eq!(ds.stats().dirty_rollbacks, 2);
    assert_eq!(
        dump(&ds, t, "id").await?,
        vec![vec![s("1"), s("a"), s("5")]]
    );
    assert_eq!(undo_rows(&ds, &x).await?, vec!["0"]);
    // Current rows equal to the before image: nothing to do, rollback done.
    plain(&ds, &format!("UPDATE {t} SET balance = 100 WHERE id = 1")).await?;
    assert_eq!(
        ds.branch_rollback(&x, bid, None).await,
        BranchStatus::PhaseTwoRollbacked
    );
    assert!(undo_rows(&ds, &x).await?.is_empty());
    Ok(())
}

async fn late_phase_one_hits_defensive_row(db: Db) -> TestResult {
    let tc = Arc::new(FakeTc::new());
    let ds = open(db, tc.clone(), options()).await?;
    let t = "at_t_defense";
    table(&ds, t, ACCOUNT, &["1, 'a', 100"]).await?;
    let x = xid("defense");
    let result = context::scope(Some(x.clone()), async {
        let mut tx = ds.begin().await?;
        tx.execute(&format!("UPDATE {t} SET balance = 1 WHERE id = 1"))
            .await?;
        // The global transaction times out and rolls back before phase one
        // commits: no undo log yet.
        let bid = tc.next_branch_id();
        assert_eq!(
            ds.branch_rollback(&x, bid, None).await,
            BranchStatus::PhaseTwoRollbacked
        );
        tx.commit().await
    })
    .await;
    match result {
        Err(AtError::BranchAlreadyRolledBack { ref xid, .. }) if *xid == x => {}
        other => panic!("expected BranchAlreadyRolledBack, got {other:?}"),
    }
    assert_eq!(
        dump(&ds, t, "id").await?,
        vec![vec![s("1"), s("a"), s("100")]]
    );
    assert_eq!(undo_rows(&ds, &x).await?, vec!["1"]);
    assert_eq!(ds.stats().defensive_rows, 1);
    assert!(
        tc.reports()
            .iter()
            .any(|(rx, _, st)| *rx == x && *st == BranchStatus::PhaseOneFailed)
    );
    forget(&ds, &[&x]).await?;
    Ok(())
}

async fn lock_conflict_is_retried_then_fails(db: Db) -> TestResult {
    let tc = Arc::new(FakeTc::new());
    let ds = open(db, tc.clone(), options()).await?;
    let t = "at_t_conflict";
    table(&ds, t, ACCOUNT, &["1, 'a', 100"]).await?;
    let x1 = xid("conflict1");
    let x2 = xid("conflict2");
    let update = format!("UPDATE {t} SET balance = balance - 10 WHERE id = 1");
    branch(&ds, &x1, &[&update]).await?;
    let b1 = only_branch(&tc, &x1);
    match branch(&ds, &x2, &[&update]).await {
        Err(AtError::LockConflict(_)) => {}
        other => panic!("expected a lock conflict, got {other:?}"),
    }
    // First try plus lock_retry_times re-runs, each rolled back.
    assert_eq!(tc.registrations(&x2).len(), 4);
    assert_eq!(dump(&ds, t, "id").await?[0][2], s("90"));
    assert!(undo_rows(&ds, &x2).await?.is_empty());
    // The first global transaction ends: the second goes through.
    assert_eq!(
        ds.branch_commit(&x1, b1, None).await,
        BranchStatus::PhaseTwoCommitted
    );
    tc.release(&x1);
    branch(&ds, &x2, &[&update]).await?;
    assert_eq!(dump(&ds, t, "id").await?[0][2], s("80"));
    assert!(ds.stats().lock_conflicts >= 4);
    forget(&ds, &[&x1, &x2]).await?;
    Ok(())
}

async fn composite_primary_key(db: Db) -> TestResult {
    let tc = Arc::new(FakeTc::new());
    let ds = open(db, tc.clone(), options()).await?;
    let t = "at_t_composite";
    table(
        &ds,
        t,
        "a INT, b VARCHAR(16), v INT, PRIMARY KEY (a, b)",
        &["1, 'x', 1", "1, 'y', 2", "2, 'x', 3"],
    )
    .await?;
    let original = dump(&ds, t, "a, b").await?;
    let x = xid("composite");
    branch(
        &ds,
        &x,
        &[
            &format!("UPDATE {t} SET v = v * 10 WHERE a = 1"),
            &format!("INSERT INTO {t} (a, b, v) VALUES (3, 'z', 9)"),
            &format!("DELETE FROM {t} WHERE a = 2 AND b = 'x'"),
        ],
    )
    .await?;
    assert_eq!(
        tc.registrations(&x)[0].lock_key,
        format!("{t}:1_x,1_y,2_x,3_z")
    );
    let bid = only_branch(&tc, &x);
    assert_eq!(
        ds.branch_rollback(&x, bid, None).await,
        BranchStatus::PhaseTwoRollbacked
    );
    assert_eq!(dump(&ds, t, "a, b").await?, original);
    Ok(())
}

async fn multi_statement_batch(db: Db) -> TestResult {
    let tc = Arc::new(FakeTc::new());
    let ds = open(db, tc.clone(), options()).await?;
    let (t1, t2) = ("at_t_batch1", "at_t_batch2");
    table(
        &ds,
        t1,
        ACCOUNT,
        &["1, 'a', 10", "2, 'b', 20", "3, 'c', 30"],
    )
    .await?;
    table(&ds, t2, ACCOUNT, &["1, 'd', 40", "2, 'e', 50"]).await?;
    let (o1, o2) = (dump(&ds, t1, "id").await?, dump(&ds, t2, "id").await?);
    let x = xid("batch");
    let sql = format!(
        "UPDATE {t1} SET balance = balance + 1 WHERE id = 1; \
         UPDATE {t2} SET balance = balance + 1 WHERE id = 2; \
         UPDATE {t1} SET name = 'z' WHERE id = 3"
    );
    let n = branch(&ds, &x, &[&sql]).await?;
    assert_eq!(n, 3);
    assert_eq!(tc.registrations(&x)[0].lock_key, format!("{t1}:1,3;{t2}:2"));
    // One undo item (one before image) per table.
    let info = query(
        &ds,
        &format!(
            "SELECT {} FROM undo_log WHERE xid = '{x}'",
            if db == Db::Pg {
                "convert_from(rollback_info, 'UTF8')"
            } else {
                "rollback_info"
            }
        ),
    )
    .await?;
    let text = info.rows[0][0].clone().expect("rollback_info");
    let json: serde_json::Value = serde_json::from_str(&text).expect("undo log is JSON");
    let items = json["items"].as_array().expect("items");
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["before"]["rows"].as_array().map(Vec::len), Some(2));
    let bid = only_branch(&tc, &x);
    assert_eq!(
        ds.branch_rollback(&x, bid, None).await,
        BranchStatus::PhaseTwoRollbacked
    );
    assert_eq!(dump(&ds, t1, "id").await?, o1);
    assert_eq!(dump(&ds, t2, "id").await?, o2);
    tc.release(&x);

    // A DELETE batch.
    let x = xid("batchdel");
    let sql = format!(
        "DELETE FROM {t1} WHERE id = 1; DELETE FROM {t2} WHERE id = 1; DELETE FROM {t1} WHERE id = 2"
    );
    assert_eq!(branch(&ds, &x, &[&sql]).await?, 3);
    let bid = only_branch(&tc, &x);
    assert_eq!(
        ds.branch_rollback(&x, bid, None).await,
        BranchStatus::PhaseTwoRollbacked
    );
    assert_eq!(dump(&ds, t1, "id").await?, o1);
    assert_eq!(dump(&ds, t2, "id").await?, o2);
    Ok(())
}

/// Which error a refused statement must give.
type Expected = fn(&AtError) -> bool;

async fn refusals(db: Db) -> TestResult {
    let tc = Arc::new(FakeTc::new());
    let ds = open(db, tc.clone(), options()).await?;
    let t = "at_t_refuse";
    table(&ds, t, ACCOUNT, &["1, 'a', 100", "2, 'b', 5"]).await?;
    table(&ds, "at_t_refuse_nopk", "id INT, v INT", &["1, 1"]).await?;
    let original = dump(&ds, t, "id").await?;
    let x = xid("refuse");
    let placeholder = match db {
        Db::Pg => format!("UPDATE {t} SET balance = $1 WHERE id = 1"),
        Db::My => format!("UPDATE {t} SET balance = ? WHERE id = 1"),
    };
    let cases: Vec<(String, Expected)> = vec![
        (
            format!("UPDATE {t} SET balance = 1 WHERE id = 1; DELETE FROM {t} WHERE id = 2"),
            |e| matches!(e, AtError::MixedBatch(_)),
        ),
        (
            format!("UPDATE {t} SET balance = 1 WHERE id = 1; INSERT INTO {t} VALUES (3, 'c', 1)"),
            |e| matches!(e, AtError::MixedBatch(_)),
        ),
        (placeholder, |e| matches!(e, AtError::Placeholder(_))),
        (format!("ALTER TABLE {t} ADD COLUMN extra INT"), |e| {
            matches!(e, AtError::Unsupported { .. })
        }),
        (format!("UPDATE {t} SET id = 5 WHERE id = 1"), |e| {
            matches!(e, AtError::Unsupported { .. })
        }),
        (format!("INSERT INTO {t} SELECT * FROM {t}"), |e| {
            matches!(e, AtError::Unsupported { .. })
        }),
        ("UPDATE at_t_refuse_nopk SET v = 2".to_owned(), |e| {
            matches!(e, AtError::NoPrimaryKey(_))
        }),
        (format!("TRUNCATE {t}"), |e| {
            matches!(e, AtError::Unsupported { .. })
        }),
    ];
    for (sql, expected) in cases {
        match branch(&ds, &x, &[&sql]).await {
            Err(e) if expected(&e) => {}
            other => panic!("{sql}: unexpected {other:?}"),
        }
    }
    assert!(tc.registrations(&x).is_empty());
    assert_eq!(dump(&ds, t, "id").await?, original);
    Ok(())
}

async fn select_for_update_checks_global_locks(db: Db) -> TestResult {
    let tc = Arc::new(FakeTc::new());
    let ds = open(db, tc.clone(), options()).await?;
    let t = "at_t_sfu";
    table(&ds, t, ACCOUNT, &["1, 'a', 100", "2, 'b', 5"]).await?;
    let x1 = xid("sfu1");
    branch(
        &ds,
        &x1,
        &[&format!("UPDATE {t} SET balance = 0 WHERE id = 1")],
    )
    .await?;
    let select1 = format!("SELECT balance FROM {t} WHERE id = 1 FOR UPDATE");
    let select2 = format!("SELECT balance FROM {t} WHERE id = 2 FOR UPDATE");
    let x2 = xid("sfu2");
    let q = |sql: String| {
        let ds = ds.clone();
        async move {
            let mut tx = ds.begin().await?;
            let r = tx.query(&sql).await;
            tx.rollback().await?;
            r
        }
    };
    // Inside another global transaction.
    let before = tc.lock_queries();
    let r = context::scope(Some(x2.clone()), q(select1.clone())).await;
    assert!(matches!(r, Err(AtError::LockConflict(_))), "{r:?}");
    assert_eq!(
        tc.lock_queries() - before,
        4,
        "bounded: first check + 3 retries"
    );
    let rows = context::scope(Some(x2.clone()), q(select2.clone())).await?;
    assert_eq!(rows.rows, vec![vec![s("5")]]);
    // The holder itself may read its rows.
    let rows = context::scope(Some(x1.clone()), q(select1.clone())).await?;
    assert_eq!(rows.rows, vec![vec![s("0")]]);
    // Global lock mode.
    let r = context::scope_global_lock(q(select1.clone())).await;
    assert!(matches!(r, Err(AtError::LockConflict(_))), "{r:?}");
    tc.release(&x1);
    let rows = context::scope_global_lock(q(select1.clone())).await?;
    assert_eq!(rows.rows, vec![vec![s("0")]]);
    forget(&ds, &[&x1]).await?;
    Ok(())
}

async fn global_lock_mode(db: Db) -> TestResult {
    let tc = Arc::new(FakeTc::new());
    let ds = open(db, tc.clone(), options()).await?;
    let t = "at_t_glock";
    table(&ds, t, ACCOUNT, &["1, 'a', 100", "2, 'b', 5"]).await?;
    let x1 = xid("glock");
    branch(
        &ds,
        &x1,
        &[&format!("UPDATE {t} SET balance = 0 WHERE id = 1")],
    )
    .await?;
    let run = |sql: String| {
        let ds = ds.clone();
        context::scope_global_lock(async move {
            ds.run(|tx| {
                let sql = sql.clone();
                Box::pin(async move { tx.execute(&sql).await })
            })
            .await
        })
    };
    let before = tc.lock_queries();
    let r = run(format!("UPDATE {t} SET balance = 7 WHERE id = 1")).await;
    assert!(matches!(r, Err(AtError::LockConflict(_))), "{r:?}");
    assert_eq!(tc.lock_queries() - before, 4);
    // Rolled back locally.
    assert_eq!(dump(&ds, t, "id").await?[0][2], s("0"));
    // Rows no global transaction holds: plain commit, no branch, no undo.
    assert_eq!(
        run(format!("UPDATE {t} SET balance = 6 WHERE id = 2")).await?,
        1
    );
    assert_eq!(dump(&ds, t, "id").await?[1][2], s("6"));
    tc.release(&x1);
    assert_eq!(
        run(format!("UPDATE {t} SET balance = 7 WHERE id = 1")).await?,
        1
    );
    assert_eq!(dump(&ds, t, "id").await?[0][2], s("7"));
    assert_eq!(ds.stats().branches_registered, 1);
    forget(&ds, &[&x1]).await?;
    Ok(())
}

async fn plain_transactions_are_untouched(db: Db) -> TestResult {
    let tc = Arc::new(FakeTc::new());
    let ds = open(db, tc.clone(), options()).await?;
    let t = "at_t_plain";
    table(&ds, t, ACCOUNT, &["1, 'a', 100"]).await?;
    // Outside any global transaction: no parsing, no TC.
    let mut tx = ds.begin().await?;
    tx.execute(&format!("UPDATE {t} SET balance = 1 WHERE id = 1"))
        .await?;
    tx.rollback().await?;
    assert_eq!(dump(&ds, t, "id").await?[0][2], s("100"));
    assert_eq!(tc.lock_queries(), 0);
    assert_eq!(ds.stats().branches_registered, 0);
    Ok(())
}

async fn awkward_values_round_trip(db: Db) -> TestResult {
    let tc = Arc::new(FakeTc::new());
    let ds = open(db, tc.clone(), options()).await?;
    let t = "at_t_values";
    table(
        &ds,
        t,
        "id VARCHAR(32) PRIMARY KEY, txt VARCHAR(200), num DECIMAL(10, 2), ts TIMESTAMP NULL",
        &[],
    )
    .await?;
    // A backslash, quotes, a would-be injection, non-ASCII; a text key.
    let backslash = match db {
        Db::Pg => r"'b\ack''s; DROP TABLE x; --'",
        Db::My => r"'b\\ack''s; DROP TABLE x; --'",
    };
    plain(
        &ds,
        &format!("INSERT INTO {t} VALUES ('k''1', {backslash}, 12.50, '2024-02-29 23:59:58')"),
    )
    .await?;
    plain(
        &ds,
        &format!("INSERT INTO {t} VALUES ('ü-2', 'ünïcödé ✓', NULL, NULL)"),
    )
    .await?;
    // The application's own literals, in a branch INSERT.
    let x0 = xid("values-insert");
    branch(
        &ds,
        &x0,
        &[&format!(
            "INSERT INTO {t} (id, txt) VALUES ('k3', {backslash})"
        )],
    )
    .await?;
    let b0 = only_branch(&tc, &x0);
    let inserted = query(&ds, &format!("SELECT * FROM {t} WHERE id = 'k3'")).await?;
    assert_eq!(
        inserted.rows,
        vec![vec![s("k3"), s(r"b\ack's; DROP TABLE x; --"), None, None]]
    );
    assert_eq!(
        ds.branch_rollback(&x0, b0, None).await,
        BranchStatus::PhaseTwoRollbacked
    );
    tc.release(&x0);
    let original = dump(&ds, t, "id").await?;
    assert_eq!(original.len(), 2);
    assert_eq!(original[0][1], s(r"b\ack's; DROP TABLE x; --"));
    let x = xid("values");
    branch(
        &ds,
        &x,
        &[
            &format!("UPDATE {t} SET txt = 'plain', num = 0, ts = NULL"),
            &format!("DELETE FROM {t} WHERE id = 'ü-2'"),
        ],
    )
    .await?;
    assert_eq!(tc.registrations(&x)[0].lock_key, format!("{t}:k'1,ü-2"));
    let bid = only_branch(&tc, &x);
    assert_eq!(
        ds.branch_rollback(&x, bid, None).await,
        BranchStatus::PhaseTwoRollbacked
    );
    assert_eq!(dump(&ds, t, "id").await?, original);
    Ok(())
}

async fn aliases_and_generated_columns(db: Db) -> TestResult {
    let tc = Arc::new(FakeTc::new());
    let ds = open(db, tc.clone(), options()).await?;
    let t = "at_t_generated";
    let cols = match db {
        Db::Pg => {
            "id INT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v INT, d INT GENERATED ALWAYS AS (v * 2) STORED"
        }
        Db::My => "id INT AUTO_INCREMENT PRIMARY KEY, v INT, d INT AS (v * 2) PERSISTENT",
    };
    table(&ds, t, cols, &[]).await?;
    plain(&ds, &format!("INSERT INTO {t} (v) VALUES (1), (2), (3)")).await?;
    let original = dump(&ds, t, "id").await?;
    let x = xid("generated");
    let qualified = match db {
        Db::Pg => format!("public.{t}"),
        Db::My => format!("test.{t}"),
    };
    branch(
        &ds,
        &x,
        &[
            &format!("UPDATE {t} AS a SET v = a.v + 10 WHERE a.id = 1"),
            &format!("DELETE FROM {qualified} WHERE id = 2"),
            &format!("INSERT INTO {t} (v) VALUES (4)"),
        ],
    )
    .await?;
    let bid = only_branch(&tc, &x);
    assert_eq!(
        ds.branch_rollback(&x, bid, None).await,
        BranchStatus::PhaseTwoRollbacked
    );
    assert_eq!(dump(&ds, t, "id").await?, original);
    Ok(())
}

async fn limits_are_enforced(db: Db) -> TestResult {
    let tc = Arc::new(FakeTc::new());
    let opts = AtOptions {
        max_connections: 1,
        acquire_timeout_ms: 50,
        max_image_rows: 2,
        max_undo_log_bytes: 200,
        ..options()
    };
    let ds = open(db, tc.clone(), opts).await?;
    let t = "at_t_limits";
    table(&ds, t, ACCOUNT, &["1, 'a', 1", "2, 'b', 2", "3, 'c', 3"]).await?;
    let original = dump(&ds, t, "id").await?;
    let x = xid("limits");
    match branch(&ds, &x, &[&format!("UPDATE {t} SET balance = 0")]).await {
        Err(AtError::Limit {
            what: "image rows",
            actual: 3,
            limit: 2,
        }) => {}
        other => panic!("expected the image row limit, got {other:?}"),
    }
    match branch(
        &ds,
        &x,
        &[&format!(
            "UPDATE {t} SET name = 'long enough' WHERE id IN (1, 2)"
        )],
    )
    .await
    {
        Err(AtError::Limit {
            what: "undo log bytes",
            ..
        }) => {}
        other => panic!("expected the undo log size limit, got {other:?}"),
    }
    assert!(tc.registrations(&x).is_empty());
    assert_eq!(dump(&ds, t, "id").await?, original);
    // The pool's only connection is busy.
    let held = ds.begin().await?;
    match ds.begin().await {
        Err(AtError::PoolTimeout(50)) => {}
        Err(e) => panic!("expected a pool timeout, got {e:?}"),
        Ok(_) => panic!("expected a pool timeout, got a connection"),
    }
    held.rollback().await?;
    ds.begin().await?.rollback().await?;
    Ok(())
}

/// The lead's demo shape: one global transaction over both databases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_across_postgres_and_mariadb() -> TestResult {
    let tc = Arc::new(FakeTc::new());
    let pg = open(Db::Pg, tc.clone(), options()).await?;
    let my = open(Db::My, tc.clone(), options()).await?;
    let t = "at_t_bank";
    table(&pg, t, "id INT PRIMARY KEY, balance INT", &["1, 100"]).await?;
    table(&my, t, "id INT PRIMARY KEY, balance INT", &["2, 0"]).await?;
    for commit in [false, true] {
        let x = xid("transfer");
        context::scope(Some(x.clone()), async {
            pg.run(|tx| {
                Box::pin(async move {
                    tx.execute("UPDATE at_t_bank SET balance = balance - 30 WHERE id = 1")
                        .await
                })
            })
            .await?;
            my.run(|tx| {
                Box::pin(async move {
                    tx.execute("UPDATE at_t_bank SET balance = balance + 30 WHERE id = 2")
                        .await
                })
            })
            .await
        })
        .await?;
        let regs = tc.registrations(&x);
        assert_eq!(regs.len(), 2);
        assert_ne!(regs[0].resource_id, regs[1].resource_id);
        for (ds, reg) in [(&pg, &regs[0]), (&my, &regs[1])] {
            let bid = reg.branch_id.expect("registered");
            let status = if commit {
                ds.branch_commit(&x, bid, None).await
            } else {
                ds.branch_rollback(&x, bid, None).await
            };
            let expected = if commit {
                BranchStatus::PhaseTwoCommitted
            } else {
                BranchStatus::PhaseTwoRollbacked
            };
            assert_eq!(status, expected);
        }
        tc.release(&x);
        let (a, b) = if commit { ("70", "30") } else { ("100", "0") };
        assert_eq!(dump(&pg, t, "id").await?, vec![vec![s("1"), s(a)]]);
        assert_eq!(dump(&my, t, "id").await?, vec![vec![s("2"), s(b)]]);
        forget(&pg, &[&x]).await?;
        forget(&my, &[&x]).await?;
    }
    Ok(())
}

async fn rollback_waits_bounded_for_row_locks(db: Db) -> TestResult {
    let tc = Arc::new(FakeTc::new());
    let opts = AtOptions {
        phase_two_lock_timeout_ms: 200,
        ..options()
    };
    let ds = open(db, tc.clone(), opts).await?;
    let t = "at_t_rowlock";
    table(&ds, t, ACCOUNT, &["1, 'a', 100"]).await?;
    let x = xid("rowlock");
    branch(
        &ds,
        &x,
        &[&format!("UPDATE {t} SET balance = 1 WHERE id = 1")],
    )
    .await?;
    let bid = only_branch(&tc, &x);
    // A local transaction holds the row.
    let mut holder = ds.begin().await?;
    holder
        .query(&format!("SELECT * FROM {t} WHERE id = 1 FOR UPDATE"))
        .await?;
    assert_eq!(
        ds.branch_rollback(&x, bid, None).await,
        BranchStatus::PhaseTwoRollbackFailedRetryable
    );
    holder.rollback().await?;
    assert_eq!(
        ds.branch_rollback(&x, bid, None).await,
        BranchStatus::PhaseTwoRollbacked
    );
    assert_eq!(dump(&ds, t, "id").await?[0][2], s("100"));
    Ok(())
}

/// Defensive rows older than `undo_log_save_days` are cleaned up; younger
/// ones and normal undo logs (of any age) are kept.
async fn old_defensive_rows_are_cleaned(db: Db) -> TestResult {
    let tc = Arc::new(FakeTc::new());
    let ds = open(
        db,
        tc,
        AtOptions {
            undo_log_save_days: 1,
            undo_cleanup_interval_ms: 1_000,
            ..options()
        },
    )
    .await?;
    let (old_def, new_def, old_normal) = (xid("olddef"), xid("newdef"), xid("oldnormal"));
    let past = match db {
        Db::Pg => "LOCALTIMESTAMP - INTERVAL '2 days'",
        Db::My => "NOW(6) - INTERVAL 2 DAY",
    };
    let now = match db {
        Db::Pg => "LOCALTIMESTAMP",
        Db::My => "NOW(6)",
    };
    for (x, status, at) in [
        (&old_def, 1, past),
        (&new_def, 1, now),
        (&old_normal, 0, past),
    ] {
        plain(
            &ds,
            &format!(
                "INSERT INTO undo_log (branch_id, xid, context, rollback_info, log_status, log_created, log_modified) \
                 VALUES (1, '{x}', 'serializer=json', '', {status}, {at}, {at})"
            ),
        )
        .await?;
    }
    let start = std::time::Instant::now();
    while !undo_rows(&ds, &old_def).await?.is_empty() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "old defensive row not cleaned"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(undo_rows(&ds, &new_def).await?, vec!["1".to_string()]);
    assert_eq!(undo_rows(&ds, &old_normal).await?, vec!["0".to_string()]);
    forget(&ds, &[&new_def, &old_normal]).await
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod pg {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> super::TestResult {
                    super::$name(super::Db::Pg).await
                }
            )*
        }
        mod mariadb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> super::TestResult {
                    super::$name(super::Db::My).await
                }
            )*
        }
    };
}

on_both!(
    commit_keeps_data_and_deletes_undo_log,
    rollback_restores_update_insert_delete,
    rollback_of_generated_keys,
    dirty_rollback_is_refused,
    late_phase_one_hits_defensive_row,
    lock_conflict_is_retried_then_fails,
    composite_primary_key,
    multi_statement_batch,
    refusals,
    select_for_update_checks_global_locks,
    global_lock_mode,
    plain_transactions_are_untouched,
    awkward_values_round_trip,
    aliases_and_generated_columns,
    limits_are_enforced,
    rollback_waits_bounded_for_row_locks,
    old_defensive_rows_are_cleaned,
);
