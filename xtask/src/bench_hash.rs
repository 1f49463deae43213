//! `cargo xtask bench hash`: the sha256 vmharness uses (`vmharness-digest`, assembly with
//! runtime CPU dispatch) against plain `sha2` (pure Rust), both compiled in the profile this
//! xtask was built with: `cargo xtask` is a dev build like a user crate's tests, `cargo run
//! --release -p xtask` the optimised one. Reports MB/s and the ratio, median of `--runs`.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use clap::Args;
use sha2::Digest;

/// Arguments of `bench hash`.
#[derive(Args)]
pub struct BenchHashArgs {
    /// Runs per hasher and workload (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// MiB hashed per run (64 is the size of the test suite's disk images).
    #[arg(long, default_value_t = 64)]
    mib: usize,
}

/// Deterministic incompressible bytes (xorshift).
fn filler(len: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn vmharness_bytes(bytes: &[u8]) -> String {
    vmharness_digest::bytes_sha256(bytes)
}

fn sha2_bytes(bytes: &[u8]) -> String {
    format!("{:x}", sha2::Sha256::digest(bytes))
}

/// What a case pays: `vmharness_digest::file_sha256` of a file it has not seen yet.
fn vmharness_file(path: &Path) -> anyhow::Result<String> {
    vmharness_digest::file_sha256(path).with_context(|| format!("hashing {}", path.display()))
}

/// The same read loop (1 MiB buffer) over sha2.
fn sha2_file(path: &Path) -> anyhow::Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

fn timed(work: impl FnOnce() -> anyhow::Result<String>) -> anyhow::Result<(Duration, String)> {
    let started = Instant::now();
    let hex = work()?;
    Ok((started.elapsed(), hex))
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

pub fn run(args: BenchHashArgs) -> anyhow::Result<()> {
    ensure!(args.runs >= 1, "--runs must be at least 1");
    ensure!(args.mib >= 1, "--mib must be at least 1");
    let bytes = filler(args.mib << 20);
    let work = tempfile::tempdir().context("creating a scratch dir")?;
    let profile = if cfg!(debug_assertions) {
        "dev (unoptimised)"
    } else {
        "release"
    };
    let (mut ours, mut plain) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    for run in 0..args.runs {
        eprintln!("bench hash: run {}/{}", run + 1, args.runs);
        // A new file per run: file_sha256 remembers a file it has hashed.
        let path = work.path().join(format!("disk-{run}.img"));
        std::fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
        let (a, a_hex) = timed(|| Ok(vmharness_bytes(&bytes)))?;
        let (b, b_hex) = timed(|| Ok(sha2_bytes(&bytes)))?;
        let (c, c_hex) = timed(|| vmharness_file(&path))?;
        let (d, d_hex) = timed(|| sha2_file(&path))?;
        ensure!(
            a_hex == b_hex && c_hex == d_hex && a_hex == c_hex,
            "the hashers disagree: vmharness {a_hex} / {c_hex}, sha2 {b_hex} / {d_hex}"
        );
        ours[0].push(a);
        plain[0].push(b);
        ours[1].push(c);
        plain[1].push(d);
    }
    let mb = (args.mib << 20) as f64 / 1e6;
    println!(
        "profile: {profile}; {} MiB, median of {} runs",
        args.mib, args.runs
    );
    println!(
        "| workload | vmharness-digest (MB/s) | sha2 0.10 (MB/s) | time ratio (vmharness / sha2) |"
    );
    println!("|---|---:|---:|---:|");
    for (index, workload) in ["in memory", "file (page cache warm)"].iter().enumerate() {
        let ours = median(std::mem::take(&mut ours[index])).as_secs_f64();
        let plain = median(std::mem::take(&mut plain[index])).as_secs_f64();
        println!(
            "| {workload} | {:.0} | {:.0} | {:.3}x |",
            mb / ours,
            mb / plain,
            ours / plain
        );
    }
    Ok(())
}
