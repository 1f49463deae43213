//! `cargo xtask bench suite`: a suite's wall time (`--test boot` by default, or `nimbos`,
//! optionally only the trials matching `--filter`) with two threads against one, run side by
//! side (interleaved, median of `--runs`; `--parallel-only` skips the one-thread runs). Trials
//! start longest first (`vmharness::suite::longest_first`), so the bound is the longest trial or
//! CPU / cores.

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
    /// The test target (`boot`, `nimbos`).
    #[arg(long = "test", default_value = "boot")]
    target: String,
    /// Only the trials whose names contain this (libtest filter; repeatable).
    #[arg(long)]
    filter: Vec<String>,
    /// Time the parallel run only (no one-thread runs).
    #[arg(long)]
    parallel_only: bool,
}

fn suite(args: &BenchSuiteArgs, threads: usize) -> anyhow::Result<Duration> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args([
            "test",
            "-q",
            "-p",
            "vmharness-tests",
            "--test",
            &args.target,
            "--",
        ])
        .args(&args.filter)
        .arg(format!("--test-threads={threads}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    vmharness_cli::nested_cargo::scrub_cargo_run_env(&mut command);
    let started = Instant::now();
    let status = command
        .status()
        .with_context(|| format!("running the {} suite", args.target))?;
    let elapsed = started.elapsed();
    ensure!(
        status.success(),
        "the {} suite failed with {threads} thread(s)",
        args.target
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
    suite(&args, args.threads)?;
    let (mut one, mut many) = (Vec::new(), Vec::new());
    for run in 0..args.runs {
        eprintln!("bench suite: run {}/{}", run + 1, args.runs);
        if !args.parallel_only {
            one.push(suite(&args, 1)?);
        }
        many.push(suite(&args, args.threads)?);
    }
    let many = median(many);
    println!("| threads | median wall time | ratio |");
    println!("|---|---|---|");
    if args.parallel_only {
        println!("| {} | {:.2} s | – |", args.threads, many.as_secs_f64());
        return Ok(());
    }
    let one = median(one);
    println!("| 1 | {:.2} s | 1.00× |", one.as_secs_f64());
    println!(
        "| {} | {:.2} s | {:.2}× |",
        args.threads,
        many.as_secs_f64(),
        many.as_secs_f64() / one.as_secs_f64()
    );
    Ok(())
}
