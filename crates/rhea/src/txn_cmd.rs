//! `rhea txn`: distributed-transaction tools against a running TC.
//!
//! * `rhea txn bank`: the bank-transfer demo and proof. Table
//!   `rhea_bank_account(id BIGINT PRIMARY KEY, balance BIGINT NOT NULL)` in a
//!   PostgreSQL and a MariaDB/MySQL database; each transfer moves a random
//!   amount (1..=100) between a random account of each, either direction,
//!   in one global transaction with an AT branch on each database. A
//!   fraction `--abort-ratio` fails on purpose after both updates and must
//!   roll back. At the end it waits for phase two to finish (no undo log
//!   of this TC left, within `--settle-timeout-ms`), checks that no account
//!   is still locked at the TC, and that the total over both databases is
//!   `2 × accounts × 1000`; otherwise it exits non-zero.
//!   `--mode plain` runs the same two updates as two plain local
//!   transactions without a coordinator (the benchmark's baseline).
//!   `--transfers 0` only settles and checks (after a crash, say).
//! * `rhea txn bench`: empty global transactions (begin + commit) per
//!   second.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use rhea_raft::SplitMix64;
use rhea_txn::protocol::BranchType;
use rhea_txn_at::{AtDataSource, AtOptions};
use rhea_txn_client::rpc::{TcClient, TcClientOptions};
use rhea_txn_client::tm::{self, TemplateError, TransactionInfo};
use rhea_txn_client::{ResourceManager, TcApi};
use tokio::sync::Mutex;
use tokio::task::JoinSet;

/// Initial balance of every account.
const INITIAL_BALANCE: i64 = 1000;
/// Most accounts per database.
const MAX_ACCOUNTS: u64 = 10_000_000;
/// Most concurrent workers.
const MAX_CONCURRENCY: usize = 1024;
/// Rows per INSERT when creating accounts.
const INSERT_BATCH_ROWS: u64 = 1000;
/// Account ids per lock query when checking that no lock is left.
const LOCK_QUERY_BATCH: u64 = 1000;

#[derive(Args, Debug)]
pub struct TxnArgs {
    #[command(subcommand)]
    cmd: TxnCmd,
}

#[derive(Subcommand, Debug)]
enum TxnCmd {
    /// Bank transfers between PostgreSQL and MariaDB accounts in global transactions (AT mode).
    Bank(BankArgs),
    /// Empty global transactions (begin + commit) per second against a TC.
    Bench(BenchArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// One global transaction per transfer, an AT branch on each database.
    At,
    /// The same two updates as two plain local transactions (no coordinator).
    Plain,
}

#[derive(Args, Debug)]
pub struct BankArgs {
    /// TC address(es), comma-separated (every node of a TC cluster).
    #[arg(long, default_value = "127.0.0.1:8091")]
    tc: String,
    /// PostgreSQL URL.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pg: String,
    /// MariaDB/MySQL URL.
    #[arg(long, default_value = "mysql://root@127.0.0.1:3306/test")]
    mysql: String,
    /// Accounts in each database.
    #[arg(long, default_value_t = 100)]
    accounts: u64,
    /// Transfers to run (0: only settle and check).
    #[arg(long, default_value_t = 1000)]
    transfers: u64,
    /// Concurrent transfers.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Fraction of transfers that fail on purpose after both updates.
    #[arg(long, default_value_t = 0.1)]
    abort_ratio: f64,
    /// Recreate the table in both databases with `--accounts` accounts of balance 1000, and
    /// delete this TC's old undo logs (never while transactions of this TC run).
    #[arg(long)]
    reset: bool,
    #[arg(long, value_enum, default_value_t = Mode::At)]
    mode: Mode,
    /// Timeout of each global transaction.
    #[arg(long, default_value_t = 60_000)]
    timeout_ms: u32,
    /// How long to wait at the end for phase two to finish.
    #[arg(long, default_value_t = 60_000)]
    settle_timeout_ms: u64,
    /// Seed of the transfers' random choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Table holding the accounts (the same name in both databases).
    #[arg(long, default_value = "rhea_bank_account", value_parser = parse_table)]
    table: String,
    /// Application id registered at the TC.
    #[arg(long, default_value = "rhea-bank")]
    application_id: String,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// TC address(es), comma-separated.
    #[arg(long, default_value = "127.0.0.1:8091")]
    tc: String,
    /// Global transactions to run.
    #[arg(long, default_value_t = 20_000)]
    transactions: u64,
    /// Concurrent transactions.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Hide the progress bar.
    #[arg(long)]
    quiet: bool,
}

pub async fn run(args: TxnArgs) -> anyhow::Result<()> {
    match args.cmd {
        TxnCmd::Bank(a) => bank(a).await,
        TxnCmd::Bench(a) => bench(a).await,
    }
}

fn parse_table(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not a plain table name (letters, digits, _)"
        ))
    }
}

