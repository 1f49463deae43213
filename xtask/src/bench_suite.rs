//! `cargo xtask bench suite`: the `boot` suite's wall time with two threads against one, run
//! side by side (interleaved, median of `--runs`). Trials start longest first
//! (`vmharness::suite::longest_first`), so the bound is the longest trial or CPU / cores.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use clap::Args;

/// Arguments of `bench suite`.
#[derive(Args)]
pub struct BenchSuiteArgs {
    /// Runs per thread count (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Threads of the parallel run.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

fn suite(threads: usize) -> anyhow::Result<Duration> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args([
            "test",
            "-q",
            "-p",
            "vmharness-tests",
            "--test",
            "boot",
            "--",
        ])
        .arg(format!("--test-threads={threads}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    vmharness::nested_cargo::scrub_cargo_run_env(&mut command);
    let started = Instant::now();
    let status = command.status().context("running the boot suite")?;
    let elapsed = started.elapsed();
    ensure!(
        status.success(),
        "the boot suite failed with {threads} thread(s)"
    );
    Ok(elapsed)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

pub fn run(args: BenchSuiteArgs) -> anyhow::Result<()> {
    ensure!(args.runs >= 1, "--runs must be at least 1");
    // Build and record every trial's duration once (the order uses them); not counted.
    suite(args.threads)?;
    let (mut one, mut many) = (Vec::new(), Vec::new());
    for run in 0..args.runs {
        eprintln!("bench suite: run {}/{}", run + 1, args.runs);
        one.push(suite(1)?);
        many.push(suite(args.threads)?);
    }
    let (one, many) = (median(one), median(many));
    println!("| threads | median wall time | ratio |");
    println!("|---|---|---|");
    println!("| 1 | {:.2} s | 1.00× |", one.as_secs_f64());
    println!(
        "| {} | {:.2} s | {:.2}× |",
        args.threads,
        many.as_secs_f64(),
        many.as_secs_f64() / one.as_secs_f64()
    );
    Ok(())
}
