//! vmharness's commands for any cargo workspace: `qemu`, `kvm-probe`, `guests`, `disk-img`,
//! `setup`, `test` and `ci`.
//!
//! Three ways to get them:
//!
//! - the `vmharness` binary: `vmharness qemu aarch64`;
//! - the cargo subcommand `cargo-vmharness`: `cargo vmharness qemu aarch64`
//!   (`cargo install --path crates/vmharness-cli` installs both);
//! - a repository's own xtask, in three lines: flatten [`Command`] into its subcommand enum,
//!   call [`declare`] with its name and [`run`] the command:
//!
//! ```no_run
//! use clap::Parser;
//!
//! #[derive(Parser)]
//! #[command(name = "cargo xtask")]
//! struct Cli {
//!     #[command(subcommand)]
//!     command: Task,
//! }
//!
//! #[derive(clap::Subcommand)]
//! enum Task {
//!     #[command(flatten)]
//!     Vmharness(vmharness_cli::Command),
//!     // ... the repository's own tasks
//! }
//!
//! fn main() {
//!     vmharness_cli::declare("cargo xtask");
//!     let Task::Vmharness(command) = Cli::parse().command;
//!     vmharness_cli::exit(vmharness_cli::run(command));
//! }
//! ```
//!
//! The frontend's name reaches every hint ("run `cargo xtask guests lock`") through
//! [`CLI_ENV`], which child processes (`cargo test` under `test` and `ci`) inherit; a test
//! binary run by plain `cargo test` names [`DEFAULT_CLI`].
//!
//! This crate is a frontend: its errors are `anyhow` messages for a person, with the cause
//! chain printed by [`exit`]. The libraries it drives (`vmharness`, `vmharness-artifact`) keep
//! typed errors.

pub mod ci;
pub mod disk;
pub mod guests;
pub mod nested_cargo;
pub mod qemu;
pub mod setup;
mod terminal;
pub mod test;

use std::ffi::OsString;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

pub use vmharness::settings::{CLI_ENV, DEFAULT_CLI};

/// The commands, as a clap subcommand enum: a repository's xtask flattens it into its own
/// (`#[command(flatten)]`).
#[derive(Subcommand)]
pub enum Command {
    /// Boot a VM config (default: `vm-configs/selftest-<arch>.toml`) with its console on the
    /// terminal (type to the guest, Ctrl-] quits), then print the verdict.
    Qemu(qemu::QemuArgs),
    /// Probe whether KVM works for x86_64 guests on this host (ignores the cached answer).
    KvmProbe(qemu::KvmProbeArgs),
    /// Guest artifacts: list, fetch, build, verify, lock, clean.
    Guests(guests::GuestsArgs),
    /// Build a FAT32 disk image from a VM config's `[disk]` section, a manifest, or `--add`.
    DiskImg(disk::DiskImgArgs),
    /// Set up this machine (packages, guest artifacts) and run every test: `cargo test --workspace`.
    Test(test::TestArgs),
    /// Run the CI pipeline: gates and tests as timed steps (GitHub Actions aware).
    Ci(ci::CiArgs),
    /// Install missing host packages (as root or in CI) or print the command to do so.
    Setup,
}

/// The `vmharness` binary's command line.
#[derive(Parser)]
#[command(about = "vmharness: boot, test and CI for VM guests in this cargo workspace")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Runs one command in the cargo workspace around the current directory (or
/// `VMHARNESS_ROOT`); returns the process exit code.
pub fn run(command: Command) -> anyhow::Result<i32> {
    let code = match command {
        Command::Qemu(args) => qemu::run(args)?,
        Command::KvmProbe(args) => qemu::kvm_probe(args.write_guest)?,
        Command::Guests(args) => {
            guests::run(args)?;
            0
        }
        Command::DiskImg(args) => {
            disk::run(args)?;
            0
        }
        Command::Test(args) => test::run(args)?,
        Command::Ci(args) => ci::run(args, &ci::CiPlan::default())?,
        Command::Setup => {
            setup::run()?;
            0
        }
    };
    Ok(code)
}

/// Declares the command the user typed to reach these commands (`cargo xtask`, `vmharness`),
/// so that hints name it: sets [`CLI_ENV`] for this process and the processes it starts.
///
/// Call it first in `main`, before any thread is started.
pub fn declare(name: &str) {
    std::env::set_var(CLI_ENV, name);
}

/// The frontend name hints print here: [`CLI_ENV`], or [`DEFAULT_CLI`] when no frontend
/// declared one.
pub fn cli_name() -> String {
    std::env::var(CLI_ENV)
        .ok()
        .filter(|name| !name.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_CLI.to_string())
}

/// The `vmharness` binary: parses `std::env::args`, runs the command and exits with its code.
pub fn main() -> ! {
    main_as("vmharness", std::env::args_os())
}

/// The `cargo-vmharness` binary: like [`main`], but cargo passes the subcommand's name
/// (`cargo-vmharness vmharness qemu ...`), which is dropped.
pub fn cargo_main() -> ! {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|word| word == "vmharness") {
        args.remove(1);
    }
    main_as("cargo vmharness", args)
}

/// Parses `args` (the first being the program) as frontend `name`, runs and exits.
fn main_as(name: &'static str, args: impl IntoIterator<Item = OsString>) -> ! {
    declare(name);
    let matches = Cli::command()
        .name(name)
        .bin_name(name)
        .get_matches_from(args);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    exit(run(cli.command))
}

/// Ends the process with a command's result: its code, or 1 after printing the error and its
/// causes (expected errors are messages, not stack traces: `RUST_BACKTRACE` is for panics).
pub fn exit(result: anyhow::Result<i32>) -> ! {
    let code = match result {
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
