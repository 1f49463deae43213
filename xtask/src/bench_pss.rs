//! `cargo xtask bench pss`: what concurrent cases of one Linux guest cost in memory, restored
//! from a saved state (each method given) against booted cold: the summed PSS
//! (`/proc/<pid>/smaps_rollup`) of K QEMUs alive at once, against one guest alone.
//!
//! Each case runs `sleep N; echo held` in the guest, so all K QEMUs are alive together; the
//! reported sample is the last one taken while all K were (so every guest had reached its
//! shell). PSS splits a shared page between the processes that map it: clean pages of one
//! `template` RAM file, shared through the page cache, count once in the sum.
//!
//! Where each guest's own memory goes is read from `/proc/<pid>/smaps` in the same sample: the
//! private dirty pages of the guest's RAM mapping (the `template` file's
//! copy-on-write copies, or the whole anonymous RAM of the others), of TCG's translated code (the
//! anonymous executable mapping) and of everything else, averaged over the K guests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context};
use clap::Args;
use vmharness::arch::Arch;
use vmharness::run::{self, Note, Resolver, RunOptions};
use vmharness::settings::{Method, Settings};

/// Arguments of `bench pss`.
#[derive(Args)]
pub struct BenchPssArgs {
    /// Guest arches.
    #[arg(long, value_delimiter = ',', default_value = "x86_64,aarch64")]
    arch: Vec<Arch>,
    /// How many cases run at once.
    #[arg(long, default_value_t = 4)]
    concurrent: usize,
    /// Saved-state methods to measure (each against the same cold boots).
    #[arg(long, value_delimiter = ',', default_value = "template,exec")]
    methods: Vec<Method>,
    /// How long each restored case holds its guest (s); cold cases hold it 30 s more.
    #[arg(long, default_value_t = 6)]
    hold: u64,
}

/// The Linux config of `arch` with a `warm` case and `count` cases that sleep `hold` s.
fn config(root: &Path, dir: &Path, arch: Arch, count: usize, hold: u64) -> anyhow::Result<PathBuf> {
    let source = root.join(format!("vm-configs/linux-{arch}.toml"));
    let text = std::fs::read_to_string(&source)
        .with_context(|| format!("reading {}", source.display()))?;
    let mut table: toml::Table = toml::from_str(&text)?;
    let mut cases = vec![toml::Value::try_from(toml::toml! {
        name = "warm"
        steps = [{ send_line = "echo warm" }, { expect = "^warm$" }]
    })?];
    for i in 0..count {
        cases.push(toml::Value::try_from(toml::toml! {
            name = (format!("hold-{i}"))
            steps = [
                { send_line = (format!("sleep {hold}; echo held-{i}")) },
                { expect = (format!("^held-{i}$")), timeout = "300s" },
            ]
        })?);
    }
    table.insert("case".into(), toml::Value::Array(cases));
    let timeouts = table
        .entry("timeouts")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let Some(timeouts) = timeouts.as_table_mut() {
        timeouts.insert("total".into(), "600s".into());
    }
    let path = dir.join(format!("pss-linux-{arch}-{hold}.toml"));
    std::fs::write(&path, toml::to_string(&table)?)?;
    Ok(path)
}

/// PSS and RSS in kB of `pid`, from `/proc/<pid>/smaps_rollup`.
fn memory_kb(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
    };
    Some((field("Pss:")?, field("Rss:")?))
}

/// The benchmark guests' RAM (`memory = "512M"` in `vm-configs/linux-<arch>.toml`).
const GUEST_RAM_KB: u64 = 512 * 1024;

/// Private dirty kB of one QEMU by what the memory is: (guest RAM, TCG code, other).
#[derive(Clone, Copy, Default)]
struct Private {
    ram: u64,
    tcg: u64,
    other: u64,
}

impl std::ops::Add for Private {
    type Output = Private;
    fn add(self, other: Private) -> Private {
        Private {
            ram: self.ram + other.ram,
            tcg: self.tcg + other.tcg,
            other: self.other + other.other,
        }
    }
}

/// The private dirty pages of `pid` by mapping, from `/proc/<pid>/smaps`: guest RAM is the mapping of
/// a `template` RAM file or an anonymous mapping of at least `ram_kb`; TCG's code buffer is
/// anonymous and executable.
fn private_kb(pid: u32, ram_kb: u64) -> Option<Private> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let mut total = Private::default();
    // The mapping being read: (executable, anonymous, a RAM file), its size and dirty kB.
    let mut mapping: Option<(bool, bool, bool)> = None;
    let (mut size, mut private) = (0u64, 0u64);
    let mut add = |mapping: Option<(bool, bool, bool)>, size: u64, private: u64| {
        let Some((exec, anonymous, ram_file)) = mapping else {
            return;
        };
        if ram_file || (anonymous && !exec && size >= ram_kb) {
            total.ram += private;
        } else if anonymous && exec {
            total.tcg += private;
        } else {
            total.other += private;
        }
    };
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        match first {
            "Size:" => size = words.next()?.parse().ok()?,
            "Private_Dirty:" => private = words.next()?.parse().ok()?,
            // A mapping's header: `start-end perms offset dev inode [path]`.
            _ if first.contains('-') && !first.ends_with(':') => {
                add(mapping, size, private);
                let perms = words.next().unwrap_or("");
                let path = words.nth(3);
                mapping = Some((
                    perms.contains('x'),
                    path.is_none_or(|p| p.starts_with('[')),
                    path.is_some_and(|p| p.ends_with("/ram")),
                ));
                (size, private) = (0, 0);
            }
            _ => {}
        }
    }
    add(mapping, size, private);
    Some(total)
}

