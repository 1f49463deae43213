//! `cargo xtask bench disk`: placeholder replaced below.
use clap::Args;
#[derive(Args)]
pub struct BenchDiskArgs {}
pub fn run(_args: BenchDiskArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