fn tc_addrs(s: &str) -> anyhow::Result<Vec<String>> {
    let addrs: Vec<String> = s
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect();
    if addrs.is_empty() {
        bail!("--tc needs at least one HOST:PORT");
    }
    Ok(addrs)
}

async fn connect_tc(addrs: Vec<String>, application_id: &str) -> anyhow::Result<Arc<TcClient>> {
    let shown = addrs.join(",");
    let client = TcClient::connect(TcClientOptions::new(addrs, application_id))
        .await
        .with_context(|| format!("cannot reach the transaction coordinator at {shown}"))?;
    Ok(Arc::new(client))
}

fn progress(len: u64, quiet: bool) -> anyhow::Result<ProgressBar> {
    if quiet {
        return Ok(ProgressBar::hidden());
    }
    let style = ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} {msg}")
        .context("bad progress bar template")?
        .progress_chars("=> ");
    Ok(ProgressBar::new(len).with_style(style))
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 600_000_000, 3).context("histogram")
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

// ---------------------------------------------------------------- databases

async fn pg_connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {url}"))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "PostgreSQL connection ended");
        }
    });
    Ok(client)
}

async fn my_connect(url: &str) -> anyhow::Result<mysql_async::Conn> {
    let opts = mysql_async::Opts::from_url(url)
        .map_err(|e| anyhow::anyhow!("bad MariaDB/MySQL URL {url}: {e}"))?;
    mysql_async::Conn::new(opts)
        .await
        .with_context(|| format!("cannot connect to MariaDB/MySQL at {url}"))
}

async fn reset_tables(
    pg: &tokio_postgres::Client,
    my: &mut mysql_async::Conn,
    table: &str,
    accounts: u64,
) -> anyhow::Result<()> {
    use mysql_async::prelude::Queryable;
    pg.batch_execute(&format!(
        "DROP TABLE IF EXISTS {table}; \
         CREATE TABLE {table} (id BIGINT PRIMARY KEY, balance BIGINT NOT NULL)"
    ))
    .await
    .with_context(|| format!("PostgreSQL: recreating {table}"))?;
    pg.execute(
        format!("INSERT INTO {table} SELECT g, $1 FROM generate_series(1, $2::bigint) g").as_str(),
        &[&INITIAL_BALANCE, &(accounts as i64)],
    )
    .await
    .context("PostgreSQL: creating accounts")?;
    my.query_drop(format!("DROP TABLE IF EXISTS {table}"))
        .await
        .with_context(|| format!("MariaDB: dropping {table}"))?;
    my.query_drop(format!(
        "CREATE TABLE {table} (id BIGINT PRIMARY KEY, balance BIGINT NOT NULL) ENGINE=InnoDB"
    ))
    .await
    .with_context(|| format!("MariaDB: creating {table}"))?;
    let mut start = 1;
    while start <= accounts {
        let end = (start + INSERT_BATCH_ROWS - 1).min(accounts);
        let values: Vec<String> = (start..=end)
            .map(|i| format!("({i},{INITIAL_BALANCE})"))
            .collect();
        my.query_drop(format!(
            "INSERT INTO {table} (id, balance) VALUES {}",
            values.join(",")
        ))
        .await
        .context("MariaDB: creating accounts")?;
        start = end + 1;
    }
    Ok(())
}

