//! Every `vm-configs/*.toml` as a libtest-mimic trial.
//!
//! A config that fails to load still becomes a trial (a failing one, with the located error),
//! so one typo never breaks listing or running the others.
//!
//! A config whose inputs this machine lacks (an `env:` variable unset, an artifact that needs
//! the network and is not cached) is ignored with the reason, unless artifacts are required
//! ([`crate::run::artifacts_required`]), where the run reports an infrastructure failure instead.
//! Under cargo test the trial ends as `ignored (<reason>)` at run time. Under nextest a runtime
//! ignore would count as a pass, so there the trial is listed with the ignored flag and the
//! reasons go to stderr once ([`availability`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use libtest_mimic::{Completion, Failed, Trial};

use crate::artifact::{Catalog, Provenance};
use crate::config::{self, LoadedConfig};
use crate::outcome::{Outcome, Report};
use crate::run::{self, FileResolver, RunOptions};

pub mod availability;

use availability::Unavailable;

/// Environment variable: how many times an infrastructure failure is retried (default 1).
pub const INFRA_RETRIES_ENV: &str = "VMHARNESS_INFRA_RETRIES";

/// Environment variable: only configs for this guest arch become trials (one CI job per arch).
/// A config that fails to load stays in unless its `arch` key names another arch.
pub const ARCH_ENV: &str = "VMHARNESS_ARCH";

/// The config files in `dir`, sorted by name.
pub fn config_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

/// Builds one trial per config in `<workspace>/vm-configs` whose test name `select` accepts.
///
/// `resolver` is created per trial (it may hold a loaded artifact catalog).
pub fn trials<F, R>(select: F, resolver: R) -> Vec<Trial>
where
    F: Fn(&str) -> bool,
    R: Fn() -> Box<dyn FileResolver> + Send + Sync + Clone + 'static,
{
    let root = crate::paths::workspace_root();
    let dir = root.join("vm-configs");
    let files = match config_files(&dir) {
        Ok(files) => files,
        Err(err) => {
            let message = format!("cannot list VM configs in {}: {err}", dir.display());
            return vec![Trial::test("vm-configs", move || Err(message.into()))];
        }
    };
    let check = availability::Check::from_env(Catalog::load_default().ok());
    let arch = std::env::var(ARCH_ENV)
        .ok()
        .filter(|a| !a.trim().is_empty());
    files
        .into_iter()
        .filter(|path| select(&config::test_name(path)))
        .filter(|path| arch.as_deref().is_none_or(|arch| arch_matches(path, arch)))
        .map(|path| trial(&path, &check, resolver.clone()))
        .collect()
}
/// Whether the config at `path` is for `arch`, read from its `arch` key without validating the
/// rest: a broken config is kept (its trial reports the error) unless it names another arch.
pub fn arch_matches(path: &Path, arch: &str) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else {
        return true;
    };
    let Ok(table) = toml::from_str::<toml::Table>(&text) else {
        return true;
    };
    match table.get("arch").and_then(toml::Value::as_str) {
        Some(declared) => declared == arch.trim(),
        None => true,
    }
}

fn trial<R>(path: &Path, check: &availability::Check, resolver: R) -> Trial
where
    R: Fn() -> Box<dyn FileResolver> + Send + Sync + 'static,
{
    let name = config::test_name(path);
    let loaded = match config::load(path) {
        Ok(loaded) => loaded,
        Err(err) => {
            let message = format!("invalid VM config: {err}");
            return Trial::test(name, move || Err(message.into()));
        }
    };
    if loaded.config.ignore.is_some() {
        return Trial::ignorable_test(name, move || run_trial(&loaded, &*resolver()))
            .with_ignored_flag(true);
    }
    let missing = check.missing_inputs(&loaded);
    if !check.ignores(&missing) {
        return Trial::ignorable_test(name, move || run_trial(&loaded, &*resolver()));
    }
    let reason = Unavailable::join(&missing);
    if check.ignore_at_listing() {
        eprintln!("note: {name} ignored: {reason}");
        // With --ignored / --run-ignored the user asked for the real run and its real outcome.
        Trial::ignorable_test(name, move || run_trial(&loaded, &*resolver()))
            .with_ignored_flag(true)
    } else {
        Trial::ignorable_test(name, move || {
            // Recorded like any run, so CI summaries count it.
            let log = crate::paths::log_dir(&crate::paths::workspace_root(), &loaded.name)
                .join("console.log");
            let outcome = Outcome::Unavailable {
                reason: reason.clone(),
            };
            write_summary(
                &loaded,
                &log,
                "-".into(),
                &outcome,
                std::time::Duration::ZERO,
                &[],
            );
            Ok(Completion::ignored_with(reason))
        })
    }
}

