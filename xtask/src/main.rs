//! `cargo xtask`: developer and CI entry points for vmharness.

mod qemu;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "vmharness developer and CI tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Boot a VM config (default: vm-configs/selftest-<arch>.toml), stream its console, print the verdict.
    Qemu(qemu::QemuArgs),
    /// Probe whether KVM works for x86_64 guests on this host (ignores the cached answer).
    KvmProbe {
        /// Also write the probe guest to this file (boot it by hand with `-kernel`).
        #[arg(long)]
        write_guest: Option<std::path::PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Qemu(args) => qemu::run(args)?,
        Command::KvmProbe { write_guest } => qemu::kvm_probe(write_guest)?,
    };
    std::process::exit(code);
}