async fn totals(
    pg: &tokio_postgres::Client,
    my: &mut mysql_async::Conn,
    table: &str,
) -> anyhow::Result<(i64, i64, i64, i64)> {
    use mysql_async::prelude::Queryable;
    let row = pg
        .query_one(
            format!("SELECT COALESCE(SUM(balance), 0)::bigint, COUNT(*) FROM {table}").as_str(),
            &[],
        )
        .await
        .context("PostgreSQL: summing balances (run with --reset first?)")?;
    let pg_sum: i64 = row.try_get(0).context("PostgreSQL sum")?;
    let pg_n: i64 = row.try_get(1).context("PostgreSQL count")?;
    let r: Option<(Option<String>, i64)> = my
        .query_first(format!(
            "SELECT CAST(COALESCE(SUM(balance), 0) AS CHAR), COUNT(*) FROM {table}"
        ))
        .await
        .context("MariaDB: summing balances (run with --reset first?)")?;
    let (my_sum, my_n) = r.context("MariaDB: no sum row")?;
    let my_sum: i64 = my_sum
        .unwrap_or_default()
        .parse()
        .context("MariaDB sum is not an integer")?;
    Ok((pg_sum, pg_n, my_sum, my_n))
}

/// `xid LIKE 'a:%' OR ...` over the TC addresses: the undo logs of
/// transactions this TC cluster made.
fn xid_filter(addrs: &[String]) -> String {
    addrs
        .iter()
        .map(|a| format!("xid LIKE '{}:%'", a.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(" OR ")
}

async fn delete_undo_logs(
    pg: &tokio_postgres::Client,
    my: &mut mysql_async::Conn,
    filter: &str,
) -> anyhow::Result<()> {
    use mysql_async::prelude::Queryable;
    let sql = format!("DELETE FROM undo_log WHERE {filter}");
    // The table may not exist yet (the data sources create it).
    if let Err(e) = pg.execute(sql.as_str(), &[]).await
        && e.code() != Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE)
    {
        return Err(e).context("PostgreSQL: deleting old undo logs");
    }
    if let Err(e) = my.query_drop(sql).await {
        let missing = matches!(&e, mysql_async::Error::Server(s) if s.code == 1146);
        if !missing {
            return Err(e).context("MariaDB: deleting old undo logs");
        }
    }
    Ok(())
}

/// Undo logs in normal status (phase two pending) of this TC's transactions.
async fn pending_undo_logs(
    pg: &tokio_postgres::Client,
    my: &mut mysql_async::Conn,
    filter: &str,
) -> anyhow::Result<(i64, i64)> {
    use mysql_async::prelude::Queryable;
    let sql = format!("SELECT COUNT(*) FROM undo_log WHERE log_status = 0 AND ({filter})");
    let pg_n: i64 = pg
        .query_one(sql.as_str(), &[])
        .await
        .context("PostgreSQL: counting undo logs")?
        .try_get(0)
        .context("PostgreSQL undo count")?;
    let my_n: Option<i64> = my
        .query_first(sql)
        .await
        .context("MariaDB: counting undo logs")?;
    Ok((pg_n, my_n.unwrap_or(0)))
}

// ------------------------------------------------------------------- bank

#[derive(Debug)]
enum TransferError {
    /// The failure injected on purpose after both updates.
    Abort,
    At(rhea_txn_at::AtError),
}

impl std::fmt::Display for TransferError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransferError::Abort => f.write_str("aborted on purpose"),
            TransferError::At(e) => write!(f, "{e}"),
        }
    }
}

#[derive(Default)]
struct Counts {
    done: AtomicU64,
    committed: AtomicU64,
    aborted: AtomicU64,
    failed: AtomicU64,
}

