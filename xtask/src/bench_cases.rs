//! `cargo xtask bench cases`: each arch's Linux guest with ten `[[case]]`s, the suite's wall
//! time with saved states against booting every case cold, side by side in one run (the two
//! modes interleaved, medians of `--runs`), for each QEMU given (`--qemu-dir`, default the one
//! on `PATH`). Every saved run starts with an empty state store, so its time includes the one
//! boot to `[ready]` and the save.
//!
//! `--spare on,off` compares cases restored in a QEMU started while the case before ran (the
//! suite's behaviour with one trial at a time, `VMHARNESS_SPARE_QEMU`) with each case starting
//! its own; a spare's restore times count from the case taking it over.
//!
//! The probe is `echo {token}` here by default, so "first answer" is the restore's own cost.
//! `--probe-sleep 0.1,0.001` measures probes that prove the guest's timer fires after the
//! restore, as the Linux configs' probe does (`date -s @{epoch}; sleep 0.1; echo {token}`), with
//! other sleeps: one row each.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use clap::Args;
use vmharness::arch::Arch;
use vmharness::outcome::Report;
use vmharness::run::{self, Note, Resolver, RunOptions};
use vmharness::settings::Settings;

/// Arguments of `bench cases`.
#[derive(Args)]
pub struct BenchCasesArgs {
    /// Runs per mode (medians are reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Guest arches (riscv64 boots cold in both modes: its restores are known broken).
    #[arg(long, value_delimiter = ',', default_value = "x86_64,aarch64")]
    arch: Vec<Arch>,
    /// A directory with `qemu-system-<arch>` binaries to measure (repeatable; default: `PATH`).
    #[arg(long = "qemu-dir")]
    qemu_dirs: Vec<PathBuf>,
    /// Save states with each of these methods (`exec`, `file`, `mapped-ram`, `template`), one row each,
    /// instead of the best the QEMU version offers. Cold boots are measured once per arch.
    #[arg(long, value_delimiter = ',')]
    methods: Vec<vmharness::settings::Method>,
    /// Restore in a QEMU started while the case before ran (`on`), or each case in its own
    /// (`off`); one row each.
    #[arg(long, value_delimiter = ',', default_value = "on")]
    spare: Vec<SpareMode>,
    /// The probe after each restore: `none` (`echo {token}`), or a sleep in seconds before it,
    /// as the Linux configs' probe (`date -s @{epoch} >/dev/null; sleep <s>; echo {token}`);
    /// one row each.
    #[arg(long, value_delimiter = ',', default_value = "none", value_parser = parse_probe_sleep)]
    probe_sleep: Vec<ProbeSleep>,
}

/// The sleep in a bench probe, as given (`None`: no sleep, no clock set).
#[derive(Clone, PartialEq)]
struct ProbeSleep(Option<String>);

impl ProbeSleep {
    /// The `[ready] probe` line.
    fn probe(&self) -> String {
        match &self.0 {
            None => "echo {token}".to_string(),
            Some(sleep) => format!("date -s @{{epoch}} >/dev/null; sleep {sleep}; echo {{token}}"),
        }
    }

    /// The table's probe column.
    fn name(&self) -> String {
        match &self.0 {
            None => "echo".to_string(),
            Some(sleep) => format!("sleep {sleep}"),
        }
    }
}

/// `none`, or seconds as busybox `sleep` takes them (a positive decimal).
fn parse_probe_sleep(text: &str) -> Result<ProbeSleep, String> {
    if text == "none" {
        return Ok(ProbeSleep(None));
    }
    match text.parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs < 10.0 && !text.contains(['e', 'E']) => {
            Ok(ProbeSleep(Some(text.to_string())))
        }
        _ => Err(format!(
            "`{text}` is not `none` or a sleep in seconds between 0 and 10 (e.g. 0.1)"
        )),
    }
}

/// Whether cases may take a QEMU started early.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SpareMode {
    On,
    Off,
}

impl SpareMode {
    fn name(self) -> &'static str {
        match self {
            SpareMode::On => "on",
            SpareMode::Off => "off",
        }
    }
}

/// Cases of the benchmark config: each reads the FAT32 disk once.
const CASES: usize = 10;

/// One mode's run of the ten cases.
struct Sample {
    wall: Duration,
    /// Restores: (QEMU start → running, → first answer).
    restores: Vec<(Duration, Duration)>,
    /// Per restored case: outside QEMU (plan, disk, key, logs), and the case's own steps.
    overheads: Vec<(Duration, Duration)>,
    /// Per restored case (not the one that saved): its whole wall time.
    case_walls: Vec<Duration>,
    boot: Option<Duration>,
    save: Option<Duration>,
    state_bytes: Option<u64>,
    /// The `template` RAM file's bytes on disk.
    ram_bytes: Option<u64>,
    method: Option<&'static str>,
    /// Restores in a QEMU started while the case before ran.
    early: usize,
}

