//! `cargo xtask bench disk`: the in-process FAT32 writer (the `fat32-image` crate) against
//! `truncate -s` + `mkfs.fat -F 32` + `mcopy -s` on four workloads.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use clap::Args;
use fat32_image::{DiskSize, ImageBuilder};

/// Arguments of `bench disk`.
#[derive(Args)]
pub struct BenchDiskArgs {
    /// Runs per workload and tool (the median is reported).
    #[arg(long, default_value_t = 7)]
    runs: usize,
    /// Scratch directory (default: a temp dir under the target directory).
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

/// Deterministic filler bytes (xorshift), incompressible and never all zero.
fn filler(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Input trees: one 30 MiB file; 2000 x 4 KiB files in 20 x 5 nested directories.
fn make_inputs(work: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let big = work.join("input-big");
    fs::create_dir_all(&big)?;
    fs::write(big.join("nimbos-aarch64.bin"), filler(1, 30 << 20))?;
    let many = work.join("input-many");
    for index in 0..2000 {
        let dir = many
            .join(format!("group{:02}", index % 20))
            .join(format!("batch-{}", index % 5));
        fs::create_dir_all(&dir)?;
        fs::write(
            dir.join(format!("payload-{index:04}.dat")),
            filler(index as u64 + 2, 4096),
        )?;
    }
    Ok((big, many))
}

fn run_quiet(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("running {program} (install dosfstools / mtools / coreutils)"))?;
    ensure!(
        status.success(),
        "{program} {} failed: {status}",
        args.join(" ")
    );
    Ok(())
}

/// The mtools baseline: truncate, mkfs.fat -F 32, mcopy -s of the input's top-level entries.
fn mtools_build(input: &Path, size: &str, out: &Path) -> anyhow::Result<()> {
    let out_str = out.to_str().context("utf-8 path")?;
    run_quiet("truncate", &["-s", size, out_str])?;
    run_quiet("mkfs.fat", &["-F", "32", out_str])?;
    let mut args = vec!["-s".to_string(), "-i".into(), out_str.into()];
    for entry in fs::read_dir(input)? {
        args.push(entry?.path().to_string_lossy().into_owned());
    }
    args.push("::/".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_quiet("mcopy", &args)
}

/// Median wall time of `runs` runs of `build` (the output is removed before each run), and
/// the allocated bytes of the last image.
fn measure(
    runs: usize,
    out: &Path,
    mut build: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<(Duration, u64, u64)> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let _ = fs::remove_file(out);
        let start = Instant::now();
        build()?;
        times.push(start.elapsed());
    }
    times.sort();
    let meta = fs::metadata(out)?;
    Ok((times[times.len() / 2], meta.blocks() * 512, meta.len()))
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

pub fn run(args: BenchDiskArgs) -> anyhow::Result<()> {
    ensure!(args.runs >= 1, "--runs must be at least 1");
    let settings = vmharness::settings::Settings::from_env()?;
    let scratch_parent = args.work_dir.unwrap_or_else(|| settings.state_dir());
    fs::create_dir_all(&scratch_parent)?;
    let scratch = tempfile::tempdir_in(&scratch_parent)?;
    let (big, many) = make_inputs(scratch.path())?;
    if cfg!(debug_assertions) {
        eprintln!(
            "warning: debug build; measure with `cargo run --release -p xtask -- bench disk`"
        );
    }
    let workloads = [
        ("64 MiB, one 30 MiB file", &big, "64M", 64u64 << 20),
        ("64 MiB, 2000 x 4 KiB files", &many, "64M", 64 << 20),
        ("1 GiB, one 30 MiB file", &big, "1G", 1 << 30),
        ("1 GiB, 2000 x 4 KiB files", &many, "1G", 1 << 30),
    ];
    println!("| workload | fat32-image (ms) | mtools (ms) | ratio | fat32-image allocated | mtools allocated | apparent |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, input, size_text, size) in workloads {
        let ours_out = scratch.path().join("ours.img");
        let theirs_out = scratch.path().join("mtools.img");
        let builder = ImageBuilder::new()
            .add_host(input.as_path(), "/")
            .size(DiskSize::Bytes(size));
        let (ours, ours_alloc, ours_len) = measure(args.runs, &ours_out, || {
            builder.build(&ours_out)?;
            Ok(())
        })?;
        let (theirs, theirs_alloc, _) = measure(args.runs, &theirs_out, || {
            mtools_build(input, size_text, &theirs_out)
        })?;
        println!(
            "| {name} | {:.1} | {:.1} | {:.2}x | {:.1} MiB | {:.1} MiB | {} MiB |",
            ms(ours),
            ms(theirs),
            ours.as_secs_f64() / theirs.as_secs_f64(),
            ours_alloc as f64 / (1 << 20) as f64,
            theirs_alloc as f64 / (1 << 20) as f64,
            ours_len >> 20,
        );
    }
    Ok(())
}
