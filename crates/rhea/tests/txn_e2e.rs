//! End-to-end distributed transactions, in process: Rhea's real transaction
//! coordinator (KV nodes serving the TC partitions as raft groups), the
//! network TC client (TM and RM), and AT mode over the PostgreSQL and
//! MariaDB of this machine: commit and rollback across both databases,
//! dirty rollbacks, global lock conflicts, propagation modes, batches,
//! global lock mode, phase-two retries, global timeouts, INSERT/DELETE and
//! column types, and a three-node TC.
//!
//! Every test starts its own TC on its own loopback address 127.0.3.<n>
//! (its XIDs, and therefore its undo log rows, are told apart by the
//! `<tc_addr>:` prefix) and uses its own tables (`e2e_<test>_a`,
//! `e2e_<test>_b` in both databases, dropped at the end), so the tests may
//! run in parallel.
//!
//! Databases: `postgres://postgres@127.0.0.1:5432/test` and
//! `mysql://root@127.0.0.1:3306/test`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use rhea_kv::{KvNode, NodeConfig, ServerOptions};
use rhea_raft::Role;
use rhea_txn::protocol::{BranchType, GlobalStatus};
use rhea_txn::tc::{TcConfig, TcServer, lock_group, session_group};
use rhea_txn_at::{AtDataSource, AtError, AtOptions};
use rhea_txn_client::context::{self, LockRetryConfig};
use rhea_txn_client::rpc::{TcClient, TcClientOptions};
use rhea_txn_client::tm::{self, GlobalTransaction, Propagation, TemplateError, TransactionInfo};
use rhea_txn_client::{ResourceManager, TcApi, TxnError};
use tokio::net::TcpListener;
use tokio::sync::watch;

const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const MY_URL: &str = "mysql://root@127.0.0.1:3306/test";
/// Longest wait for anything asynchronous (leaders, phase two).
const DEADLINE: Duration = Duration::from_secs(15);
const SESSION_PARTITIONS: u32 = 2;
const LOCK_PARTITIONS: u32 = 3;

// ------------------------------------------------------------------ harness