/// Runs one config as a trial: retries infrastructure failures, maps the outcome.
pub fn run_trial(loaded: &LoadedConfig, resolver: &dyn FileResolver) -> Result<Completion, Failed> {
    let retries: u32 = std::env::var(INFRA_RETRIES_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut attempt = 0;
    let report = loop {
        let report = run::run(loaded, resolver, RunOptions::default());
        if matches!(report.outcome, Outcome::Infra { .. }) && attempt < retries {
            attempt += 1;
            eprintln!(
                "note: {}: infrastructure failure, retrying ({attempt}/{retries}): {}",
                loaded.name, report.outcome
            );
            continue;
        }
        break report;
    };
    announce_notes(&report);
    crate::suite::write_result(&report, loaded);
    match &report.outcome {
        Outcome::Pass => Ok(Completion::Completed),
        Outcome::Skipped { reason } | Outcome::Unavailable { reason } => {
            Ok(Completion::ignored_with(reason))
        }
        _ => Err(report.to_string().into()),
    }
}

/// Prints each distinct accelerator note once per process (e.g. why KVM was not used).
fn announce_notes(report: &Report) {
    static SEEN: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let Ok(mut seen) = SEEN.lock() else {
        return;
    };
    for note in report.notes.iter().filter(|n| n.starts_with("accel auto")) {
        if seen.insert(note.clone()) {
            eprintln!("note: {note}");
        }
    }
}

/// Writes `result.toml` next to the console log: a machine-readable summary for CI reports.
pub fn write_result(report: &Report, loaded: &LoadedConfig) {
    write_summary(
        loaded,
        &report.log_path,
        report.accel.map_or("-".into(), |a| a.to_string()),
        &report.outcome,
        report.elapsed,
        &report.booted,
    );
}

fn write_summary(
    loaded: &LoadedConfig,
    log_path: &Path,
    accel: String,
    outcome: &Outcome,
    elapsed: std::time::Duration,
    booted: &[Provenance],
) {
    let Some(dir) = log_path.parent() else {
        return;
    };
    let mut table = toml::Table::new();
    let mut put = |key: &str, value: String| {
        table.insert(key.into(), toml::Value::String(value));
    };
    put("test", loaded.name.clone());
    put("arch", loaded.config.arch.to_string());
    put("accel", accel);
    put("outcome", outcome.label().into());
    put("detail", outcome.to_string());
    put("elapsed_secs", format!("{:.3}", elapsed.as_secs_f64()));
    put("log", log_path.display().to_string());
    put("config", loaded.path.display().to_string());
    if !booted.is_empty() {
        table.insert("booted".into(), booted_value(booted));
    }
    if let Ok(text) = toml::to_string(&table) {
        let _ = std::fs::create_dir_all(dir);
        let _ = std::fs::write(dir.join("result.toml"), text);
    }
}

/// `[[booted]]` in `result.toml`: one table per artifact the run used.
fn booted_value(booted: &[Provenance]) -> toml::Value {
    let string = |s: &str| toml::Value::String(s.to_string());
    toml::Value::Array(
        booted
            .iter()
            .map(|b| {
                let mut table = toml::Table::new();
                table.insert("artifact".into(), string(&b.artifact));
                table.insert("key".into(), string(&b.key));
                table.insert("lock".into(), string(&b.lock));
                table.insert("new_key".into(), toml::Value::Boolean(b.new_key));
                table.insert(
                    "packages".into(),
                    toml::Value::Array(b.packages.iter().map(|p| string(p)).collect()),
                );
                let outputs = b
                    .outputs
                    .iter()
                    .map(|(name, sha)| (name.clone(), string(sha)))
                    .collect();
                table.insert("outputs".into(), toml::Value::Table(outputs));
                toml::Value::Table(table)
            })
            .collect(),
    )
}
