//! `cargo xtask bench console`: how fast and how lean the console engine is, on the selftest
//! guests under TCG.
//!
//! (a) read-to-verdict latency inside the engine (and rexpect's time-to-marker for contrast),
//! (b) harness wall time vs a raw QEMU run read through a plain pipe, (c) panic line to verdict
//! and to QEMU stopped, (d) peak RSS of a child process that judges a flooding guest.
//! Measure with a release build: `cargo run --release -p xtask -- bench console`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use vmharness::arch::Arch;
use vmharness::artifact::ArtifactRef;
use vmharness::config::LoadedConfig;
use vmharness::outcome::{Outcome, Report};
use vmharness::run::{self, FileResolver, ResolveError, Resolver, RunOptions};

/// The line every selftest scenario but `silent` prints after its banner in `banner`.
const MARKER: &str = "selftest: ok";

#[derive(Args)]
pub struct BenchConsoleArgs {
    /// Runs per arch for (a), (b) and (c).
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Guest architectures (repeatable; default: x86_64, aarch64, riscv64).
    #[arg(long = "arch")]
    arches: Vec<String>,
    /// MiB the flooding guest prints for the peak-RSS measurement (max 1024; 0 skips (d)).
    #[arg(long, default_value_t = 1024)]
    flood_mib: u32,
    /// Smaller flood sizes measured too, to show RSS does not grow with output.
    #[arg(long, value_delimiter = ',', default_values_t = [16u32, 128])]
    flood_also: Vec<u32>,
    /// Guest architecture for the flood.
    #[arg(long, default_value = "x86_64")]
    flood_arch: String,
    /// Skip (a)-(c) (e.g. to measure only the flood).
    #[arg(long)]
    skip_latency: bool,
    /// Also (e): the Linux guests (`vm-configs/linux-<arch>.toml`) booted to power-off by the
    /// harness against the same QEMU argv read on a pipe to its exit.
    #[arg(long)]
    linux: bool,
    /// Internal: judge one flood of this many MiB in this process and print its peak RSS.
    #[arg(long, hide = true)]
    flood_child: Option<u32>,
}

pub fn run(args: BenchConsoleArgs) -> anyhow::Result<()> {
    let temp = tempfile::Builder::new()
        .prefix("vmharness-bench-console-")
        .tempdir()
        .context("creating a temp dir for bench configs and logs")?;
    if let Some(mib) = args.flood_child {
        let arch: Arch = args.flood_arch.parse().map_err(anyhow::Error::msg)?;
        return flood_child(temp.path(), arch, mib);
    }
    if cfg!(debug_assertions) {
        eprintln!(
            "note: debug build; measure with `cargo run --release -p xtask -- bench console`"
        );
    }
    let arches = parse_arches(&args.arches)?;
    let mut rows = Vec::new();
    if !args.skip_latency {
        for &arch in &arches {
            rows.push(bench_arch(temp.path(), arch, args.runs)?);
        }
    }
    if args.linux {
        let mut linux = Vec::new();
        for &arch in &arches {
            linux.push(bench_linux(temp.path(), arch, args.runs)?);
        }
        print_linux(&linux, args.runs);
    }
    let mut floods = Vec::new();
    if args.flood_mib > 0 {
        let arch: Arch = args.flood_arch.parse().map_err(anyhow::Error::msg)?;
        let mut sizes: Vec<u32> = args.flood_also.clone();
        sizes.push(args.flood_mib);
        sizes.sort_unstable();
        sizes.dedup();
        for mib in sizes {
            eprintln!("(d) {arch}: flooding {mib} MiB in a child process ...");
            let flood = flood_parent(arch, mib)?;
            eprintln!(
                "(d) {mib} MiB: {} in {:.1} s, peak RSS {:.1} MiB",
                flood.outcome,
                flood.elapsed.as_secs_f64(),
                flood.peak_rss_kib as f64 / 1024.0
            );
            floods.push(flood);
        }
    }
    print_tables(&rows, &floods, args.runs);
    Ok(())
}

fn parse_arches(names: &[String]) -> anyhow::Result<Vec<Arch>> {
    if names.is_empty() {
        return Ok(vec![Arch::X86_64, Arch::Aarch64, Arch::Riscv64]);
    }
    names
        .iter()
        .map(|name| name.parse().map_err(anyhow::Error::msg))
        .collect()
}

