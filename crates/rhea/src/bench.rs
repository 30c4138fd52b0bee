//! `rhea bench` (being written).
use clap::Args;

#[derive(Args, Debug)]
pub struct BenchArgs {}

pub async fn run(_a: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("rhea bench is not built yet")
}