struct Transfer {
    pg_account: u64,
    my_account: u64,
    amount: u64,
    /// Money moves from PostgreSQL to MariaDB (else the other way).
    pg_to_my: bool,
    abort: bool,
}

impl Transfer {
    fn draw(rng: &mut SplitMix64, accounts: u64, abort_ratio: f64) -> Transfer {
        Transfer {
            pg_account: rng.range(1, accounts + 1),
            my_account: rng.range(1, accounts + 1),
            amount: rng.range(1, 101),
            pg_to_my: rng.chance(1, 2),
            abort: (rng.next_u64() as f64 / u64::MAX as f64) < abort_ratio,
        }
    }
    fn sql(&self, table: &str) -> (String, String) {
        let (pg_delta, my_delta) = if self.pg_to_my {
            (format!("- {}", self.amount), format!("+ {}", self.amount))
        } else {
            (format!("+ {}", self.amount), format!("- {}", self.amount))
        };
        (
            format!(
                "UPDATE {table} SET balance = balance {pg_delta} WHERE id = {}",
                self.pg_account
            ),
            format!(
                "UPDATE {table} SET balance = balance {my_delta} WHERE id = {}",
                self.my_account
            ),
        )
    }
}

async fn at_transfer(
    tc: &Arc<dyn TcApi>,
    pg: &AtDataSource,
    my: &AtDataSource,
    t: &Transfer,
    table: &str,
    timeout_ms: u32,
) -> Result<(), TemplateError<TransferError>> {
    let (pg_sql, my_sql) = t.sql(table);
    let info = TransactionInfo::named("rhea-bank-transfer").with_timeout_ms(timeout_ms);
    let abort = t.abort;
    tm::execute(tc, &info, || async move {
        pg.run(move |tx| {
            let sql = pg_sql.clone();
            Box::pin(async move { tx.execute(&sql).await })
        })
        .await
        .map_err(TransferError::At)?;
        my.run(move |tx| {
            let sql = my_sql.clone();
            Box::pin(async move { tx.execute(&sql).await })
        })
        .await
        .map_err(TransferError::At)?;
        if abort {
            return Err(TransferError::Abort);
        }
        Ok(())
    })
    .await
}

async fn plain_transfer(
    pg: &mut tokio_postgres::Client,
    my: &mut mysql_async::Conn,
    t: &Transfer,
    table: &str,
) -> anyhow::Result<()> {
    use mysql_async::prelude::Queryable;
    let (pg_sql, my_sql) = t.sql(table);
    let ptx = pg.transaction().await.context("PostgreSQL begin")?;
    ptx.execute(pg_sql.as_str(), &[])
        .await
        .context("PostgreSQL update")?;
    let mut mtx = my
        .start_transaction(mysql_async::TxOpts::default())
        .await
        .context("MariaDB begin")?;
    mtx.query_drop(my_sql).await.context("MariaDB update")?;
    if t.abort {
        mtx.rollback().await.context("MariaDB rollback")?;
        ptx.rollback().await.context("PostgreSQL rollback")?;
        bail!("aborted on purpose");
    }
    ptx.commit().await.context("PostgreSQL commit")?;
    mtx.commit().await.context("MariaDB commit")?;
    Ok(())
}