/// A selftest config running `scenario` under TCG, judged by `console` (TOML lines).
fn write_config(
    dir: &Path,
    name: &str,
    arch: Arch,
    scenario: &str,
    console: &str,
    timeouts: &str,
) -> anyhow::Result<LoadedConfig> {
    let scenario_line = match arch {
        Arch::Riscv64 => format!("append = {scenario:?}\n"),
        _ => format!("args = [\"-fw_cfg\", \"name=opt/vmharness/scenario,string={scenario}\"]\n"),
    };
    let text = format!(
        "arch = \"{arch}\"\naccel = \"tcg\"\n[qemu]\nkernel = \"artifact:selftest-{arch}/selftest.elf\"\nexit_device = true\n\
         {scenario_line}[console]\n{console}\n[timeouts]\n{timeouts}\n"
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    vmharness::config::load(&path).with_context(|| format!("loading {}", path.display()))
}

fn run_harness(dir: &Path, loaded: &LoadedConfig, resolver: &dyn FileResolver) -> Report {
    let options = RunOptions {
        log_dir: Some(dir.join("logs").join(&loaded.name)),
        ..RunOptions::default()
    };
    run::run(loaded, resolver, options)
}

/// Resolves each reference once through the catalog, then answers from memory: isolates the
/// engine from the per-run cost of checking the artifact cache (recipe keys run
/// `clang --version` and `ld.lld --version` for build recipes).
struct MemoResolver {
    inner: Resolver,
    known: Mutex<HashMap<ArtifactRef, PathBuf>>,
}

impl FileResolver for MemoResolver {
    fn artifact(&self, reference: &ArtifactRef) -> Result<PathBuf, ResolveError> {
        let key = reference.clone();
        if let Some(path) = self.known.lock().ok().and_then(|k| k.get(&key).cloned()) {
            return Ok(path);
        }
        let path = self.inner.artifact(reference)?;
        if let Ok(mut known) = self.known.lock() {
            known.insert(key, path.clone());
        }
        Ok(path)
    }
}

/// One arch's measurements for (a), (b) and (c), `runs` samples each.
struct ArchRow {
    arch: Arch,
    /// (a) engine: line read -> verdict.
    read_to_verdict: Vec<Duration>,
    /// (a) rexpect: spawn -> `exp_string` returned.
    rexpect_found: Vec<Duration>,
    /// (a)/(b) raw pipe reader: spawn -> marker read.
    raw_found: Vec<Duration>,
    /// (b) raw pipe reader: spawn -> marker read -> QEMU killed and reaped.
    raw_wall: Vec<Duration>,
    /// (b) `vmharness::run::run` from call to return.
    harness_wall: Vec<Duration>,
    /// (b) the part of it outside the console session (resolve, prepare, spawn, teardown).
    harness_setup: Vec<Duration>,
    /// (b) the same with artifact paths memoized ([`MemoResolver`]).
    harness_memo_wall: Vec<Duration>,
    /// (c) panic line read -> verdict.
    panic_to_verdict: Vec<Duration>,
    /// (c) panic line read -> QEMU killed and reaped.
    panic_to_stopped: Vec<Duration>,
}

fn bench_arch(dir: &Path, arch: Arch, runs: usize) -> anyhow::Result<ArchRow> {
    let timeouts = "total = \"60s\"\nno_output = \"30s\"";
    let pass = write_config(
        dir,
        &format!("bench-pass-{arch}"),
        arch,
        "banner",
        &format!("banner = [\"vmharness selftest {arch}\"]\nsuccess = {MARKER:?}"),
        timeouts,
    )?;
    let panic = write_config(
        dir,
        &format!("bench-panic-{arch}"),
        arch,
        "panic 3",
        &format!("banner = [\"vmharness selftest {arch}\"]\nsuccess = \"never printed\""),
        timeouts,
    )?;
    let argv = raw_argv(dir, &pass)?;
    let mut row = ArchRow {
        arch,
        read_to_verdict: Vec::new(),
        rexpect_found: Vec::new(),
        raw_found: Vec::new(),
        raw_wall: Vec::new(),
        harness_wall: Vec::new(),
        harness_setup: Vec::new(),
        harness_memo_wall: Vec::new(),
        panic_to_verdict: Vec::new(),
        panic_to_stopped: Vec::new(),
    };
    let fresh = Resolver::from_env();
    let memo = MemoResolver {
        inner: Resolver::from_env(),
        known: Mutex::new(HashMap::new()),
    };
    // Warm the page cache and the memo once; not counted.
    let warm = run_harness(dir, &pass, &memo);
    if !warm.outcome.is_pass() {
        bail!("{arch}: warm-up run did not pass:\n{warm}");
    }
    for i in 0..runs {
        eprintln!("(a-c) {arch}: run {}/{runs}", i + 1);
        // Interleaved so that load from other users of the machine hits every variant alike.
        let raw = raw_run(&argv, MARKER.as_bytes())?;
        row.raw_found.push(raw.found);
        row.raw_wall.push(raw.wall);

        let started = Instant::now();
        let report = run_harness(dir, &pass, &fresh);
        let wall = started.elapsed();
        row.harness_wall.push(wall);
        row.harness_setup.push(wall.saturating_sub(report.elapsed));
        let timing = line_timing(&report, true)?;
        row.read_to_verdict.push(timing.decided - timing.line_read);

        let started = Instant::now();
        let report = run_harness(dir, &pass, &memo);
        row.harness_memo_wall.push(started.elapsed());
        let timing = line_timing(&report, true)?;
        row.read_to_verdict.push(timing.decided - timing.line_read);

        row.rexpect_found.push(rexpect_run(&argv, MARKER)?);

        let report = run_harness(dir, &panic, &memo);
        let timing = line_timing(&report, false)?;
        row.panic_to_verdict.push(timing.decided - timing.line_read);
        row.panic_to_stopped
            .push(timing.qemu_stopped - timing.line_read);
    }
    Ok(row)
}

fn line_timing(report: &Report, pass: bool) -> anyhow::Result<vmharness::outcome::VerdictTiming> {
    let expected = if pass {
        report.outcome.is_pass()
    } else {
        matches!(&report.outcome, Outcome::Fail { reason } if reason.contains("panic pattern"))
    };
    if !expected {
        bail!("unexpected outcome in a bench run:\n{report}");
    }
    report
        .verdict_timing
        .with_context(|| format!("{}: no line decided the verdict:\n{report}", report.name))
}

/// The exact QEMU argv the harness would run for `loaded`.
fn raw_argv(dir: &Path, loaded: &LoadedConfig) -> anyhow::Result<(PathBuf, Vec<OsString>)> {
    let options = RunOptions::default();
    let prepared = run::prepare(
        loaded,
        &Resolver::from_env(),
        &options,
        &dir.join("logs").join("raw"),
    )
    .map_err(|outcome| anyhow::anyhow!("preparing {}: {outcome}", loaded.name))?;
    // The QMP socket's dir goes away with `prepared`: the raw run has no use for it.
    let mut spec = prepared.spec.clone();
    spec.qmp = None;
    let argv = spec.argv();
    Ok((argv.program().to_path_buf(), argv.args().to_vec()))
}

/// One Linux guest's wall times: raw QEMU on a pipe to exit, and the harness's whole run.
struct LinuxRow {
    arch: Arch,
    raw: Vec<Duration>,
    harness: Vec<Duration>,
}

fn bench_linux(dir: &Path, arch: Arch, runs: usize) -> anyhow::Result<LinuxRow> {
    let root = vmharness::settings::Settings::from_env()?.root;
    let path = root.join("vm-configs").join(format!("linux-{arch}.toml"));
    let loaded = vmharness::config::load(&path).with_context(|| path.display().to_string())?;
    let resolver = Resolver::from_env();
    // Kept for the whole bench: its temp dir holds the disk image the raw argv names.
    let prepared = run::prepare(
        &loaded,
        &resolver,
        &RunOptions::default(),
        &dir.join("logs/raw"),
    )
    .map_err(|outcome| anyhow::anyhow!("preparing {}: {outcome}", loaded.name))?;
    let argv = prepared.spec.argv();
    let argv = (argv.program().to_path_buf(), argv.args().to_vec());
    let warm = run_harness(dir, &loaded, &resolver);
    if !warm.outcome.is_pass() {
        bail!("{arch}: warm-up run did not pass:\n{warm}");
    }
    let mut row = LinuxRow {
        arch,
        raw: Vec::new(),
        harness: Vec::new(),
    };
    for i in 0..runs {
        eprintln!("(e) linux-{arch}: run {}/{runs}", i + 1);
        row.raw.push(raw_until_exit(&argv)?);
        let started = Instant::now();
        let report = run_harness(dir, &loaded, &resolver);
        row.harness.push(started.elapsed());
        if !report.outcome.is_pass() {
            bail!("linux-{arch} did not pass:\n{report}");
        }
    }
    drop(prepared);
    Ok(row)
}

/// Spawns QEMU with its console on a pipe and reads it to the end; the wall time to exit.
fn raw_until_exit(argv: &(PathBuf, Vec<OsString>)) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut child = Command::new(&argv.0)
        .args(&argv.1)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("spawning {}", argv.0.display()))?;
    let mut stdout = child.stdout.take().context("QEMU stdout is not piped")?;
    std::io::copy(&mut stdout, &mut std::io::sink()).context("reading QEMU stdout")?;
    child.wait().context("waiting for QEMU")?;
    Ok(started.elapsed())
}

