//! `cargo xtask`: this repository's developer and CI entry points. The vmharness commands
//! (`qemu`, `ci`, `test`, `guests`, `disk-img`, `kvm-probe`, `setup`) come from
//! `vmharness-cli`, the way any repository's xtask gets them; `bench` and this workspace's
//! choices for `ci` are this repository's own.

mod bench_build;
mod bench_cases;
mod bench_console;
mod bench_disk;
mod bench_hash;
mod bench_pss;
mod bench_suite;

use clap::{Parser, Subcommand};
use vmharness_cli::ci::{CargoStep, CiArgs, CiPlan};
use vmharness_cli::Command;

/// This frontend's name, as hints print it.
const CLI: &str = "cargo xtask";

#[derive(Parser)]
#[command(name = "cargo xtask", about = "vmharness developer and CI tasks")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    #[command(flatten)]
    Vmharness(Command),
    /// Run a benchmark.
    Bench {
        #[command(subcommand)]
        bench: Bench,
    },
}

#[derive(Subcommand)]
enum Bench {
    /// In-process FAT32 writer vs `truncate` + `mkfs.fat -F 32` + `mcopy -s`.
    Disk(bench_disk::BenchDiskArgs),
    /// A user's clean `cargo build --tests` of the out-of-tree example, with and without the
    /// artifact store: wall time and crates compiled.
    Build(bench_build::BenchBuildArgs),
    /// The `boot` suite's wall time with several threads against one (trials longest first).
    Suite(bench_suite::BenchSuiteArgs),
    /// Ten `[[case]]`s of each Linux guest: saved states against cold boots, side by side.
    Cases(bench_cases::BenchCasesArgs),
    /// Console engine: read-to-verdict latency, wall time vs a raw pipe reader, panic verdict
    /// time, peak RSS under a flood (selftest guests, TCG; use a release build).
    Console(bench_console::BenchConsoleArgs),
    /// sha256 MB/s: vmharness's (assembly, any profile) against plain sha2, in this build's profile.
    Hash(bench_hash::BenchHashArgs),
    /// Memory of concurrent cases of one Linux guest: PSS of K restored QEMUs (per saved-state
    /// method) and of K cold boots, against one guest alone.
    Pss(bench_pss::BenchPssArgs),
}

fn main() {
    vmharness_cli::declare(CLI);
    vmharness_cli::exit(run(Cli::parse()));
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Task::Vmharness(Command::Ci(args)) => vmharness_cli::ci::run(ci_choices(args), &ci_plan()),
        Task::Vmharness(command) => vmharness_cli::run(command),
        Task::Bench { bench } => {
            match bench {
                Bench::Disk(args) => bench_disk::run(args)?,
                Bench::Build(args) => bench_build::run(args)?,
                Bench::Suite(args) => bench_suite::run(args)?,
                Bench::Console(args) => bench_console::run(args)?,
                Bench::Cases(args) => bench_cases::run(args)?,
                Bench::Hash(args) => bench_hash::run(args)?,
                Bench::Pss(args) => bench_pss::run(args)?,
            }
            Ok(0)
        }
    }
}

/// This workspace's VM tests: the `boot` suite (and `nimbos` where its frontend exists) of the
/// root package, unless the command line names others.
fn ci_choices(mut args: CiArgs) -> CiArgs {
    args.package.get_or_insert_with(|| "vmharness-tests".into());
    if args.tests.is_empty() {
        args.tests.push("boot".into());
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        if root.join("tests/nimbos.rs").is_file() {
            args.tests.push("nimbos".into());
        }
    }
    args
}

/// The xtask frontends' own tests run in CI besides the library tests.
fn ci_plan() -> CiPlan {
    let args = [
        "test",
        "-p",
        "vmharness-tests",
        "--test",
        "xtask_qemu",
        "--test",
        "xtask_ci",
    ];
    CiPlan {
        test_steps: vec![CargoStep {
            name: "xtask tests".into(),
            args: args.map(String::from).to_vec(),
        }],
    }
}
