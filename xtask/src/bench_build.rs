//! `cargo xtask bench build`: what depending on vmharness costs a user's repository. The
//! out-of-tree example is copied away and built clean (`cargo build --tests`, its own target
//! dir, dev profile) with vmharness's default features and with `default-features = false`,
//! alternately, and each build's wall time and number of compiled crates are reported.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use clap::Args;

/// Arguments of `bench build`.
#[derive(Args)]
pub struct BenchBuildArgs {
    /// Clean builds per feature set (alternating; the median is reported).
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Parallel rustc jobs (`cargo build -j`; default: cargo's).
    #[arg(long)]
    jobs: Option<usize>,
}

/// One feature set of the vmharness dependency.
struct Variant {
    name: &'static str,
    dependency: &'static str,
}

const VARIANTS: [Variant; 2] = [
    Variant {
        name: "default features (artifact store)",
        dependency: "vmharness = { path = HARNESS }",
    },
    Variant {
        name: "default-features = false (local files)",
        dependency: "vmharness = { path = HARNESS, default-features = false }",
    },
];

pub fn run(args: BenchBuildArgs) -> anyhow::Result<()> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask has no parent directory")?;
    let example = workspace.join("examples/out-of-tree");
    let harness = workspace.join("harness");
    let scratch = tempfile::tempdir()?;
    let mut results: Vec<Vec<(Duration, usize)>> = vec![Vec::new(); VARIANTS.len()];
    for round in 0..args.runs.max(1) {
        for (index, variant) in VARIANTS.iter().enumerate() {
            let repo = scratch.path().join(format!("repo-{index}-{round}"));
            copy_manifest_and_sources(&example, &repo)?;
            let manifest = repo.join("Cargo.toml");
            let text = std::fs::read_to_string(&manifest)?;
            let line = variant
                .dependency
                .replace("HARNESS", &format!("{:?}", harness.display().to_string()));
            let text = text.replace("vmharness = { path = \"../../harness\" }", &line);
            ensure!(
                text.contains(&line),
                "the example's Cargo.toml no longer names vmharness as expected"
            );
            std::fs::write(&manifest, text)?;
            let (took, crates) = clean_build(&repo, args.jobs)?;
            println!(
                "round {}: {:<42} {:>7.1} s  {:>4} crates compiled",
                round + 1,
                variant.name,
                took.as_secs_f64(),
                crates
            );
            results[index].push((took, crates));
            std::fs::remove_dir_all(&repo)?;
        }
    }
    println!(
        "\nmedian of {} clean `cargo build --tests`:",
        args.runs.max(1)
    );
    let base = median(&results[0]).0.as_secs_f64();
    for (variant, runs) in VARIANTS.iter().zip(&results) {
        let (took, crates) = median(runs);
        println!(
            "  {:<42} {:>7.1} s ({:>3.0}% of default)  {:>4} crates",
            variant.name,
            took.as_secs_f64(),
            100.0 * took.as_secs_f64() / base,
            crates
        );
    }
    Ok(())
}

/// Copies the example without its `target/` (its own Cargo.lock comes along: the same
/// dependency versions every time).
fn copy_manifest_and_sources(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_name() == "target" {
            continue;
        }
        let path: PathBuf = entry.path();
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_manifest_and_sources(&path, &target)?;
        } else {
            std::fs::copy(&path, &target)?;
        }
    }
    Ok(())
}

/// A clean build into the repository's own target dir: wall time and crates compiled.
fn clean_build(repo: &Path, jobs: Option<usize>) -> anyhow::Result<(Duration, usize)> {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    vmharness_cli::nested_cargo::scrub_cargo_run_env(&mut command);
    command
        .current_dir(repo)
        .args(["build", "--tests", "--message-format=json"])
        .env("CARGO_TARGET_DIR", repo.join("target"))
        .env_remove("RUSTFLAGS");
    if let Some(jobs) = jobs {
        command.arg(format!("-j{jobs}"));
    }
    let started = Instant::now();
    let output = command.output().context("running cargo build")?;
    let took = started.elapsed();
    ensure!(
        output.status.success(),
        "cargo build --tests failed in {}:\n{}",
        repo.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    // Every package cargo compiled (a build script's run is not a crate of its own).
    let mut crates = std::collections::BTreeSet::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] == "compiler-artifact" {
            if let Some(id) = message["package_id"].as_str() {
                crates.insert(id.to_string());
            }
        }
    }
    Ok((took, crates.len()))
}

fn median(runs: &[(Duration, usize)]) -> (Duration, usize) {
    let mut sorted = runs.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}