fn print_linux(rows: &[LinuxRow], runs: usize) {
    println!("\n(e) Linux guests to power-off, median (max) of {runs}, s:\n");
    println!("| guest | raw QEMU, console on a pipe | harness run | ratio |");
    println!("|---|---|---|---|");
    for row in rows {
        let (raw, harness) = (median(&row.raw), median(&row.harness));
        println!(
            "| linux-{} | {:.3} ({:.3}) | {:.3} ({:.3}) | {:.3}× |",
            row.arch,
            raw.as_secs_f64(),
            max(&row.raw).as_secs_f64(),
            harness.as_secs_f64(),
            max(&row.harness).as_secs_f64(),
            ratio(harness, raw)
        );
    }
}

struct RawRun {
    found: Duration,
    wall: Duration,
}

/// Spawns QEMU with its serial console (`-chardev stdio`) on a pipe, reads until `marker`,
/// kills and reaps QEMU: the least a harness can do.
fn raw_run(argv: &(PathBuf, Vec<OsString>), marker: &[u8]) -> anyhow::Result<RawRun> {
    let started = Instant::now();
    let mut child = Command::new(&argv.0)
        .args(&argv.1)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("spawning {}", argv.0.display()))?;
    let mut stdout = child.stdout.take().context("QEMU stdout is not piped")?;
    let mut seen: Vec<u8> = Vec::new();
    let mut buffer = [0u8; 64 * 1024];
    let found = loop {
        let count = stdout.read(&mut buffer).context("reading QEMU stdout")?;
        if count == 0 {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "QEMU closed stdout before printing {:?}",
                String::from_utf8_lossy(marker)
            );
        }
        seen.extend_from_slice(&buffer[..count]);
        if seen.windows(marker.len()).any(|w| w == marker) {
            break started.elapsed();
        }
        // Keep only what could still be the start of a marker split across reads.
        let keep = seen.len().saturating_sub(marker.len());
        seen.drain(..keep);
    };
    let _ = child.kill();
    let _ = child.wait();
    Ok(RawRun {
        found,
        wall: started.elapsed(),
    })
}

