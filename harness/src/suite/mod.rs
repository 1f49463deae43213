//! Every `vm-configs/*.toml` as a libtest-mimic trial.
//!
//! A config that fails to load still becomes a trial (a failing one, with the located error),
//! so one typo never breaks listing or running the others.
//!
//! A config whose inputs this machine lacks (an `env:` variable unset, an artifact that needs
//! the network and is not cached) is ignored with the reason, unless artifacts are required
//! (`VMHARNESS_REQUIRE_ARTIFACTS=1`), where the run reports an infrastructure failure instead.
//! Under cargo test the trial ends as `ignored (<reason>)` at run time. Under nextest a runtime
//! ignore would count as a pass, so there the trial is listed with the ignored flag and the
//! reasons go to stderr once ([`availability`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use libtest_mimic::{Completion, Failed, Trial};

use crate::artifact::Catalog;
use crate::config::{self, LoadedConfig};
use crate::outcome::{Outcome, Report};
use crate::run::{self, FileResolver, Note, RunError, RunOptions};
use crate::settings::Settings;

pub mod availability;
pub mod record;

pub use record::{Label, ResultRecord};

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

/// Builds one trial per config in `<workspace>/vm-configs` whose test name `select` accepts,
/// with [`Settings::from_env`]. With an unusable environment every trial fails with that error.
///
/// `resolver` is created per trial (it may hold a loaded artifact catalog).
pub fn trials<F, R>(select: F, resolver: R) -> Vec<Trial>
where
    F: Fn(&str) -> bool,
    R: Fn() -> Box<dyn FileResolver> + Send + Sync + Clone + 'static,
{
    match Settings::from_env() {
        Ok(settings) => trials_with(&settings, select, resolver),
        Err(err) => {
            let error = Arc::new(RunError::from(err));
            let dir = crate::paths::workspace_root().join("vm-configs");
            config_files(&dir)
                .unwrap_or_default()
                .into_iter()
                .map(|path| config::test_name(&path))
                .filter(|name| select(name))
                .map(|name| {
                    let message = error.to_string();
                    Trial::test(name, move || Err(message.into()))
                })
                .collect()
        }
    }
}

/// [`trials`] with explicit settings.
pub fn trials_with<F, R>(settings: &Settings, select: F, resolver: R) -> Vec<Trial>
where
    F: Fn(&str) -> bool,
    R: Fn() -> Box<dyn FileResolver> + Send + Sync + Clone + 'static,
{
    let dir = settings.configs_dir();
    let files = match config_files(&dir) {
        Ok(files) => files,
        Err(err) => {
            let message = format!("cannot list VM configs in {}: {err}", dir.display());
            return vec![Trial::test("vm-configs", move || Err(message.into()))];
        }
    };
    let check = availability::Check::new(Catalog::load(&settings.guests_dir()).ok(), settings);
    let arch = settings.arch.map(|arch| arch.to_string());
    files
        .into_iter()
        .filter(|path| select(&config::test_name(path)))
        .filter(|path| arch.as_deref().is_none_or(|arch| arch_matches(path, arch)))
        .map(|path| trial(&path, &check, settings, resolver.clone()))
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

fn trial<R>(path: &Path, check: &availability::Check, settings: &Settings, resolver: R) -> Trial
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
    let settings = settings.clone();
    if loaded.config.ignore.is_some() {
        return Trial::ignorable_test(name, move || {
            run_trial_with(&loaded, &*resolver(), &settings)
        })
        .with_ignored_flag(true);
    }
    let missing = check.missing_inputs(&loaded);
    if !check.ignores(&missing) {
        return Trial::ignorable_test(name, move || {
            run_trial_with(&loaded, &*resolver(), &settings)
        });
    }
    if check.ignore_at_listing() {
        let reason = RunError::MissingInputs(missing.clone()).to_string();
        eprintln!("note: {name} ignored: {reason}");
        // With --ignored / --run-ignored the user asked for the real run and its real outcome.
        Trial::ignorable_test(name, move || {
            run_trial_with(&loaded, &*resolver(), &settings)
        })
        .with_ignored_flag(true)
    } else {
        Trial::ignorable_test(name, move || {
            // Recorded like any run, so CI summaries count it.
            let log = settings.log_dir(&loaded.name).join("console.log");
            let outcome = Outcome::from(RunError::MissingInputs(missing.clone()));
            let reason = outcome.detail();
            let report = Report::new(&loaded.name, log).ended(outcome, Default::default());
            write_result(&report, &loaded);
            Ok(Completion::ignored_with(reason))
        })
    }
}

/// Runs one config as a trial with [`Settings::from_env`].
pub fn run_trial(loaded: &LoadedConfig, resolver: &dyn FileResolver) -> Result<Completion, Failed> {
    match Settings::from_env() {
        Ok(settings) => run_trial_with(loaded, resolver, &settings),
        Err(err) => Err(err.to_string().into()),
    }
}

/// Runs one config as a trial: retries infrastructure failures, maps the outcome.
pub fn run_trial_with(
    loaded: &LoadedConfig,
    resolver: &dyn FileResolver,
    settings: &Settings,
) -> Result<Completion, Failed> {
    let retries = settings.infra_retries;
    let mut attempt = 0;
    let report = loop {
        let options = RunOptions {
            settings: Some(settings.clone()),
            ..RunOptions::default()
        };
        let report = run::run(loaded, resolver, options);
        if report.outcome.is_infra() && attempt < retries {
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
    write_result(&report, loaded);
    match &report.outcome {
        Outcome::Pass => Ok(Completion::Completed),
        Outcome::Skipped { reason } => Ok(Completion::ignored_with(reason)),
        outcome if outcome.is_unavailable() => Ok(Completion::ignored_with(outcome.detail())),
        _ => Err(report.to_string().into()),
    }
}

/// Prints each distinct accelerator fallback once per process (e.g. why KVM was not used).
fn announce_notes(report: &Report) {
    static SEEN: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let Ok(mut seen) = SEEN.lock() else {
        return;
    };
    for note in &report.notes {
        if let Note::AccelFallback(_) = note {
            if seen.insert(note.to_string()) {
                eprintln!("note: {note}");
            }
        }
    }
}

/// Writes `result.toml` next to the console log ([`ResultRecord`]); a failure to write it is
/// reported on stderr (the trial's verdict stands).
pub fn write_result(report: &Report, loaded: &LoadedConfig) {
    if let Err(err) = ResultRecord::of(report, loaded).write() {
        eprintln!("warning: {}: {err}", loaded.name);
    }
}
