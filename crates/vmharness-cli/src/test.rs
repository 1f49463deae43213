//! `test`: the one command that sets up a fresh machine and runs every test.
//!
//! 1. `setup`: host packages (QEMU, clang/lld, dosfstools, mtools, U-Boot, ...) and apt sources.
//! 2. `guests fetch`: every guest artifact, verified against `guests.lock`. Artifacts that
//!    cannot be obtained here (no network) are reported; their trials are then ignored, or
//!    fail when `VMHARNESS_REQUIRE_ARTIFACTS=1`.
//! 3. `cargo test --workspace`: library tests, integration tests and every VM-config trial.

use std::process::Command;

use anyhow::{bail, Context};
use vmharness::artifact::Catalog;

/// Arguments of `test`.
#[derive(clap::Args)]
pub struct TestArgs {
    /// Skip host setup (packages and apt sources).
    #[arg(long)]
    pub no_setup: bool,
    /// Arguments for the test binaries (filters, `--nocapture`, ...).
    #[arg(last = true)]
    pub test_args: Vec<String>,
}

/// Sets up the host, fetches every guest artifact, then runs `cargo test --workspace
/// --all-targets` in the workspace around the current directory; returns its exit code.
pub fn run(args: TestArgs) -> anyhow::Result<i32> {
    // An unusable environment fails before the machine is set up, not after.
    vmharness::settings::Settings::from_env()?;
    if !args.no_setup {
        crate::setup::run()?;
    }
    fetch_guests()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command.args(["test", "--workspace", "--all-targets"]);
    if !args.test_args.is_empty() {
        command.arg("--").args(&args.test_args);
    }
    println!("test: {command:?}");
    let status = command.status().context("running cargo test")?;
    Ok(status.code().unwrap_or(1))
}

fn fetch_guests() -> anyhow::Result<()> {
    let settings = vmharness::settings::Settings::from_env()?;
    let catalog = Catalog::load(&settings.guests_dir()).context("loading guests/*.toml")?;
    let options = settings.artifacts;
    let mut failed = Vec::new();
    for name in catalog.names() {
        match catalog.resolve(name, &options) {
            Ok(_) => println!("guests: {name} ready"),
            Err(err) if err.is_unavailable() => {
                println!("guests: {name} unavailable here, its trials will be ignored: {err}")
            }
            Err(err) => {
                eprintln!("guests: {name} FAILED: {err}");
                failed.push(name.to_string());
            }
        }
    }
    if !failed.is_empty() {
        bail!("guest artifacts failed: {}", failed.join(", "));
    }
    Ok(())
}
