//! `rhea`: the one binary. `rhea server` runs a node; `rhea admin` talks to
//! a running cluster like SOFAJRaft's CliService; `rhea bench` loads it.
//!
//! **Layer rule:** the top of the stack; may import every library crate,
//! nothing imports it. `anyhow` lives here only.

mod admin;
mod bench;
mod config;
mod metrics_http;
mod server;
mod txn_cmd;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "rhea",
    version,
    about = "Rhea: Raft, a RheaKV-style store with the Redis protocol, and more"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run a node (with no flags: a single-node store in ./rhea-data, Redis protocol on 127.0.0.1:6380).
    Server(Box<config::ServerArgs>),
    /// Inspect and change a running cluster (leaders, peers, learners, transfer, snapshot).
    Admin(admin::AdminArgs),
    /// Load generator: ops/s and latency percentiles against a running cluster.
    Bench(bench::BenchArgs),
    /// Distributed transactions: the bank-transfer demo (AT mode over PostgreSQL and MariaDB) and a TC benchmark.
    Txn(txn_cmd::TxnArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the tokio runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let r = rt.block_on(async move {
        match cli.cmd {
            Cmd::Server(a) => server::run(*a).await,
            Cmd::Admin(a) => admin::run(a).await,
            Cmd::Bench(a) => bench::run(a).await,
            Cmd::Txn(a) => txn_cmd::run(a).await,
        }
    });
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