async fn bank(a: BankArgs) -> anyhow::Result<()> {
    if a.accounts == 0 || a.accounts > MAX_ACCOUNTS {
        bail!("--accounts must be 1..={MAX_ACCOUNTS}");
    }
    if a.concurrency == 0 || a.concurrency > MAX_CONCURRENCY {
        bail!("--concurrency must be 1..={MAX_CONCURRENCY}");
    }
    if !(0.0..=1.0).contains(&a.abort_ratio) {
        bail!("--abort-ratio must be between 0 and 1");
    }
    let addrs = tc_addrs(&a.tc)?;
    let pg_admin = pg_connect(&a.pg).await?;
    let mut my_admin = my_connect(&a.mysql).await?;
    if a.reset {
        reset_tables(&pg_admin, &mut my_admin, &a.table, a.accounts).await?;
        // Undo logs of this TC's earlier transactions refer to the old
        // table (or to a TC whose data directory is gone): drop them.
        delete_undo_logs(&pg_admin, &mut my_admin, &xid_filter(&addrs)).await?;
        println!(
            "reset: {} accounts of balance {INITIAL_BALANCE} in PostgreSQL and in MariaDB",
            a.accounts
        );
    }
    let (p0, pn, m0, mn) = totals(&pg_admin, &mut my_admin, &a.table).await?;
    let expected = 2 * a.accounts as i64 * INITIAL_BALANCE;
    println!(
        "before: PostgreSQL {pn} accounts, total {p0}; MariaDB {mn} accounts, total {m0}; sum {} (expected {expected})",
        p0 + m0
    );
    if pn as u64 != a.accounts || mn as u64 != a.accounts {
        bail!(
            "the databases hold {pn} and {mn} accounts, not --accounts {}: run with --reset",
            a.accounts
        );
    }

    let counts = Arc::new(Counts::default());
    let hist = Arc::new(std::sync::Mutex::new(histogram()?));
    let first_error: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let pb = progress(a.transfers, a.quiet)?;
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tc_client: Option<Arc<TcClient>> = None;
    let mut resources: Vec<String> = Vec::new();
    let mut set = JoinSet::new();
    match a.mode {
        Mode::At => {
            let tc = connect_tc(addrs.clone(), &a.application_id).await?;
            let api: Arc<dyn TcApi> = tc.clone();
            let opts = AtOptions {
                max_connections: a.concurrency + 2,
                ..AtOptions::default()
            };
            let pg = AtDataSource::postgres(&a.pg, api.clone(), opts.clone())
                .await
                .context("PostgreSQL data source")?;
            let my = AtDataSource::mysql(&a.mysql, api.clone(), opts)
                .await
                .context("MariaDB data source")?;
            tc.register_resource(Arc::new(pg.clone()) as Arc<dyn ResourceManager>)
                .await;
            tc.register_resource(Arc::new(my.clone()) as Arc<dyn ResourceManager>)
                .await;
            resources = vec![pg.resource_id().to_owned(), my.resource_id().to_owned()];
            println!(
                "resources: {} and {} registered at {}",
                pg.resource_id(),
                my.resource_id(),
                addrs.join(",")
            );
            for w in 0..a.concurrency {
                let (api, pg, my) = (api.clone(), pg.clone(), my.clone());
                let (counts, hist, first_error, next, pb) = (
                    counts.clone(),
                    hist.clone(),
                    first_error.clone(),
                    next.clone(),
                    pb.clone(),
                );
                let (transfers, accounts, abort_ratio, timeout_ms) =
                    (a.transfers, a.accounts, a.abort_ratio, a.timeout_ms);
                let table = a.table.clone();
                let mut rng =
                    SplitMix64::new(a.seed ^ (w as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                set.spawn(async move {
                    while next.fetch_add(1, Ordering::Relaxed) < transfers {
                        let t = Transfer::draw(&mut rng, accounts, abort_ratio);
                        let t0 = Instant::now();
                        let r = at_transfer(&api, &pg, &my, &t, &table, timeout_ms).await;
                        record(
                            &counts,
                            &hist,
                            &first_error,
                            t0,
                            r.map_err(|e| match e {
                                TemplateError::Business(TransferError::Abort) => None,
                                e => Some(e.to_string()),
                            }),
                        )
                        .await;
                        pb.inc(1);
                    }
                });
            }
            tc_client = Some(tc);
        }
        Mode::Plain => {
            for w in 0..a.concurrency {
                let mut pgc = pg_connect(&a.pg).await?;
                let mut myc = my_connect(&a.mysql).await?;
                let (counts, hist, first_error, next, pb) = (
                    counts.clone(),
                    hist.clone(),
                    first_error.clone(),
                    next.clone(),
                    pb.clone(),
                );
                let (transfers, accounts, abort_ratio) = (a.transfers, a.accounts, a.abort_ratio);
                let table = a.table.clone();
                let mut rng =
                    SplitMix64::new(a.seed ^ (w as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                set.spawn(async move {
                    while next.fetch_add(1, Ordering::Relaxed) < transfers {
                        let t = Transfer::draw(&mut rng, accounts, abort_ratio);
                        let t0 = Instant::now();
                        let r = plain_transfer(&mut pgc, &mut myc, &t, &table).await;
                        let r = match r {
                            Ok(()) => Ok(()),
                            Err(_) if t.abort => Err(None),
                            Err(e) => Err(Some(format!("{e:#}"))),
                        };
                        record(&counts, &hist, &first_error, t0, r).await;
                        pb.inc(1);
                    }
                });
            }
        }
    }
    while let Some(r) = set.join_next().await {
        r.context("a transfer worker failed")?;
    }
    pb.finish_and_clear();
    let elapsed = started.elapsed();
    let committed = counts.committed.load(Ordering::Relaxed);
    let aborted = counts.aborted.load(Ordering::Relaxed);
    let failed = counts.failed.load(Ordering::Relaxed);
    let h = hist
        .lock()
        .map(|h| h.clone())
        .unwrap_or_else(|e| e.into_inner().clone());
    if a.transfers > 0 {
        println!(
            "transfers: {} in {:.2} s ({:.0}/s; committed {committed} = {:.0}/s), rolled back on purpose {aborted}, failed {failed}",
            a.transfers,
            elapsed.as_secs_f64(),
            a.transfers as f64 / elapsed.as_secs_f64(),
            committed as f64 / elapsed.as_secs_f64()
        );
        println!(
            "latency ms: p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}",
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.9)),
            ms(h.value_at_quantile(0.99)),
            ms(h.max())
        );
        if let Some(e) = first_error.lock().await.as_ref() {
            println!("first failure: {e}");
        }
    }

    let mut problems = Vec::new();
    if a.mode == Mode::At {
        // Phase two runs after the global commit or rollback answered; wait
        // for it (the undo logs of this TC's transactions to go).
        let filter = xid_filter(&addrs);
        let deadline = Instant::now() + Duration::from_millis(a.settle_timeout_ms);
        let mut pending = pending_undo_logs(&pg_admin, &mut my_admin, &filter).await?;
        // The TC client keeps serving phase two while we wait.
        let tc = tc_client.context("no TC client in AT mode")?;
        while pending != (0, 0) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            pending = pending_undo_logs(&pg_admin, &mut my_admin, &filter).await?;
        }
        println!(
            "phase two: {} undo logs pending in PostgreSQL, {} in MariaDB",
            pending.0, pending.1
        );
        if pending != (0, 0) {
            problems.push(format!(
                "undo logs still pending after {} ms: {pending:?}",
                a.settle_timeout_ms
            ));
        }
        let locked = locked_accounts(&tc, &a.table, a.accounts, &resources).await?;
        println!("locks: {locked} account batches still locked at the TC");
        if locked > 0 {
            problems.push(format!("{locked} account batches still locked at the TC"));
        }
    }
    let (p1, _, m1, _) = totals(&pg_admin, &mut my_admin, &a.table).await?;
    println!(
        "after: PostgreSQL total {p1}, MariaDB total {m1}, sum {} (expected {expected})",
        p1 + m1
    );
    if p1 + m1 != expected {
        problems.push(format!(
            "INVARIANT VIOLATED: total {} != {expected}",
            p1 + m1
        ));
    }
    if problems.is_empty() {
        println!("OK: the total holds");
        Ok(())
    } else {
        bail!(problems.join("; "))
    }
}

/// Batches of accounts some global transaction still locks, in either
/// database.
async fn locked_accounts(
    tc: &Arc<TcClient>,
    table: &str,
    accounts: u64,
    resources: &[String],
) -> anyhow::Result<u64> {
    let api: Arc<dyn TcApi> = tc.clone();
    let mut locked = 0;
    for resource in resources {
        let mut start = 1;
        while start <= accounts {
            let end = (start + LOCK_QUERY_BATCH - 1).min(accounts);
            let ids: Vec<String> = (start..=end).map(|i| i.to_string()).collect();
            let key = format!("{table}:{}", ids.join(","));
            let lockable = api
                .global_lock_query(BranchType::At, None, resource, &key)
                .await
                .context("querying global locks")?;
            if !lockable {
                locked += 1;
            }
            start = end + 1;
        }
    }
    Ok(locked)
}

async fn record(
    counts: &Counts,
    hist: &std::sync::Mutex<Histogram<u64>>,
    first_error: &Mutex<Option<String>>,
    t0: Instant,
    r: Result<(), Option<String>>,
) {
    counts.done.fetch_add(1, Ordering::Relaxed);
    match r {
        Ok(()) => {
            counts.committed.fetch_add(1, Ordering::Relaxed);
            let us = t0.elapsed().as_micros() as u64;
            if let Ok(mut h) = hist.lock() {
                let _ = h.record(us.max(1));
            }
        }
        Err(None) => {
            counts.aborted.fetch_add(1, Ordering::Relaxed);
        }
        Err(Some(e)) => {
            counts.failed.fetch_add(1, Ordering::Relaxed);
            let mut f = first_error.lock().await;
            if f.is_none() {
                *f = Some(e);
            }
        }
    }
}

// ------------------------------------------------------------------ bench

async fn bench(a: BenchArgs) -> anyhow::Result<()> {
    if a.concurrency == 0 || a.concurrency > MAX_CONCURRENCY {
        bail!("--concurrency must be 1..={MAX_CONCURRENCY}");
    }
    let addrs = tc_addrs(&a.tc)?;
    let tc = connect_tc(addrs.clone(), "rhea-txn-bench").await?;
    let api: Arc<dyn TcApi> = tc.clone();
    let hist = Arc::new(std::sync::Mutex::new(histogram()?));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let next = Arc::new(AtomicU64::new(0));
    let pb = progress(a.transactions, a.quiet)?;
    let started = Instant::now();
    let mut set = JoinSet::new();
    for _ in 0..a.concurrency {
        let (api, hist, errors, first_error, next, pb) = (
            api.clone(),
            hist.clone(),
            errors.clone(),
            first_error.clone(),
            next.clone(),
            pb.clone(),
        );
        let n = a.transactions;
        set.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let t0 = Instant::now();
                let r = async {
                    let xid = api.global_begin("rhea-txn-bench", 60_000).await?;
                    api.global_commit(&xid).await
                }
                .await;
                match r {
                    Ok(_) => {
                        if let Ok(mut h) = hist.lock() {
                            let _ = h.record((t0.elapsed().as_micros() as u64).max(1));
                        }
                    }
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        let mut f = first_error.lock().await;
                        if f.is_none() {
                            *f = Some(e.to_string());
                        }
                    }
                }
                pb.inc(1);
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.context("a bench worker failed")?;
    }
    pb.finish_and_clear();
    let el = started.elapsed().as_secs_f64();
    let h = hist
        .lock()
        .map(|h| h.clone())
        .unwrap_or_else(|e| e.into_inner().clone());
    let errs = errors.load(Ordering::Relaxed);
    println!(
        "empty global transactions: {} in {el:.2} s = {:.0}/s (concurrency {}, TC {}), errors {errs}",
        a.transactions,
        (a.transactions - errs) as f64 / el,
        a.concurrency,
        addrs.join(",")
    );
    println!(
        "latency ms (begin + commit): p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}",
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.9)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max())
    );
    if let Some(e) = first_error.lock().await.as_ref() {
        println!("first error: {e}");
    }
    Ok(())
}