/// Spawns the same QEMU under rexpect on a pty and times `exp_string(marker)` from spawn.
fn rexpect_run(argv: &(PathBuf, Vec<OsString>), marker: &str) -> anyhow::Result<Duration> {
    let mut command = Command::new(&argv.0);
    command.args(&argv.1);
    let pid_before = std::process::id();
    let started = Instant::now();
    let spawned = rexpect::spawn_with_options(
        command,
        rexpect::reader::Options {
            timeout_ms: Some(60_000),
            strip_ansi_escape_codes: false,
        },
    );
    if std::process::id() != pid_before {
        // rexpect returns in the forked child when exec fails: never let it run our code.
        std::process::exit(127);
    }
    let mut session = spawned.context("spawning QEMU under rexpect")?;
    let result = session.exp_string(marker);
    let found = started.elapsed();
    let _ = session
        .process
        .kill(rexpect::process::signal::Signal::SIGKILL);
    result.context("rexpect waiting for the marker")?;
    Ok(found)
}

/// One flood measured in a child process.
struct FloodRow {
    mib: u32,
    outcome: String,
    bytes: u64,
    elapsed: Duration,
    peak_rss_kib: u64,
}

/// Runs `xtask bench console --flood-child <mib>` and parses its one-line result.
fn flood_parent(arch: Arch, mib: u32) -> anyhow::Result<FloodRow> {
    let exe = std::env::current_exe().context("locating the xtask binary")?;
    let output = Command::new(&exe)
        .args(["bench", "console", "--flood-arch", &arch.to_string()])
        .args(["--flood-child", &mib.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {} --flood-child", exe.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("flood-result "))
        .with_context(|| {
            format!(
                "flood child printed no result (status {}): {stdout}",
                output.status
            )
        })?;
    let field = |key: &str| -> anyhow::Result<&str> {
        line.split(' ')
            .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
            .with_context(|| format!("flood result lacks `{key}`: {line}"))
    };
    Ok(FloodRow {
        mib,
        outcome: field("outcome")?.to_string(),
        bytes: field("bytes")?.parse().context("flood bytes")?,
        elapsed: Duration::from_secs_f64(field("elapsed")?.parse().context("flood elapsed")?),
        peak_rss_kib: field("vmhwm_kib")?.parse().context("flood vmhwm_kib")?,
    })
}

/// In the child: judge a guest flooding `mib` MiB, then print peak RSS (`VmHWM`).
fn flood_child(dir: &Path, arch: Arch, mib: u32) -> anyhow::Result<()> {
    let loaded = write_config(
        dir,
        &format!("bench-flood-{arch}"),
        arch,
        &format!("flood {mib}"),
        &format!("banner = [\"vmharness selftest {arch}\"]\nsuccess = \"^flood: done$\""),
        "total = \"7200s\"\nstep = \"7200s\"\nno_output = \"60s\"",
    )?;
    let report = run_harness(dir, &loaded, &Resolver::from_env());
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .context("no VmHWM in /proc/self/status")?;
    if !report.outcome.is_pass() {
        eprintln!("{report}");
    }
    println!(
        "flood-result outcome={} bytes={} elapsed={:.3} vmhwm_kib={hwm}",
        report.outcome.label(),
        report.console_bytes,
        report.elapsed.as_secs_f64()
    );
    Ok(())
}

fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    match sorted.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2,
    }
}

