//! Developer tasks for vmharness: `cargo xtask <command>`.

mod bench_disk;
mod disk;

use clap::{Parser, Subcommand};

/// vmharness developer tasks.
#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build a FAT32 disk image from a VM config's `[disk]` section, a manifest, or `--add`.
    DiskImg(disk::DiskImgArgs),
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
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::DiskImg(args) => disk::run(args),
        Command::Bench { bench } => match bench {
            Bench::Disk(args) => bench_disk::run(args),
        },
    }
}