struct TestDir(PathBuf);
impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn test_dir(name: &str) -> TestDir {
    let d = std::env::temp_dir().join(format!("rhea-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("test dir");
    TestDir(d)
}

/// The business error of the templates in these tests.
#[derive(Debug)]
enum Biz {
    At(AtError),
    Abort,
}

impl From<AtError> for Biz {
    fn from(e: AtError) -> Self {
        Biz::At(e)
    }
}

/// A KV node serving the TC partitions, its RESP server (forwarding
/// between nodes) and its TC listener.
struct TcNode {
    node: KvNode,
    tc: TcServer,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
}

impl TcNode {
    async fn start(
        dir: &std::path::Path,
        id: u64,
        ip: [u8; 4],
        cluster: &BTreeMap<u64, SocketAddr>,
    ) -> TcNode {
        let listener = TcpListener::bind(SocketAddr::from((ip, 0)))
            .await
            .expect("bind client");
        let tc_listener = TcpListener::bind(SocketAddr::from((ip, 0)))
            .await
            .expect("bind tc");
        let mut tc_cfg = TcConfig::new(
            id as u16,
            tc_listener.local_addr().expect("addr").to_string(),
        );
        tc_cfg.session_partitions = SESSION_PARTITIONS;
        tc_cfg.lock_partitions = LOCK_PARTITIONS;
        tc_cfg.session.retry.retry_interval_ms = 50;
        tc_cfg.session.retry.max_retry_interval_ms = 200;
        tc_cfg.timeout_check_interval_ms = 100;
        let mut cfg = NodeConfig::new(
            id,
            dir.join(format!("n{id}")),
            cluster[&id],
            listener.local_addr().expect("addr").to_string(),
        );
        cfg.initial_cluster = cluster.clone();
        cfg.driver.tick_interval_ms = 10;
        cfg.election_timeout_ms = 200;
        cfg.heartbeat_interval_ms = 20;
        cfg.snapshot_every_entries = 0;
        let (groups, replicas) = rhea_txn::tc::partition_machines(&tc_cfg).expect("machines");
        let node = KvNode::start_with_groups(cfg, groups)
            .await
            .unwrap_or_else(|e| panic!("node {id} does not start: {e}"));
        let (stop, stop_rx) = watch::channel(false);
        let server = tokio::spawn(rhea_kv::serve(
            listener,
            node.router().clone(),
            ServerOptions::default(),
            Arc::new(String::new),
            stop_rx,
        ));
        let tc = TcServer::start(tc_cfg, replicas, node.router().clone(), tc_listener).expect("tc");
        TcNode {
            node,
            tc,
            stop,
            server,
        }
    }

    async fn stop(self) {
        self.tc.shutdown().await;
        let _ = self.stop.send(true);
        let _ = self.server.await;
        self.node.shutdown().await.expect("node shutdown");
    }
}

/// A TC cluster (one node unless told otherwise) on 127.0.3.`ip4`, a TC
/// client connected to every node and registered as TM and as the RM of
/// both data sources, and admin connections to both databases.
struct Env {
    name: &'static str,
    nodes: Vec<TcNode>,
    client: Arc<TcClient>,
    api: Arc<dyn TcApi>,
    pg: AtDataSource,
    my: AtDataSource,
    pg_admin: tokio_postgres::Client,
    my_admin: mysql_async::Pool,
    /// `<tc_addr>:` of every TC node: the start of this test's XIDs.
    xid_prefixes: Vec<String>,
    _dir: TestDir,
}

impl Env {
    /// Starts everything for test `name` on 127.0.3.`ip4`, one TC node.
    async fn start(name: &'static str, ip4: u8) -> Env {
        Self::start_nodes(name, ip4, 1).await
    }

    async fn start_nodes(name: &'static str, ip4: u8, n: u64) -> Env {
        let dir = test_dir(name);
        let ip = [127, 0, 3, ip4];
        let mut cluster = BTreeMap::new();
        for id in 1..=n {
            let l = TcpListener::bind(SocketAddr::from((ip, 0)))
                .await
                .expect("bind raft probe");
            cluster.insert(id, l.local_addr().expect("addr"));
        }
        let mut nodes = Vec::new();
        for id in 1..=n {
            nodes.push(TcNode::start(&dir.0, id, ip, &cluster).await);
        }
        leaders_elected(&nodes).await;
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| n.tc.local_addr().to_string())
            .collect();
        let xid_prefixes = addrs.iter().map(|a| format!("{a}:")).collect();
        let client = Arc::new(
            TcClient::connect(TcClientOptions::new(addrs, "e2e"))
                .await
                .expect("TC client connects"),
        );
        assert!(
            client
                .wait_connected(n as usize, DEADLINE.as_millis() as u64)
                .await,
            "the client registers on every TC node"
        );
        let api: Arc<dyn TcApi> = client.clone();
        let opts = AtOptions {
            lock_retry_times: 3,
            lock_retry_interval_ms: 10,
            // A phase-two rollback waiting for a row lock gives up (and is
            // retried by the TC) quickly.
            phase_two_lock_timeout_ms: 300,
            ..AtOptions::default()
        };
        let pg = AtDataSource::postgres(PG_URL, api.clone(), opts.clone())
            .await
            .expect("PostgreSQL data source");
        let my = AtDataSource::mysql(MY_URL, api.clone(), opts)
            .await
            .expect("MariaDB data source");
        client
            .register_resource(Arc::new(pg.clone()) as Arc<dyn ResourceManager>)
            .await;
        client
            .register_resource(Arc::new(my.clone()) as Arc<dyn ResourceManager>)
            .await;

        let (pg_admin, conn) = tokio_postgres::connect(PG_URL, tokio_postgres::NoTls)
            .await
            .expect("PostgreSQL admin connection");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let my_admin = mysql_async::Pool::new(
            mysql_async::Opts::from_url(MY_URL).expect("MariaDB URL is valid"),
        );
        let env = Env {
            name,
            nodes,
            client,
            api,
            pg,
            my,
            pg_admin,
            my_admin,
            xid_prefixes,
            _dir: dir,
        };
        env.create_tables().await;
        env
    }

    /// `e2e_<test>_<suffix>`.
    fn table(&self, suffix: &str) -> String {
        format!("e2e_{}_{suffix}", self.name)
    }

    /// Tables `a` and `b` in both databases, rows (1, 100), (2, 200),
    /// (3, 300).
    async fn create_tables(&self) {
        let mut my = self.my_conn().await;
        for s in ["a", "b"] {
            let t = self.table(s);
            self.pg_admin
                .batch_execute(&format!(
                    "DROP TABLE IF EXISTS {t}; \
                     CREATE TABLE {t} (id BIGINT PRIMARY KEY, v BIGINT NOT NULL); \
                     INSERT INTO {t} VALUES (1, 100), (2, 200), (3, 300)"
                ))
                .await
                .unwrap_or_else(|e| panic!("PostgreSQL: creating {t}: {e}"));
            for sql in [
                format!("DROP TABLE IF EXISTS {t}"),
                format!(
                    "CREATE TABLE {t} (id BIGINT PRIMARY KEY, v BIGINT NOT NULL) ENGINE=InnoDB"
                ),
                format!("INSERT INTO {t} VALUES (1, 100), (2, 200), (3, 300)"),
            ] {
                my.query_drop(&sql)
                    .await
                    .unwrap_or_else(|e| panic!("MariaDB: {sql}: {e}"));
            }
        }
    }

    async fn my_conn(&self) -> mysql_async::Conn {
        self.my_admin
            .get_conn()
            .await
            .expect("MariaDB admin connection")
    }

    /// `v` of row `id` in PostgreSQL table `e2e_<test>_<suffix>`.
    async fn pg_v(&self, suffix: &str, id: i64) -> i64 {
        let t = self.table(suffix);
        self.pg_admin
            .query_one(format!("SELECT v FROM {t} WHERE id = {id}").as_str(), &[])
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL: reading {t} row {id}: {e}"))
            .get(0)
    }

    /// `v` of row `id` in MariaDB table `e2e_<test>_<suffix>`.
    async fn my_v(&self, suffix: &str, id: i64) -> i64 {
        let t = self.table(suffix);
        self.my_conn()
            .await
            .query_first::<i64, _>(format!("SELECT v FROM {t} WHERE id = {id}"))
            .await
            .unwrap_or_else(|e| panic!("MariaDB: reading {t} row {id}: {e}"))
            .unwrap_or_else(|| panic!("MariaDB: {t} has no row {id}"))
    }

    /// Undo log rows (any status) of this TC's transactions: (PostgreSQL,
    /// MariaDB).
    async fn undo_rows(&self) -> (i64, i64) {
        let filter = self
            .xid_prefixes
            .iter()
            .map(|p| format!("xid LIKE '{p}%'"))
            .collect::<Vec<_>>()
            .join(" OR ");
        self.undo_rows_where(&filter).await
    }

    /// True when `xid` was made by this test's TC.
    fn ours(&self, xid: &str) -> bool {
        self.xid_prefixes
            .iter()
            .any(|p| xid.starts_with(p.as_str()))
    }

    /// Undo log rows of one XID: (PostgreSQL, MariaDB).
    async fn undo_rows_of(&self, xid: &str) -> (i64, i64) {
        assert!(self.ours(xid), "{xid} is not ours: {:?}", self.xid_prefixes);
        self.undo_rows_where(&format!("xid = '{xid}'")).await
    }

    async fn undo_rows_where(&self, filter: &str) -> (i64, i64) {
        let sql = format!("SELECT COUNT(*) FROM undo_log WHERE {filter}");
        let pg: i64 = self
            .pg_admin
            .query_one(sql.as_str(), &[])
            .await
            .expect("PostgreSQL: counting undo logs")
            .get(0);
        let my: i64 = self
            .my_conn()
            .await
            .query_first(sql)
            .await
            .expect("MariaDB: counting undo logs")
            .unwrap_or(0);
        (pg, my)
    }

    /// Waits until no undo log row of this TC is left (phase two done).
    async fn wait_no_undo_rows(&self, what: &str) {
        let start = Instant::now();
        loop {
            let n = self.undo_rows().await;
            if n == (0, 0) {
                return;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "{what}: undo rows (PostgreSQL, MariaDB) still {n:?} after {DEADLINE:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `GlobalLockQuery` from outside any global transaction: true when no
    /// global transaction holds a row of `lock_key` on `ds`.
    async fn lockable(&self, ds: &AtDataSource, lock_key: &str) -> bool {
        self.api
            .global_lock_query(BranchType::At, None, ds.resource_id(), lock_key)
            .await
            .unwrap_or_else(|e| panic!("global lock query {lock_key}: {e}"))
    }

    async fn stop(self) {
        let mut my = self.my_conn().await;
        for s in ["a", "b"] {
            let t = self.table(s);
            let _ = self
                .pg_admin
                .batch_execute(&format!("DROP TABLE IF EXISTS {t}"))
                .await;
            let _ = my.query_drop(format!("DROP TABLE IF EXISTS {t}")).await;
        }
        drop(my);
        let _ = self.my_admin.disconnect().await;
        self.client.close();
        for n in self.nodes {
            n.stop().await;
        }
    }
}

async fn leaders_elected(nodes: &[TcNode]) {
    let mut groups: Vec<u64> = (0..SESSION_PARTITIONS).map(session_group).collect();
    groups.extend((0..LOCK_PARTITIONS).map(lock_group));
    let start = Instant::now();
    loop {
        let all = groups.iter().all(|&g| {
            nodes.iter().any(|n| {
                n.node
                    .driver()
                    .role_hint(g)
                    .is_some_and(|(r, _, _)| r == Role::Leader)
            })
        });
        if all {
            return;
        }
        assert!(start.elapsed() < DEADLINE, "no leaders for {groups:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One statement in a local transaction of `ds` (`run`: an AT branch when
/// the context has an XID, global lock mode in a global-lock scope, else
/// plain), committed.
async fn at_exec(ds: &AtDataSource, sql: impl Into<String>) -> Result<u64, AtError> {
    let sql = sql.into();
    ds.run(move |tx| {
        let sql = sql.clone();
        Box::pin(async move { tx.execute(&sql).await })
    })
    .await
}

/// One query in a local transaction of `ds` (like [`at_exec`]).
async fn at_query(ds: &AtDataSource, sql: impl Into<String>) -> Result<rhea_txn_at::Rows, AtError> {
    let sql = sql.into();
    ds.run(move |tx| {
        let sql = sql.clone();
        Box::pin(async move { tx.query(&sql).await })
    })
    .await
}

fn required(name: &str) -> TransactionInfo {
    TransactionInfo::named(name)
}

// -------------------------------------------------------------------- tests

/// REQUIRED template, one row updated in each database, committed: the data
/// changed, phase one left an undo row per database and locked the rows,
/// phase two removes every undo row of this TC and the rows are lockable
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_across_postgres_and_mariadb() {
    let env = Env::start("commit", 1).await;
    let e = &env;
    let (pa, ma) = (e.table("a"), e.table("a"));
    let before = e.pg.stats().branches_registered + e.my.stats().branches_registered;

    let xid = tm::execute(&e.api, &required("e2e-commit"), move || async move {
        let xid = context::current_xid().expect("REQUIRED binds an XID");
        assert_eq!(
            at_exec(&e.pg, format!("UPDATE {pa} SET v = v - 10 WHERE id = 1")).await?,
            1
        );
        assert_eq!(
            at_exec(&e.my, format!("UPDATE {ma} SET v = v + 10 WHERE id = 1")).await?,
            1
        );
        // Phase one is done: one undo row per database, rows locked
        // (against others, not against this transaction).
        assert_eq!(e.undo_rows_of(&xid).await, (1, 1), "undo rows of {xid}");
        assert!(
            e.api
                .global_lock_query(
                    BranchType::At,
                    Some(&xid),
                    e.pg.resource_id(),
                    &format!("{pa}:1")
                )
                .await
                .expect("lock query"),
            "own rows are lockable for {xid}"
        );
        assert!(
            !e.lockable(&e.pg, &format!("{pa}:1")).await,
            "PostgreSQL row held by {xid}"
        );
        assert!(
            !e.lockable(&e.my, &format!("{ma}:1")).await,
            "MariaDB row held by {xid}"
        );
        Ok::<_, Biz>(xid)
    })
    .await
    .expect("global transaction commits");
    assert!(e.ours(&xid), "XID {xid} names the TC {:?}", e.xid_prefixes);
    assert_eq!(e.pg_v("a", 1).await, 90, "PostgreSQL row after commit");
    assert_eq!(e.my_v("a", 1).await, 110, "MariaDB row after commit");
    assert_eq!(e.pg_v("a", 2).await, 200, "untouched row");
    assert_eq!(
        e.pg.stats().branches_registered + e.my.stats().branches_registered - before,
        2,
        "one branch per database"
    );
    e.wait_no_undo_rows("after the global commit").await;
    assert!(e.lockable(&e.pg, &format!("{}:1", e.table("a"))).await);
    assert!(e.lockable(&e.my, &format!("{}:1", e.table("a"))).await);
    // The TC forgets the session once every branch answered phase two.
    let start = Instant::now();
    loop {
        let status = e.api.global_status(&xid).await.expect("status");
        if status == GlobalStatus::Finished {
            break;
        }
        assert!(
            matches!(
                status,
                GlobalStatus::AsyncCommitting | GlobalStatus::Committed
            ) && start.elapsed() < DEADLINE,
            "the committed transaction {xid} should end, got {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        e.pg.stats().dirty_rollbacks + e.my.stats().dirty_rollbacks,
        0
    );
    env.stop().await;
}

/// Both rows updated, then the business fails: the template rolls back
/// (the TC runs phase two in both databases), answers `Business`, and both
/// rows are exactly as before; no undo row and no lock is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn business_error_rolls_back_both_databases() {
    let env = Env::start("rollback", 2).await;
    let e = &env;
    let t = e.table("a");
    let seen = Mutex::new(None::<String>);
    let s = &seen;
    let r = tm::execute(&e.api, &required("e2e-rollback"), move || async move {
        *s.lock().expect("lock") = context::current_xid();
        at_exec(&e.pg, format!("UPDATE {t} SET v = v - 42 WHERE id = 2")).await?;
        at_exec(&e.my, format!("UPDATE {t} SET v = v + 42 WHERE id = 2")).await?;
        at_exec(&e.my, format!("UPDATE {t} SET v = 7 WHERE id = 3")).await?;
        // The same row again, in a second branch of the same transaction
        // (the TC's locks are re-entrant); undone newest first.
        at_exec(&e.pg, format!("UPDATE {t} SET v = v * 2 WHERE id = 2")).await?;
        assert_eq!(e.pg_v("a", 2).await, 316);
        Err::<(), _>(Biz::Abort)
    })
    .await;
    assert!(
        matches!(r, Err(TemplateError::Business(Biz::Abort))),
        "the business error comes back as Business, got {r:?}"
    );
    let xid = seen
        .lock()
        .expect("lock")
        .clone()
        .expect("the business ran in a transaction");
    // The rollback answered after phase two: restored at once.
    assert_eq!(e.pg_v("a", 2).await, 200, "PostgreSQL row restored");
    assert_eq!(e.my_v("a", 2).await, 200, "MariaDB row restored");
    assert_eq!(e.my_v("a", 3).await, 300, "second MariaDB branch restored");
    assert_eq!(e.pg.stats().branches_registered, 2);
    assert_eq!(e.my.stats().branches_registered, 2);
    assert_eq!(e.undo_rows_of(&xid).await, (0, 0), "undo rows of {xid}");
    e.wait_no_undo_rows("after the global rollback").await;
    assert!(e.lockable(&e.pg, &format!("{}:2", e.table("a"))).await);
    assert!(e.lockable(&e.my, &format!("{}:2,3", e.table("a"))).await);
    assert_eq!(
        (e.pg.stats().dirty_rollbacks, e.my.stats().dirty_rollbacks),
        (0, 0)
    );
    env.stop().await;
}

/// A row changed through AT, then changed again outside the global
/// transaction (a dirty write), then the global transaction rolls back: the
/// RM refuses to overwrite the outside value (`PhaseTwo_RollbackFailed_
/// Unretryable`), the TC reports a failed rollback (not `Rollbacked`), keeps
/// the session and its locks and does not retry; the row keeps the outside
/// value and the undo row stays for an operator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dirty_rollback_is_reported_and_not_retried() {
    let env = Env::start("dirty", 3).await;
    let e = &env;
    let t = e.table("a");
    let (xid, rollback) = context::scope(None, async {
        let mut gtx = GlobalTransaction::new(e.api.clone());
        gtx.begin(60_000, "e2e-dirty").await.expect("begin");
        let xid = gtx.xid().expect("begun").to_owned();
        assert_eq!(context::current_xid().as_deref(), Some(xid.as_str()));
        at_exec(&e.pg, format!("UPDATE {t} SET v = 111 WHERE id = 1"))
            .await
            .expect("AT update");
        // The branch's local transaction committed at the end of `run`: a
        // plain connection can write the row now (nothing stops it: only AT
        // and global-lock-mode transactions look at the TC's locks).
        let n = e
            .pg_admin
            .execute(format!("UPDATE {t} SET v = 555 WHERE id = 1").as_str(), &[])
            .await
            .expect("dirty write outside the global transaction");
        assert_eq!(n, 1);
        let r = gtx.rollback().await;
        assert_eq!(context::current_xid(), None, "rollback unbinds the XID");
        (xid, r)
    })
    .await;
    match &rollback {
        Err(TxnError::Ended { xid: x, status }) => {
            assert_eq!(x, &xid);
            assert_eq!(
                *status,
                GlobalStatus::RollbackFailed,
                "an unretryable branch rollback fails the global rollback"
            );
        }
        other => panic!("a dirty rollback must not report success, got {other:?}"),
    }
    assert_eq!(e.pg_v("a", 1).await, 555, "the outside write is not lost");
    assert_eq!(e.pg.stats().dirty_rollbacks, 1);
    assert_eq!(e.undo_rows_of(&xid).await, (1, 0), "the undo row stays");
    // Not retried: the status stays, the RM is not called again, the data
    // and the undo log do not change, the rows stay locked.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let status = e.api.global_status(&xid).await.expect("status");
    assert_eq!(status, GlobalStatus::RollbackFailed, "status of {xid}");
    assert_eq!(
        e.pg.stats().dirty_rollbacks,
        1,
        "the TC must not retry an unretryable rollback"
    );
    assert_eq!(e.pg_v("a", 1).await, 555);
    assert_eq!(e.undo_rows_of(&xid).await, (1, 0));
    assert!(
        !e.lockable(&e.pg, &format!("{t}:1")).await,
        "a failed rollback keeps its row locks"
    );
    assert!(e.lockable(&e.pg, &format!("{t}:2")).await);
    // A second global transaction on the row: refused by the kept lock.
    let r = tm::execute(&e.api, &required("e2e-dirty-2"), || async {
        at_exec(&e.pg, format!("UPDATE {t} SET v = 1 WHERE id = 1")).await?;
        Ok::<_, Biz>(())
    })
    .await;
    assert!(
        matches!(
            r,
            Err(TemplateError::Business(Biz::At(AtError::LockConflict(_))))
        ),
        "the row of a failed rollback stays locked, got {r:?}"
    );
    assert_eq!(e.pg_v("a", 1).await, 555);

    // The same on MariaDB, template this time: the business fails, the
    // rollback fails on the dirty row, the template says so.
    let seen = Mutex::new(None::<String>);
    let s = &seen;
    let t2 = t.clone();
    let r = tm::execute(&e.api, &required("e2e-dirty-my"), move || async move {
        *s.lock().expect("lock") = context::current_xid();
        at_exec(&e.my, format!("UPDATE {t2} SET v = 222 WHERE id = 2")).await?;
        e.my_conn()
            .await
            .query_drop(format!("UPDATE {t2} SET v = 666 WHERE id = 2"))
            .await
            .expect("dirty write outside the global transaction");
        Err::<(), _>(Biz::Abort)
    })
    .await;
    let xid_my = seen.lock().expect("lock").clone().expect("an XID");
    match &r {
        Err(TemplateError::RollbackFailed {
            business: Biz::Abort,
            error: TxnError::Ended { status, .. },
        }) => assert_eq!(*status, GlobalStatus::RollbackFailed),
        other => panic!("a dirty rollback must be reported, got {other:?}"),
    }
    assert_eq!(e.my_v("a", 2).await, 666, "the outside write is not lost");
    assert_eq!(e.my.stats().dirty_rollbacks, 1);
    assert_eq!(e.undo_rows_of(&xid_my).await, (0, 1), "the undo row stays");
    assert_eq!(
        e.api.global_status(&xid_my).await.expect("status"),
        GlobalStatus::RollbackFailed
    );
    e.my_conn()
        .await
        .query_drop(format!("DELETE FROM undo_log WHERE xid = '{xid_my}'"))
        .await
        .expect("removing the undo row");

    // Clean up what is left for an operator.
    e.pg_admin
        .execute(
            format!("DELETE FROM undo_log WHERE xid = '{xid}'").as_str(),
            &[],
        )
        .await
        .expect("removing the undo row");
    env.stop().await;
}

/// Tx A holds row 1 (branch registered, local transaction committed); tx B's
/// update of row 1 is refused by the TC, retried `lock_retry_times` (3)
/// times, and fails with a lock conflict without changing anything; once A
/// commits, B goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_conflict_between_global_transactions() {
    let env = Env::start("conflict", 4).await;
    let e = &env;
    let t = e.table("a");
    context::scope(None, async {
        let mut a = GlobalTransaction::new(e.api.clone());
        a.begin(60_000, "e2e-conflict-a").await.expect("begin A");
        let xa = a.xid().expect("A begun").to_owned();
        at_exec(&e.pg, format!("UPDATE {t} SET v = v + 1 WHERE id = 1"))
            .await
            .expect("A updates row 1");
        assert_eq!(e.pg.stats().lock_conflicts, 0);

        // B, in its own context (no XID of A).
        let b_sql = format!("UPDATE {t} SET v = v * 2 WHERE id = 1");
        let b = |sql: String| async move {
            context::scope(None, async {
                tm::execute(&e.api, &required("e2e-conflict-b"), move || async move {
                    let xb = context::current_xid().expect("B has an XID");
                    at_exec(&e.pg, sql).await?;
                    Ok::<_, Biz>(xb)
                })
                .await
            })
            .await
        };
        let started = Instant::now();
        let r = b(b_sql.clone()).await;
        match &r {
            Err(TemplateError::Business(Biz::At(AtError::LockConflict(msg)))) => {
                assert!(!msg.is_empty());
            }
            other => panic!("B must fail with a lock conflict while A holds row 1, got {other:?}"),
        }
        assert_eq!(
            e.pg.stats().lock_conflicts,
            4,
            "one attempt and lock_retry_times = 3 re-runs"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "bounded retries, took {:?}",
            started.elapsed()
        );
        assert_eq!(
            e.pg_v("a", 1).await,
            101,
            "B's local change was rolled back"
        );
        assert_eq!(e.pg.stats().branches_registered, 1, "only A registered");
        assert_eq!(context::current_xid().as_deref(), Some(xa.as_str()));

        // SELECT .. FOR UPDATE: A's own row is fine for A, refused to B.
        let rows = at_query(&e.pg, format!("SELECT v FROM {t} WHERE id = 1 FOR UPDATE"))
            .await
            .expect("A reads its own row for update");
        assert_eq!(rows.rows, vec![vec![Some("101".to_owned())]]);
        let r = context::scope(None, async {
            tm::execute(&e.api, &required("e2e-conflict-sfu"), || async {
                Ok::<_, Biz>(
                    at_query(&e.pg, format!("SELECT v FROM {t} WHERE id = 1 FOR UPDATE")).await?,
                )
            })
            .await
        })
        .await;
        assert!(
            matches!(
                r,
                Err(TemplateError::Business(Biz::At(AtError::LockConflict(_))))
            ),
            "SELECT FOR UPDATE of A's row in B, got {r:?}"
        );
        // At least one refused check per attempt of `run` (today each
        // attempt also re-checks `lock_retry_times` times: 16 in all).
        let sfu = e.pg.stats().lock_conflicts - 4;
        assert!(
            sfu >= 4,
            "lock checks of the refused SELECT FOR UPDATE: {sfu}"
        );

        // Other rows are free for B meanwhile.
        let xb2 = b(format!("UPDATE {t} SET v = v * 2 WHERE id = 2"))
            .await
            .expect("row 2 is free");
        assert_ne!(xb2, xa);
        assert_eq!(e.pg_v("a", 2).await, 400);

        let status = a.commit().await.expect("A commits");
        assert!(
            matches!(status, GlobalStatus::Committed),
            "all-AT commit answers Committed, got {status:?}"
        );
        let xb = b(b_sql).await.expect("B succeeds once A committed");
        assert_ne!(xb, xa);
    })
    .await;
    assert_eq!(e.pg_v("a", 1).await, 202, "A's +1 then B's *2");
    assert_eq!(e.pg.stats().branches_registered, 3);

    // Concurrently: B keeps retrying (a data source with a longer retry
    // budget) while A holds row 3, and gets through once A commits.
    let patient = AtDataSource::postgres(
        PG_URL,
        e.api.clone(),
        AtOptions {
            lock_retry_times: 500,
            lock_retry_interval_ms: 10,
            ..AtOptions::default()
        },
    )
    .await
    .expect("second PostgreSQL data source");
    context::scope(None, async {
        let mut a = GlobalTransaction::new(e.api.clone());
        a.begin(60_000, "e2e-conflict-a2").await.expect("begin A2");
        at_exec(&e.pg, format!("UPDATE {t} SET v = v + 3 WHERE id = 3"))
            .await
            .expect("A2 updates row 3");
        let (api, ds, sql) = (
            e.api.clone(),
            patient.clone(),
            format!("UPDATE {t} SET v = v * 3 WHERE id = 3"),
        );
        let b = tokio::spawn(context::scope(None, async move {
            tm::execute(&api, &required("e2e-conflict-b2"), move || async move {
                at_exec(&ds, sql).await?;
                Ok::<_, Biz>(())
            })
            .await
        }));
        let start = Instant::now();
        while patient.stats().lock_conflicts < 3 {
            assert!(start.elapsed() < DEADLINE, "B2 never met A2's lock");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!b.is_finished(), "B2 waits (retries) while A2 holds row 3");
        assert_eq!(
            a.commit().await.expect("A2 commits"),
            GlobalStatus::Committed
        );
        tokio::time::timeout(DEADLINE, b)
            .await
            .expect("B2 finishes")
            .expect("B2 task")
            .expect("B2 commits once A2 released row 3");
    })
    .await;
    assert_eq!(e.pg_v("a", 3).await, 909, "A2's +3 then B2's *3");
    assert_eq!(patient.stats().branches_registered, 1);
    e.wait_no_undo_rows("after A and B committed").await;
    assert!(e.lockable(&e.pg, &format!("{t}:1,2,3")).await);
    env.stop().await;
}

/// Seata's propagation modes over the real TC and AT branches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn propagation_modes_with_real_tc() {
    let env = Env::start("propagation", 5).await;
    let e = &env;
    let t = e.table("a");
    let xids: Mutex<Vec<(&'static str, Option<String>)>> = Mutex::new(Vec::new());
    let xs = &xids;
    let note = move |what: &'static str| {
        xs.lock()
            .expect("lock")
            .push((what, context::current_xid()));
    };
    let take = || std::mem::take(&mut *xids.lock().expect("lock"));

    // REQUIRES_NEW inside REQUIRED: the inner transaction commits on its
    // own; the outer one rolls back only its own row.
    let t1 = t.clone();
    let r = tm::execute(&e.api, &required("outer"), move || async move {
        note("outer");
        at_exec(&e.pg, format!("UPDATE {t1} SET v = v + 1 WHERE id = 1")).await?;
        let info = required("inner").with_propagation(Propagation::RequiresNew);
        tm::execute(&e.api, &info, || async {
            note("inner");
            at_exec(&e.pg, format!("UPDATE {t1} SET v = v + 2 WHERE id = 2")).await?;
            Ok::<_, Biz>(())
        })
        .await
        .expect("the inner REQUIRES_NEW transaction commits");
        note("outer after");
        Err::<(), _>(Biz::Abort)
    })
    .await;
    assert!(
        matches!(r, Err(TemplateError::Business(Biz::Abort))),
        "{r:?}"
    );
    let seen = take();
    let (outer, inner, after) = (&seen[0].1, &seen[1].1, &seen[2].1);
    assert!(outer.is_some() && inner.is_some(), "{seen:?}");
    assert_ne!(outer, inner, "REQUIRES_NEW begins another transaction");
    assert_eq!(outer, after, "the outer XID is resumed");
    assert_eq!(e.pg_v("a", 1).await, 100, "outer rolled back");
    assert_eq!(e.pg_v("a", 2).await, 202, "inner committed");
    assert_eq!(e.pg.stats().branches_registered, 2);

    // NOT_SUPPORTED inside REQUIRED: a plain local transaction, not undone
    // with the outer one.
    let t2 = t.clone();
    let r = tm::execute(&e.api, &required("outer"), move || async move {
        note("outer");
        at_exec(&e.pg, format!("UPDATE {t2} SET v = v + 10 WHERE id = 1")).await?;
        let info = required("inner").with_propagation(Propagation::NotSupported);
        tm::execute(&e.api, &info, || async {
            note("inner");
            at_exec(&e.pg, format!("UPDATE {t2} SET v = v + 20 WHERE id = 3")).await?;
            Ok::<_, Biz>(())
        })
        .await
        .expect("NOT_SUPPORTED runs");
        note("outer after");
        Err::<(), _>(Biz::Abort)
    })
    .await;
    assert!(
        matches!(r, Err(TemplateError::Business(Biz::Abort))),
        "{r:?}"
    );
    let seen = take();
    assert!(seen[0].1.is_some(), "{seen:?}");
    assert_eq!(seen[1].1, None, "NOT_SUPPORTED suspends the XID");
    assert_eq!(seen[0].1, seen[2].1, "and resumes it");
    assert_eq!(e.pg_v("a", 1).await, 100, "outer rolled back");
    assert_eq!(e.pg_v("a", 3).await, 320, "the local update stays");
    assert_eq!(
        e.pg.stats().branches_registered,
        3,
        "only the outer update was a branch"
    );

    // REQUIRED inside REQUIRED: joins, both rolled back together.
    let t3 = t.clone();
    let r = tm::execute(&e.api, &required("outer"), move || async move {
        note("outer");
        at_exec(&e.pg, format!("UPDATE {t3} SET v = v + 100 WHERE id = 1")).await?;
        tm::execute(&e.api, &required("inner"), || async {
            note("inner");
            at_exec(&e.pg, format!("UPDATE {t3} SET v = v + 100 WHERE id = 2")).await?;
            Ok::<_, Biz>(())
        })
        .await
        .expect("the joined REQUIRED business runs");
        Err::<(), _>(Biz::Abort)
    })
    .await;
    assert!(
        matches!(r, Err(TemplateError::Business(Biz::Abort))),
        "{r:?}"
    );
    let seen = take();
    assert!(seen[0].1.is_some(), "{seen:?}");
    assert_eq!(seen[0].1, seen[1].1, "REQUIRED joins: one XID");
    assert_eq!(e.pg_v("a", 1).await, 100, "outer row rolled back");
    assert_eq!(e.pg_v("a", 2).await, 202, "joined row rolled back too");
    assert_eq!(e.pg.stats().branches_registered, 5);

    // NEVER inside a transaction: refused, the business does not run.
    let r = tm::execute(&e.api, &required("outer"), move || async move {
        let info = required("never").with_propagation(Propagation::Never);
        let inner = tm::execute(&e.api, &info, || async {
            note("never ran");
            Ok::<_, Biz>(())
        })
        .await;
        assert!(
            matches!(
                inner,
                Err(TemplateError::Propagation(TxnError::Propagation(_)))
            ),
            "NEVER inside a transaction, got {inner:?}"
        );
        Ok::<_, Biz>(())
    })
    .await;
    assert!(r.is_ok(), "{r:?}");
    assert!(take().is_empty(), "NEVER's business must not run");

    // MANDATORY outside a transaction: refused, not run.
    let info = required("mandatory").with_propagation(Propagation::Mandatory);
    let r = tm::execute(&e.api, &info, || async {
        note("mandatory ran");
        Ok::<_, Biz>(())
    })
    .await;
    assert!(
        matches!(r, Err(TemplateError::Propagation(TxnError::Propagation(_)))),
        "MANDATORY outside a transaction, got {r:?}"
    );
    assert!(take().is_empty(), "MANDATORY's business must not run");

    // SUPPORTS outside a transaction: runs without one, no branch.
    let branches = e.pg.stats().branches_registered;
    let info = required("supports").with_propagation(Propagation::Supports);
    let t4 = t.clone();
    tm::execute(&e.api, &info, move || async move {
        note("supports");
        at_exec(&e.pg, format!("UPDATE {t4} SET v = v + 5 WHERE id = 3")).await?;
        Ok::<_, Biz>(())
    })
    .await
    .expect("SUPPORTS runs");
    assert_eq!(take(), vec![("supports", None)]);
    assert_eq!(e.pg.stats().branches_registered, branches, "no branch");
    assert_eq!(e.pg_v("a", 3).await, 325);

    e.wait_no_undo_rows("after the propagation cases").await;
    assert!(e.lockable(&e.pg, &format!("{t}:1,2,3")).await);
    env.stop().await;
}

/// One SQL string with UPDATEs of two PostgreSQL tables is one branch
/// locking rows of both; the global rollback restores both tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_statement_batch_rolls_back_both_tables() {
    let env = Env::start("batch", 6).await;
    let e = &env;
    let (ta, tb) = (e.table("a"), e.table("b"));
    let r = tm::execute(&e.api, &required("e2e-batch"), move || async move {
        let n = at_exec(
            &e.pg,
            format!(
                "UPDATE {ta} SET v = v + 7 WHERE id = 1; \
                 UPDATE {tb} SET v = v - 7 WHERE id IN (2, 3)"
            ),
        )
        .await?;
        assert!(n >= 1, "rows affected {n}");
        assert_eq!(e.pg_v("a", 1).await, 107);
        assert_eq!(e.pg_v("b", 2).await, 193);
        assert_eq!(e.pg_v("b", 3).await, 293);
        assert_eq!(e.pg.stats().branches_registered, 1, "one branch");
        assert!(!e.lockable(&e.pg, &format!("{ta}:1")).await);
        assert!(!e.lockable(&e.pg, &format!("{tb}:2")).await);
        assert!(!e.lockable(&e.pg, &format!("{tb}:3")).await);
        assert!(e.lockable(&e.pg, &format!("{tb}:1")).await);
        Err::<(), _>(Biz::Abort)
    })
    .await;
    assert!(
        matches!(r, Err(TemplateError::Business(Biz::Abort))),
        "{r:?}"
    );
    assert_eq!(e.pg_v("a", 1).await, 100, "table a restored");
    assert_eq!(e.pg_v("b", 2).await, 200, "table b restored");
    assert_eq!(e.pg_v("b", 3).await, 300, "table b restored");
    assert_eq!(e.pg_v("a", 2).await, 200);
    e.wait_no_undo_rows("after the rollback").await;
    assert!(
        e.lockable(&e.pg, &format!("{}:1;{}:2,3", e.table("a"), e.table("b")))
            .await
    );
    assert_eq!(e.pg.stats().dirty_rollbacks, 0);
    env.stop().await;
}

/// While a global transaction holds row 1 (its branch committed locally),
/// a local transaction in global lock mode that updates row 1 is refused
/// (after its bounded retries) and changes nothing; rows the global
/// transaction does not hold are fine; after the global commit the update
/// goes through. Also on MariaDB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_lock_mode_respects_global_locks() {
    let env = Env::start("globallock", 7).await;
    let e = &env;
    let t = e.table("a");
    context::scope(None, async {
        let mut g = GlobalTransaction::new(e.api.clone());
        g.begin(60_000, "e2e-global-lock").await.expect("begin");
        at_exec(&e.pg, format!("UPDATE {t} SET v = v + 1 WHERE id = 1"))
            .await
            .expect("AT update PostgreSQL");
        at_exec(&e.my, format!("UPDATE {t} SET v = v + 1 WHERE id = 1"))
            .await
            .expect("AT update MariaDB");
        let branches = (
            e.pg.stats().branches_registered,
            e.my.stats().branches_registered,
        );
        assert_eq!(branches, (1, 1));

        for ds in [&e.pg, &e.my] {
            let conflicts = ds.stats().lock_conflicts;
            let r = context::scope_global_lock(async {
                assert!(context::in_global_lock());
                assert_eq!(context::current_xid(), None);
                at_exec(ds, format!("UPDATE {t} SET v = v * 10 WHERE id = 1")).await
            })
            .await;
            assert!(
                matches!(r, Err(AtError::LockConflict(_))),
                "{}: global lock mode on a held row, got {r:?}",
                ds.resource_id()
            );
            assert_eq!(
                ds.stats().lock_conflicts - conflicts,
                4,
                "{}: one attempt and 3 re-runs",
                ds.resource_id()
            );
            // A row nobody holds.
            let n = context::scope_global_lock(at_exec(
                ds,
                format!("UPDATE {t} SET v = v * 10 WHERE id = 2"),
            ))
            .await
            .unwrap_or_else(|e| panic!("{}: free row: {e}", ds.resource_id()));
            assert_eq!(n, 1);
        }
        // SELECT .. FOR UPDATE checks the global locks too; a plain read
        // does not (read uncommitted across the global transaction).
        let sel = |sql: String| context::scope_global_lock(at_query(&e.pg, sql));
        let r = sel(format!("SELECT v FROM {t} WHERE id = 1 FOR UPDATE")).await;
        assert!(
            matches!(r, Err(AtError::LockConflict(_))),
            "SELECT FOR UPDATE of a held row in global lock mode, got {r:?}"
        );
        let rows = sel(format!("SELECT v FROM {t} WHERE id = 1"))
            .await
            .expect("plain read");
        assert_eq!(rows.rows, vec![vec![Some("101".to_owned())]]);
        let rows = sel(format!("SELECT v FROM {t} WHERE id = 3 FOR UPDATE"))
            .await
            .expect("a free row");
        assert_eq!(rows.rows, vec![vec![Some("300".to_owned())]]);
        assert_eq!(e.pg_v("a", 1).await, 101, "refused update left no trace");
        assert_eq!(e.my_v("a", 1).await, 101, "refused update left no trace");
        assert_eq!((e.pg_v("a", 2).await, e.my_v("a", 2).await), (2000, 2000));
        assert_eq!(
            (
                e.pg.stats().branches_registered,
                e.my.stats().branches_registered
            ),
            branches,
            "global lock mode registers no branch"
        );

        let status = g.commit().await.expect("commit");
        assert_eq!(status, GlobalStatus::Committed);
        for ds in [&e.pg, &e.my] {
            context::scope_global_lock(at_exec(
                ds,
                format!("UPDATE {t} SET v = v * 10 WHERE id = 1"),
            ))
            .await
            .unwrap_or_else(|e| panic!("{}: after the commit: {e}", ds.resource_id()));
        }
    })
    .await;
    assert_eq!(e.pg_v("a", 1).await, 1010);
    assert_eq!(e.my_v("a", 1).await, 1010);
    e.wait_no_undo_rows("after the commit").await;
    env.stop().await;
}

/// A phase-two rollback that cannot get a row lock (a plain transaction
/// holds it) answers retryable: the global rollback reports
/// `RollbackRetrying`, the TC retries, and once the lock is released the
/// branch is undone and the session ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_rollback_is_retried_until_it_succeeds() {
    let env = Env::start("retryrb", 8).await;
    let e = &env;
    let t = e.table("a");
    let (mut blocker, conn) = tokio_postgres::connect(PG_URL, tokio_postgres::NoTls)
        .await
        .expect("second PostgreSQL connection");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let (xid, rollback, blocker_tx) = context::scope(None, async {
        let mut gtx = GlobalTransaction::new(e.api.clone());
        gtx.begin(60_000, "e2e-retry-rollback")
            .await
            .expect("begin");
        let xid = gtx.xid().expect("begun").to_owned();
        at_exec(&e.pg, format!("UPDATE {t} SET v = 111 WHERE id = 1"))
            .await
            .expect("AT update");
        // A plain transaction locks the row (reads, changes nothing).
        let btx = blocker.transaction().await.expect("begin blocker");
        btx.query(
            format!("SELECT v FROM {t} WHERE id = 1 FOR UPDATE").as_str(),
            &[],
        )
        .await
        .expect("lock the row");
        let r = gtx.rollback().await;
        (xid, r, btx)
    })
    .await;
    let status = rollback.expect("a blocked rollback is still a decided rollback");
    assert_eq!(
        status,
        GlobalStatus::RollbackRetrying,
        "the RM answered retryable (lock timeout)"
    );
    assert_eq!(e.pg_v("a", 1).await, 111, "not undone yet");
    assert_eq!(e.undo_rows_of(&xid).await, (1, 0));
    blocker_tx.rollback().await.expect("release the row");
    // The TC retries and finishes.
    let start = Instant::now();
    loop {
        let s = e.api.global_status(&xid).await.expect("status");
        if s == GlobalStatus::Finished {
            break;
        }
        assert!(
            s == GlobalStatus::RollbackRetrying && start.elapsed() < DEADLINE,
            "rollback of {xid} should be retried to the end, got {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(e.pg_v("a", 1).await, 100, "undone after the retry");
    assert_eq!(e.undo_rows_of(&xid).await, (0, 0));
    assert!(e.lockable(&e.pg, &format!("{t}:1")).await);
    assert_eq!(e.pg.stats().dirty_rollbacks, 0);
    env.stop().await;
}

/// A business that outlasts the global timeout: the TC's timeout check
/// rolls the branches back (while the business still runs), and the
/// template reports that the transaction ended instead of committing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_timeout_rolls_back_instead_of_committing() {
    let env = Env::start("timeout", 9).await;
    let e = &env;
    let t = e.table("a");
    let info = required("e2e-timeout").with_timeout_ms(1_000);
    let r = tm::execute(&e.api, &info, move || async move {
        at_exec(&e.pg, format!("UPDATE {t} SET v = 1 WHERE id = 1")).await?;
        at_exec(&e.my, format!("UPDATE {t} SET v = 1 WHERE id = 1")).await?;
        // Past the timeout, the TC rolls back by itself.
        let start = Instant::now();
        while (e.pg_v("a", 1).await, e.my_v("a", 1).await) != (100, 100) {
            assert!(
                start.elapsed() < DEADLINE,
                "the timeout rollback did not undo the branches"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A branch after the timeout rollback is refused by the TC and its
        // local transaction rolled back.
        let late = at_exec(&e.pg, format!("UPDATE {t} SET v = 2 WHERE id = 2")).await;
        assert!(matches!(late, Err(AtError::Tc(_))), "late branch: {late:?}");
        assert_eq!(e.pg_v("a", 2).await, 200, "the late branch left no change");
        Ok::<_, Biz>(())
    })
    .await;
    match &r {
        Err(TemplateError::Commit(TxnError::Ended { status, .. })) => assert!(
            matches!(
                status,
                GlobalStatus::TimeoutRollbacked
                    | GlobalStatus::TimeoutRollbacking
                    | GlobalStatus::Finished
            ),
            "ended as {status:?}"
        ),
        other => panic!("a timed-out transaction must not commit, got {other:?}"),
    }
    assert_eq!((e.pg_v("a", 1).await, e.my_v("a", 1).await), (100, 100));
    e.wait_no_undo_rows("after the timeout rollback").await;
    assert!(e.lockable(&e.pg, &format!("{}:1", e.table("a"))).await);
    assert!(e.lockable(&e.my, &format!("{}:1", e.table("a"))).await);
    env.stop().await;
}

/// Three TC nodes; the client registers on all of them. Transactions begun
/// on any node, branches registered through any node (requests go round
/// robin, the nodes forward to the partition leaders), phase two from the
/// node leading each session partition: commits and rollbacks across both
/// databases end with the right data, no undo rows and no locks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_tc_nodes_commit_and_roll_back() {
    let env = Env::start_nodes("three", 10, 3).await;
    let e = &env;
    let t = e.table("a");
    let mut xids = Vec::new();
    for i in 0..6i64 {
        let id = i % 3 + 1;
        let abort = i % 2 == 1;
        let t = t.clone();
        let seen = Mutex::new(None::<String>);
        let s = &seen;
        let r = tm::execute(&e.api, &required("e2e-three"), move || async move {
            *s.lock().expect("lock") = context::current_xid();
            at_exec(&e.pg, format!("UPDATE {t} SET v = v - 1 WHERE id = {id}")).await?;
            at_exec(&e.my, format!("UPDATE {t} SET v = v + 1 WHERE id = {id}")).await?;
            if abort {
                return Err(Biz::Abort);
            }
            Ok(())
        })
        .await;
        let xid = seen.lock().expect("lock").clone().expect("an XID");
        match (abort, &r) {
            (false, Ok(())) | (true, Err(TemplateError::Business(Biz::Abort))) => {}
            _ => panic!("transaction {i} ({xid}, abort {abort}): {r:?}"),
        }
        xids.push(xid);
    }
    // XIDs name the node the transaction began on: more than one node.
    let nodes: std::collections::BTreeSet<&str> = xids
        .iter()
        .map(|x| x.rsplit_once(':').expect("ip:port:id").0)
        .collect();
    assert!(nodes.len() > 1, "begun on one node only: {xids:?}");
    // Each row: committed once (i = 0, 2, 4 touch rows 1, 3, 2).
    for id in 1..=3 {
        assert_eq!(e.pg_v("a", id).await, id * 100 - 1, "PostgreSQL row {id}");
        assert_eq!(e.my_v("a", id).await, id * 100 + 1, "MariaDB row {id}");
    }
    e.wait_no_undo_rows("after phase two on three nodes").await;
    assert!(e.lockable(&e.pg, &format!("{t}:1,2,3")).await);
    assert!(e.lockable(&e.my, &format!("{t}:1,2,3")).await);
    for x in &xids {
        let start = Instant::now();
        loop {
            let s = e.api.global_status(x).await.expect("status");
            if s == GlobalStatus::Finished {
                break;
            }
            assert!(start.elapsed() < DEADLINE, "{x} still {s:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    env.stop().await;
}

/// INSERT and DELETE branches in both databases, rolled back (the inserted
/// rows go, the deleted rows come back exactly) and then committed; rows
/// of many column types restored exactly by the rollback (no false dirty
/// check).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_delete_and_column_types_round_trip() {
    let env = Env::start("types", 11).await;
    let e = &env;
    let t = e.table("a");
    let ty = e.table("types");
    let pg_row = |id: i64| {
        let ty = ty.clone();
        async move {
            e.pg_admin
                .query_opt(
                    format!("SELECT {ty}::text FROM {ty} WHERE id = {id}").as_str(),
                    &[],
                )
                .await
                .expect("PostgreSQL row")
                .map(|r| r.get::<_, String>(0))
        }
    };
    let my_row = |id: i64| {
        let ty = ty.clone();
        async move {
            e.my_conn()
                .await
                .query_first::<String, _>(format!(
                    "SELECT CONCAT_WS('|', id, n, s, b, f, ts, j, IFNULL(nul, 'NULL')) FROM {ty} WHERE id = {id}"
                ))
                .await
                .expect("MariaDB row")
        }
    };
    e.pg_admin
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {ty}; \
             CREATE TABLE {ty} (id BIGINT PRIMARY KEY, n NUMERIC(12,3), s TEXT, b BOOLEAN, \
               f DOUBLE PRECISION, ts TIMESTAMP(6), j JSONB, nul TEXT); \
             INSERT INTO {ty} VALUES (1, 12.5, 'it''s \\ a \"test\" é 😀', true, 0.1, \
               '2024-02-29 12:34:56.789012', '{{\"a\": [1, 2]}}', NULL)"
        ))
        .await
        .expect("PostgreSQL types table");
    let mut my = e.my_conn().await;
    for sql in [
        format!("DROP TABLE IF EXISTS {ty}"),
        format!(
            "CREATE TABLE {ty} (id BIGINT PRIMARY KEY, n DECIMAL(12,3), s VARCHAR(100), \
             b TINYINT(1), f DOUBLE, ts DATETIME(6), j TEXT, nul VARCHAR(10)) \
             ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        ),
        format!(
            "INSERT INTO {ty} VALUES (1, 12.5, 'it''s \\\\ a \"test\" é 😀', 1, 0.1, \
             '2024-02-29 12:34:56.789012', '{{\"a\": [1, 2]}}', NULL)"
        ),
    ] {
        my.query_drop(&sql)
            .await
            .unwrap_or_else(|e| panic!("MariaDB: {sql}: {e}"));
    }
    drop(my);
    let (pg1, my1) = (pg_row(1).await, my_row(1).await);
    assert!(pg1.is_some() && my1.is_some());

    let update = format!(
        "UPDATE {ty} SET n = n * 3, s = 'other', b = NOT b, f = f * 3, \
         ts = '2000-01-01 00:00:00', j = '[]', nul = 'x' WHERE id = 1"
    );
    let my_update = update.replace("b = NOT b", "b = 1 - b");
    let (ty2, t2) = (ty.clone(), t.clone());
    let (u1, u2) = (update.clone(), my_update.clone());
    let r = tm::execute(&e.api, &required("e2e-types"), move || async move {
        at_exec(&e.pg, u1).await?;
        at_exec(&e.my, u2).await?;
        for ds in [&e.pg, &e.my] {
            at_exec(
                ds,
                format!("INSERT INTO {t2} (id, v) VALUES (10, 1000), (11, 1100)"),
            )
            .await?;
            at_exec(ds, format!("DELETE FROM {t2} WHERE id = 3")).await?;
            at_exec(ds, format!("DELETE FROM {ty2} WHERE id = 1")).await?;
        }
        Err::<(), _>(Biz::Abort)
    })
    .await;
    assert!(
        matches!(r, Err(TemplateError::Business(Biz::Abort))),
        "{r:?}"
    );
    assert_eq!(
        pg_row(1).await,
        pg1,
        "PostgreSQL row of many types restored"
    );
    assert_eq!(my_row(1).await, my1, "MariaDB row of many types restored");
    for id in [10, 11] {
        let n: i64 = e
            .pg_admin
            .query_one(
                format!("SELECT COUNT(*) FROM {t} WHERE id = {id}").as_str(),
                &[],
            )
            .await
            .expect("count")
            .get(0);
        assert_eq!(n, 0, "PostgreSQL insert of {id} undone");
        let n: Option<i64> = e
            .my_conn()
            .await
            .query_first(format!("SELECT COUNT(*) FROM {t} WHERE id = {id}"))
            .await
            .expect("count");
        assert_eq!(n, Some(0), "MariaDB insert of {id} undone");
    }
    assert_eq!((e.pg_v("a", 3).await, e.my_v("a", 3).await), (300, 300));
    assert_eq!(
        (e.pg.stats().dirty_rollbacks, e.my.stats().dirty_rollbacks),
        (0, 0)
    );
    e.wait_no_undo_rows("after the rollback").await;

    // Committed this time.
    let t3 = t.clone();
    tm::execute(&e.api, &required("e2e-insert-delete"), move || async move {
        for ds in [&e.pg, &e.my] {
            at_exec(ds, format!("INSERT INTO {t3} (id, v) VALUES (10, 1000)")).await?;
            at_exec(ds, format!("DELETE FROM {t3} WHERE id = 3")).await?;
        }
        Ok::<_, Biz>(())
    })
    .await
    .expect("commit");
    assert_eq!((e.pg_v("a", 10).await, e.my_v("a", 10).await), (1000, 1000));
    let n: i64 = e
        .pg_admin
        .query_one(
            format!("SELECT COUNT(*) FROM {t} WHERE id = 3").as_str(),
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 0);
    e.wait_no_undo_rows("after the commit").await;
    assert!(e.lockable(&e.pg, &format!("{t}:3,10")).await);
    let _ = e
        .pg_admin
        .batch_execute(&format!("DROP TABLE IF EXISTS {ty}"))
        .await;
    let _ = e
        .my_conn()
        .await
        .query_drop(format!("DROP TABLE IF EXISTS {ty}"))
        .await;
    env.stop().await;
}

/// `TransactionInfo::lock_retry` (Seata's `@GlobalTransactional(
/// lockRetryTimes, lockRetryInterval)`) reaches AT branches through the
/// context and overrides the data source's `AtOptions` (regression test: it
/// was ignored, and a transaction asking for no lock retries still re-ran
/// `lock_retry_times` (3) times).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_lock_retry_config_reaches_at_branches() {
    let env = Env::start("lockretry", 12).await;
    let e = &env;
    let t = e.table("a");
    context::scope(None, async {
        let mut a = GlobalTransaction::new(e.api.clone());
        a.begin(60_000, "e2e-lock-retry-a").await.expect("begin A");
        at_exec(&e.pg, format!("UPDATE {t} SET v = v + 1 WHERE id = 1"))
            .await
            .expect("A updates row 1");
        let mut info = required("e2e-lock-retry-b");
        info.lock_retry = Some(LockRetryConfig {
            interval_ms: 1,
            times: 0,
        });
        let t2 = t.clone();
        let r = context::scope(
            None,
            tm::execute(&e.api, &info, move || async move {
                assert_eq!(context::lock_retry_config(), info.lock_retry);
                at_exec(&e.pg, format!("UPDATE {t2} SET v = v * 2 WHERE id = 1")).await?;
                Ok::<_, Biz>(())
            }),
        )
        .await;
        assert!(
            matches!(
                r,
                Err(TemplateError::Business(Biz::At(AtError::LockConflict(_))))
            ),
            "{r:?}"
        );
        assert_eq!(
            e.pg.stats().lock_conflicts,
            1,
            "lock_retry.times = 0: no re-run after the first conflict"
        );
        a.rollback().await.expect("rollback A");
    })
    .await;
    env.stop().await;
}