fn max(samples: &[Duration]) -> Duration {
    samples.iter().copied().max().unwrap_or_default()
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(f64::MIN_POSITIVE)
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

fn print_tables(rows: &[ArchRow], floods: &[FloodRow], runs: usize) {
    if !rows.is_empty() {
        println!(
            "\nLatency and wall time, {runs} interleaved runs per arch, TCG; median (max), ms\n"
        );
        println!("| arch | (a) read→verdict | (a) raw pipe: spawn→marker | (a) rexpect: spawn→marker | (b) raw wall | (b) harness wall | (b) of which outside the session | (b) ratio | (b) harness wall, artifacts memoized | (b) ratio memoized | (c) panic read→verdict | (c) panic read→QEMU stopped |");
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
        for row in rows {
            let raw = median(&row.raw_wall);
            let harness = median(&row.harness_wall);
            let memo = median(&row.harness_memo_wall);
            println!(
                "| {} | {} ({}) | {} ({}) | {} ({}) | {} | {} | {} | {:.3}× | {} | {:.3}× | {} ({}) | {} ({}) |",
                row.arch,
                ms(median(&row.read_to_verdict)),
                ms(max(&row.read_to_verdict)),
                ms(median(&row.raw_found)),
                ms(max(&row.raw_found)),
                ms(median(&row.rexpect_found)),
                ms(max(&row.rexpect_found)),
                ms(raw),
                ms(harness),
                ms(median(&row.harness_setup)),
                ratio(harness, raw),
                ms(memo),
                ratio(memo, raw),
                ms(median(&row.panic_to_verdict)),
                ms(max(&row.panic_to_verdict)),
                ms(median(&row.panic_to_stopped)),
                ms(max(&row.panic_to_stopped)),
            );
        }
    }
    if !floods.is_empty() {
        println!("\nPeak RSS of the judging process while the guest floods its console\n");
        println!("| flood | outcome | console bytes | elapsed | throughput | peak RSS (VmHWM) |");
        println!("|---|---|---|---|---|---|");
        for flood in floods {
            let secs = flood.elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
            println!(
                "| {} MiB | {} | {} | {:.1} s | {:.2} MiB/s | {:.1} MiB |",
                flood.mib,
                flood.outcome,
                flood.bytes,
                secs,
                flood.bytes as f64 / secs / (1024.0 * 1024.0),
                flood.peak_rss_kib as f64 / 1024.0
            );
        }
    }
}
