//! `cargo xtask`: project chores. Each subcommand lives in its own module.

mod guests;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "vmharness project tasks")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Guest artifacts: list, fetch, build, verify, lock, clean.
    Guests(guests::GuestsArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Task::Guests(args) => guests::run(args),
    }
}