/// QEMUs this process started (QEMU is spawned directly, so its parent is us).
fn our_qemus() -> Vec<u32> {
    let me = std::process::id().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // `pid (comm) state ppid ...`; comm may hold spaces, so split after the last `)`.
            let Some((head, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            head.contains("(qemu-system") && rest.split_whitespace().nth(1) == Some(me.as_str())
        })
        .collect()
}

/// Runs `cases` at once; the summed (PSS, RSS) in kB of the last sample taken while all of
/// them had a QEMU, and their private dirty memory by kind in the same sample.
fn measure(
    config: &Path,
    cases: &[String],
    settings: &Settings,
) -> anyhow::Result<(u64, u64, Private)> {
    let loaded = vmharness::config::load(config)?;
    let resolver = Resolver::from_settings(settings);
    let mut last: Option<(u64, u64, Private)> = None;
    let reports = std::thread::scope(|scope| {
        let runs: Vec<_> = cases
            .iter()
            .map(|case| {
                let (loaded, resolver) = (&loaded, &resolver);
                scope.spawn(move || {
                    let options = RunOptions {
                        settings: Some(settings.clone()),
                        ..RunOptions::default()
                    };
                    run::run_case(loaded, case, resolver, options)
                })
            })
            .collect();
        while runs.iter().any(|run| !run.is_finished()) {
            let pids = our_qemus();
            if pids.len() == cases.len() {
                let kb: Vec<(u64, u64)> = pids.iter().filter_map(|p| memory_kb(*p)).collect();
                let private: Vec<Private> = pids
                    .iter()
                    .filter_map(|p| private_kb(*p, GUEST_RAM_KB / 2))
                    .collect();
                if kb.len() == cases.len() && private.len() == cases.len() {
                    let (pss, rss) = kb.iter().fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
                    let private = private.into_iter().fold(Private::default(), |a, b| a + b);
                    last = Some((pss, rss, private));
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        runs.into_iter()
            .map(|run| run.join().expect("case thread"))
            .collect::<Vec<_>>()
    });
    for report in &reports {
        ensure!(report.outcome.is_pass(), "{report}");
        if settings.saved_states {
            ensure!(
                report
                    .notes
                    .iter()
                    .any(|n| matches!(n, Note::StateRestored { .. })),
                "not restored: {report}"
            );
        }
    }
    last.context("never saw every case's QEMU alive at once")
}

fn mb(kb: u64) -> String {
    format!("{:.0} MB", kb as f64 / 1024.0)
}

pub fn run(args: BenchPssArgs) -> anyhow::Result<()> {
    ensure!(args.concurrent >= 1, "--concurrent must be at least 1");
    let base = Settings::from_env()?;
    let scratch = tempfile::tempdir()?;
    let k = args.concurrent;
    println!(
        "| arch | QEMU | start | PSS: 1 guest | PSS: {k} at once | {k} at once ÷ 1 | RSS: {k} at once \
         | own per guest ({k} at once): guest RAM | TCG code | other |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for &arch in &args.arch {
        let binary = vmharness::qemu::find_binary(arch.spec().qemu_binary)?;
        let version = vmharness::qemu::version(&binary)?;
        let hold: Vec<String> = (0..k).map(|i| format!("hold-{i}")).collect();
        let mut modes: Vec<(String, Settings, u64)> = Vec::new();
        for &method in &args.methods {
            let mut settings = base.clone();
            settings.target_dir = scratch.path().join(format!("{arch}-{}", method.name()));
            settings.state_method = Some(method);
            modes.push((format!("restored ({})", method.name()), settings, args.hold));
        }
        let mut cold = base.clone();
        cold.target_dir = scratch.path().join(format!("{arch}-cold"));
        cold.saved_states = false;
        modes.push(("cold boot".into(), cold, args.hold + 30));
        for (name, settings, hold_secs) in modes {
            eprintln!("bench pss: {arch} on QEMU {version}, {name}");
            let config = config(&base.root, scratch.path(), arch, k, hold_secs)?;
            if settings.saved_states {
                // Save the state first, so every measured case restores.
                measure(&config, &["warm".to_string()], &settings).ok();
            }
            let (one, _, _) = measure(&config, &hold[..1], &settings)?;
            let (many, rss, own) = measure(&config, &hold, &settings)?;
            let per = |kb: u64| mb(kb / k as u64);
            println!(
                "| {arch} | {version} | {name} | {} | {} | {:.2}× | {} | {} | {} | {} |",
                mb(one),
                mb(many),
                many as f64 / one as f64,
                mb(rss),
                per(own.ram),
                per(own.tcg),
                per(own.other),
            );
        }
    }
    Ok(())
}