/// The benchmark config: `vm-configs/linux-<arch>.toml` with ten cases, `binary` and `probe`.
fn config(
    root: &Path,
    dir: &Path,
    arch: Arch,
    binary: &str,
    probe: &ProbeSleep,
    index: usize,
) -> anyhow::Result<PathBuf> {
    let source = root.join(format!("vm-configs/linux-{arch}.toml"));
    let text = std::fs::read_to_string(&source)
        .with_context(|| format!("reading {}", source.display()))?;
    let mut table: toml::Table = toml::from_str(&text)?;
    let cases: Vec<toml::Value> = (0..CASES)
        .map(|i| {
            toml::Value::try_from(toml::toml! {
                name = (format!("read-{i}"))
                steps = [
                    { send_line = (format!("cat /mnt/run.sh | wc -l; echo case-{i}")) },
                    { expect = (format!("^case-{i}$")) },
                ]
            })
        })
        .collect::<Result<_, _>>()?;
    table.insert("case".into(), toml::Value::Array(cases));
    let ready = table
        .get_mut("ready")
        .and_then(toml::Value::as_table_mut)
        .context("the Linux config has no [ready]")?;
    ready.insert("probe".into(), probe.probe().into());
    table
        .get_mut("qemu")
        .and_then(toml::Value::as_table_mut)
        .context("the Linux config has no [qemu]")?
        .insert("binary".into(), binary.into());
    let path = dir.join(format!("bench-linux-{arch}-{index}.toml"));
    std::fs::write(&path, toml::to_string(&table)?)?;
    Ok(path)
}

