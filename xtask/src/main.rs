//! `cargo xtask`: developer and CI entry points for vmharness. Each subcommand lives in its
//! own module; all logic is in the `vmharness` library.

mod bench_cases;
mod bench_console;
mod bench_disk;
mod bench_pss;
mod bench_suite;
mod ci;
mod disk;
mod guests;
mod qemu;
mod setup;
mod terminal;
mod test;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "vmharness developer and CI tasks")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Boot a VM config (default: `vm-configs/selftest-<arch>.toml`) with its console on the
    /// terminal (type to the guest, Ctrl-] quits), then print the verdict.
    Qemu(qemu::QemuArgs),
    /// Probe whether KVM works for x86_64 guests on this host (ignores the cached answer).
    KvmProbe {
        /// Also write the probe guest to this file (boot it by hand with `-kernel`).
        #[arg(long)]
        write_guest: Option<std::path::PathBuf>,
    },
    /// Guest artifacts: list, fetch, build, verify, lock, clean.
    Guests(guests::GuestsArgs),
    /// Build a FAT32 disk image from a VM config's `[disk]` section, a manifest, or `--add`.
    DiskImg(disk::DiskImgArgs),
    /// Run a benchmark.
    Bench {
        #[command(subcommand)]
        bench: Bench,
    },
    /// Set up this machine (packages, guest artifacts) and run every test: `cargo test --workspace`.
    Test(test::TestArgs),
    /// Run the CI pipeline: gates and tests as timed steps (GitHub Actions aware).
    Ci(ci::CiArgs),
    /// Install missing host packages (as root or in CI) or print the command to do so.
    Setup,
}

#[derive(Subcommand)]
enum Bench {
    /// In-process FAT32 writer vs `truncate` + `mkfs.fat -F 32` + `mcopy -s`.
    Disk(bench_disk::BenchDiskArgs),
    /// The `boot` suite's wall time with several threads against one (trials longest first).
    Suite(bench_suite::BenchSuiteArgs),
    /// Ten `[[case]]`s of each Linux guest: saved states against cold boots, side by side.
    Cases(bench_cases::BenchCasesArgs),
    /// Console engine: read-to-verdict latency, wall time vs a raw pipe reader, panic verdict
    /// time, peak RSS under a flood (selftest guests, TCG; use a release build).
    Console(bench_console::BenchConsoleArgs),
    /// Memory of concurrent cases of one Linux guest: PSS of K restored QEMUs (per saved-state
    /// method) and of K cold boots, against one guest alone.
    Pss(bench_pss::BenchPssArgs),
}

fn main() {
    // Expected errors are messages, not stack traces: RUST_BACKTRACE is for panics.
    let code = match run(Cli::parse()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", error_chain(error.as_ref()));
            1
        }
    };
    std::process::exit(code);
}

/// An error and its causes, the way the library's reports print them: the message, then one
/// indented `caused by:` line per cause.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    for cause in vmharness::run::causes(error) {
        text.push_str(&format!("\n  caused by: {cause}"));
    }
    text
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    let code = match cli.command {
        Task::Qemu(args) => qemu::run(args)?,
        Task::KvmProbe { write_guest } => qemu::kvm_probe(write_guest)?,
        Task::Guests(args) => {
            guests::run(args)?;
            0
        }
        Task::DiskImg(args) => {
            disk::run(args)?;
            0
        }
        Task::Bench { bench } => {
            match bench {
                Bench::Disk(args) => bench_disk::run(args)?,
                Bench::Suite(args) => bench_suite::run(args)?,
                Bench::Console(args) => bench_console::run(args)?,
                Bench::Cases(args) => bench_cases::run(args)?,
                Bench::Pss(args) => bench_pss::run(args)?,
            }
            0
        }
        Task::Test(args) => test::run(args)?,
        Task::Ci(args) => ci::run(args)?,
        Task::Setup => {
            setup::run()?;
            0
        }
    };
    Ok(code)
}