fn run_cases(config: &Path, settings: &Settings) -> anyhow::Result<Sample> {
    let loaded = vmharness::config::load(config)?;
    let resolver = Resolver::from_settings(settings);
    let mut sample = Sample {
        wall: Duration::ZERO,
        restores: Vec::new(),
        overheads: Vec::new(),
        case_walls: Vec::new(),
        boot: None,
        save: None,
        state_bytes: None,
        ram_bytes: None,
        method: None,
        early: 0,
    };
    // Cases one at a time, as the suite runs them with one trial thread.
    let spares = run::SpareQemu::allow(1);
    let started = Instant::now();
    for case in &loaded.config.cases {
        let options = RunOptions {
            settings: Some(settings.clone()),
            ..RunOptions::default()
        };
        let case_started = Instant::now();
        let report: Report = run::run_case(&loaded, &case.name, &resolver, options);
        let case_wall = case_started.elapsed();
        ensure!(report.outcome.is_pass(), "{report}");
        for note in &report.notes {
            match note {
                Note::StateSaved {
                    bytes,
                    ram_bytes,
                    boot,
                    save,
                    ..
                } => {
                    sample.boot = Some(*boot);
                    sample.save = Some(*save);
                    sample.state_bytes = Some(*bytes);
                    sample.ram_bytes = *ram_bytes;
                }
                Note::StateRestored {
                    method,
                    resumed,
                    took,
                    started_early,
                    ..
                } => {
                    sample.method = Some(method);
                    sample.early += usize::from(*started_early);
                    sample.restores.push((*resumed, *took));
                    if !report
                        .notes
                        .iter()
                        .any(|n| matches!(n, Note::StateSaved { .. }))
                    {
                        sample.case_walls.push(case_wall);
                        sample.overheads.push((
                            case_wall.saturating_sub(report.elapsed),
                            report.elapsed.saturating_sub(*took),
                        ));
                    }
                }
                _ => {}
            }
        }
    }
    sample.wall = started.elapsed();
    drop(spares);
    Ok(sample)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

fn secs(duration: Duration) -> String {
    format!("{:.2} s", duration.as_secs_f64())
}

pub fn run(args: BenchCasesArgs) -> anyhow::Result<()> {
    ensure!(args.runs >= 1, "--runs must be at least 1");
    let base = Settings::from_env()?;
    let scratch = tempfile::tempdir()?;
    let qemus: Vec<Option<PathBuf>> = match args.qemu_dirs.is_empty() {
        true => vec![None],
        false => args.qemu_dirs.iter().cloned().map(Some).collect(),
    };
    println!("| arch | QEMU | method | spare | probe | cold: {CASES} cases | saved: {CASES} cases | ratio | boot to [ready] | save | restore → running | restore → first answer | per case: wall | per case: outside QEMU | per case: its steps | state on disk | RAM file on disk | target: 1 boot + {CASES} × 0.25 s |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for qemu in &qemus {
        for &arch in &args.arch {
            let name = arch.spec().qemu_binary;
            let binary = match qemu {
                Some(dir) => dir.join(name).display().to_string(),
                None => name.to_string(),
            };
            let found = vmharness::qemu::find_binary(&binary)?;
            let version = vmharness::qemu::version(&found)?;
            let configs = args
                .probe_sleep
                .iter()
                .enumerate()
                .map(|(index, probe)| {
                    config(&base.root, scratch.path(), arch, &binary, probe, index)
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let methods: Vec<Option<vmharness::settings::Method>> = match args.methods.is_empty() {
                true => vec![None],
                false => args.methods.iter().copied().map(Some).collect(),
            };
            let rows: Vec<(Option<vmharness::settings::Method>, SpareMode, usize)> = methods
                .iter()
                .flat_map(|method| args.spare.iter().map(move |spare| (*method, *spare)))
                .flat_map(|(method, spare)| {
                    (0..configs.len()).map(move |probe| (method, spare, probe))
                })
                .collect();
            let mut cold = Vec::new();
            let mut saved: Vec<Vec<Sample>> = rows.iter().map(|_| Vec::new()).collect();
            for run in 0..args.runs {
                eprintln!(
                    "bench cases: {arch} on QEMU {version}, run {}/{}",
                    run + 1,
                    args.runs
                );
                let dir = scratch.path().join(format!("{arch}-{version}-{run}"));
                for (index, (method, spare, probe)) in rows.iter().enumerate() {
                    let mut settings = base.clone();
                    settings.target_dir = dir.join(format!("saved-{index}"));
                    settings.state_method = *method;
                    settings.spare_qemu = *spare == SpareMode::On;
                    saved[index].push(run_cases(&configs[*probe], &settings)?);
                }
                // Cold boots never probe: one config serves.
                let mut settings = base.clone();
                settings.target_dir = dir.join("cold");
                settings.saved_states = false;
                settings.spare_qemu = false;
                cold.push(run_cases(&configs[0], &settings)?);
            }
            let cold_wall = median(cold.iter().map(|s| s.wall).collect());
            for (saved, (_, spare, probe)) in saved.iter().zip(&rows) {
                let probe = args.probe_sleep[*probe].name();
                row(arch, &version, *spare, &probe, cold_wall, saved);
            }
        }
    }
    Ok(())
}

/// One table row: the saved runs of one method against the cold median.
fn row(
    arch: Arch,
    version: &vmharness::qemu::QemuVersion,
    spare: SpareMode,
    probe: &str,
    cold_wall: Duration,
    saved: &[Sample],
) {
    let saved_wall = median(saved.iter().map(|s| s.wall).collect());
    let restores: Vec<(Duration, Duration)> =
        saved.iter().flat_map(|s| s.restores.clone()).collect();
    let boot = median(saved.iter().filter_map(|s| s.boot).collect());
    let save = median(saved.iter().filter_map(|s| s.save).collect());
    let running = median(restores.iter().map(|r| r.0).collect());
    let answer = median(restores.iter().map(|r| r.1).collect());
    let case_wall = median(saved.iter().flat_map(|s| s.case_walls.clone()).collect());
    let outside = median(
        saved
            .iter()
            .flat_map(|s| s.overheads.iter().map(|o| o.0))
            .collect(),
    );
    let steps = median(
        saved
            .iter()
            .flat_map(|s| s.overheads.iter().map(|o| o.1))
            .collect(),
    );
    let bytes = saved
        .iter()
        .filter_map(|s| s.state_bytes)
        .max()
        .unwrap_or(0);
    let ram = saved.iter().filter_map(|s| s.ram_bytes).max();
    let method = saved.iter().find_map(|s| s.method).unwrap_or("none (cold)");
    let target = boot + Duration::from_millis(250) * CASES as u32;
    // How many restores took a spare over, of all.
    let early: usize = saved.iter().map(|s| s.early).sum();
    let spare = match spare {
        SpareMode::Off => "off".to_string(),
        SpareMode::On => format!("{} ({early}/{} restores)", spare.name(), restores.len()),
    };
    println!(
                "| {arch} | {version} | {method} | {spare} | {probe} | {} | {} | {:.2}× | {} | {} | {} | {} | {} | {} | {} | {:.2} MB | {} | {} ({}) |",
                secs(cold_wall),
                secs(saved_wall),
                saved_wall.as_secs_f64() / cold_wall.as_secs_f64(),
                secs(boot),
                secs(save),
                secs(running),
                secs(answer),
                secs(case_wall),
                secs(outside),
                secs(steps),
                bytes as f64 / 1e6,
                ram.map_or("none".to_string(), |ram| format!("{:.0} MB", ram as f64 / 1e6)),
                secs(target),
                if saved_wall <= target { "met" } else { "missed" },
            );
}
