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
//!
//! `ignore = "why"` is libtest's `#[ignore]`: the trial is listed as ignored, and
//! `--ignored` (only those) or `--include-ignored` (all) boots it for real. An environment
//! condition (`needs_kvm` without usable KVM, an unset `env:` variable, an uncached download
//! offline) is not an ignore: under cargo test such a trial is not in the ignored listing,
//! `--ignored` leaves it out and any run ends `ignored (<reason>)`, since the machine cannot
//! run it. Under nextest it carries the ignored flag (see above), and `--run-ignored` runs it
//! and reports what really happens.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use libtest_mimic::{Completion, Failed, Trial};

#[cfg(feature = "artifacts")]
use crate::artifact::Catalog;
use crate::config::{self, LoadedConfig};
use crate::outcome::{Outcome, Report};
use crate::run::{self, FileResolver, Note, RunError, RunOptions};
use crate::settings::{Settings, SettingsError};

pub mod availability;
pub mod record;

use record::recorded;
pub use record::{Label, ResultRecord};

/// Options of libtest's command line that take a value (so their value is no name filter).
const VALUE_OPTIONS: &[&str] = &[
    "--test-threads",
    "--logfile",
    "--skip",
    "--color",
    "--format",
    "-Z",
];

/// A frontend's command line: libtest's options and any number of name filters (libtest takes
/// several, `cargo test --test boot -- selftest linux`; libtest-mimic parses one).
pub(crate) struct Arguments {
    /// The options, with the filter when there is exactly one.
    pub libtest: libtest_mimic::Arguments,
    /// The name filters when there are several (a trial runs if its name contains any; with
    /// `--exact`, if it equals one).
    pub filters: Vec<String>,
    /// `--verbose` (ours, not libtest's): `--list` shows each trial's arch defaults.
    pub verbose: bool,
}

impl Arguments {
    /// Parses this process's arguments.
    pub(crate) fn from_args() -> Arguments {
        Arguments::parse(std::env::args())
    }

    /// Parses `args` (the program name first).
    pub(crate) fn parse(args: impl IntoIterator<Item = String>) -> Arguments {
        let mut args = args.into_iter();
        let program = args.next().unwrap_or_default();
        let mut options = vec![program];
        let mut filters = Vec::new();
        let mut takes_value = false;
        let mut verbose = false;
        for arg in args {
            if takes_value {
                takes_value = false;
                options.push(arg);
            } else if arg == "--verbose" {
                verbose = true;
            } else if arg.starts_with('-') {
                takes_value = VALUE_OPTIONS.contains(&arg.as_str());
                options.push(arg);
            } else {
                filters.push(arg);
            }
        }
        if filters.len() == 1 {
            options.append(&mut filters);
        }
        Arguments {
            libtest: libtest_mimic::Arguments::from_iter(options),
            filters,
            verbose,
        }
    }

    /// Whether a trial named `name` passes the extra filters.
    pub(crate) fn selects(&self, name: &str) -> bool {
        self.filters.is_empty()
            || self.filters.iter().any(|filter| match self.libtest.exact {
                true => name == filter,
                false => name.contains(filter.as_str()),
            })
    }

    /// Applies the extra filters to built trials, by trial name (so `config::case` filters
    /// select case trials), and hands libtest-mimic what it needs to count the others as
    /// filtered out: each one gets the kind [`FILTERED_KIND`] and a `--skip` entry that only
    /// a trial of that kind can match (`[filtered-out] <name>`, whether `--exact` or not).
    pub(crate) fn filter(&mut self, trials: Vec<Trial>) -> Vec<Trial> {
        if self.filters.is_empty() {
            return trials;
        }
        trials
            .into_iter()
            .map(|trial| match self.selects(trial.name()) {
                true => trial,
                false => {
                    self.libtest
                        .skip
                        .push(format!("[{FILTERED_KIND}] {}", trial.name()));
                    trial.with_kind(FILTERED_KIND)
                }
            })
            .collect()
    }
}

/// The kind [`Arguments::filter`] gives trials no name filter selects (never shown: they are
/// skipped before listing or running).
pub(crate) const FILTERED_KIND: &str = "filtered-out";

/// A repository's whole `tests/<suite>.rs`: every `vm-configs/*.toml` is a trial.
///
/// ```no_run
/// // tests/vm.rs, with `[[test]] name = "vm"` and `harness = false` in Cargo.toml
/// fn main() {
///     vmharness::main()
/// }
/// ```
///
/// [`Suite`] selects configs (several suites in one repository) or resolves files its own way.
pub fn main() -> ! {
    Suite::new().main()
}

/// A suite of VM configs as one test binary: which configs it takes, and how their files are
/// found. [`Suite::main`] is the binary's whole `main`.
///
/// ```no_run
/// // tests/nimbos.rs: only the NimbOS configs; tests/boot.rs takes the others.
/// fn main() {
///     vmharness::Suite::new()
///         .select(|name| name.starts_with("nimbos-"))
///         .main()
/// }
/// ```
pub struct Suite {
    select: Box<dyn Fn(&str) -> bool>,
    resolver: fn() -> Box<dyn FileResolver>,
}

impl Default for Suite {
    fn default() -> Self {
        Suite::new()
    }
}

impl Suite {
    /// Every config, files resolved from the environment ([`run::Resolver::from_env`]).
    pub fn new() -> Suite {
        Suite {
            select: Box::new(|_| true),
            resolver: || Box::new(run::Resolver::from_env()),
        }
    }

    /// Only the configs whose test name (the file stem) `select` accepts.
    pub fn select(mut self, select: impl Fn(&str) -> bool + 'static) -> Suite {
        self.select = Box::new(select);
        self
    }

    /// Resolves configs' files with what `resolver` makes (one per trial) instead.
    pub fn resolver(mut self, resolver: fn() -> Box<dyn FileResolver>) -> Suite {
        self.resolver = resolver;
        self
    }

    /// Lists or runs the suite as libtest would (filters, `--list`, `--exact`, `--ignored`,
    /// nextest) and exits with its status.
    pub fn main(self) -> ! {
        let Suite { select, resolver } = self;
        main_with(select, resolver)
    }
}

/// A cargo-test frontend's whole `main`: the configs `select` accepts, filtered by the command
/// line, run by libtest-mimic; exits with its status ([`Suite`] is the same, by builder).
///
/// An unusable environment ([`SettingsError`]) stops it before anything is listed or run,
/// with the message on stderr and exit code 101 (libtest's for an error): without usable
/// settings not even the workspace is known, and listing nothing would pass.
pub fn main_with<F, R>(select: F, resolver: R) -> !
where
    F: Fn(&str) -> bool,
    R: Fn() -> Box<dyn FileResolver> + Send + Sync + Clone + 'static,
{
    let mut args = Arguments::from_args();
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("error: {err}");
            std::process::exit(ERROR_EXIT_CODE);
        }
    };
    let trials = trials_with(&settings, &select, resolver);
    let mut trials = args.filter(trials);
    if args.libtest.list && args.verbose {
        list_verbose(&args, &trials, &settings, &select);
        std::process::exit(0);
    }
    if !args.libtest.list {
        longest_first(&mut trials, &settings);
    }
    // Trials running at once (libtest's default: one per CPU); a spare needs a CPU besides.
    let threads = args.libtest.test_threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let spares = run::SpareQemu::allow(threads);
    let conclusion = libtest_mimic::run(&args.libtest, trials);
    // The suite is over: the spare QEMU goes (`exit` runs no destructors).
    drop(spares);
    conclusion.exit()
}

/// `--list --verbose`: each trial libtest would list, with what its config leaves to the arch
/// table (CPU per accelerator, exit device) on the line below.
fn list_verbose(
    args: &Arguments,
    trials: &[Trial],
    settings: &Settings,
    select: &dyn Fn(&str) -> bool,
) {
    let mut details = std::collections::BTreeMap::new();
    for path in config_files(&settings.configs_dir()).unwrap_or_default() {
        if !select(&config::test_name(&path)) {
            continue;
        }
        let plan = config::load(&path)
            .ok()
            .and_then(|loaded| crate::plan::Plan::new(&loaded, settings).ok());
        let line = match &plan {
            Some(plan) => defaults_line(plan),
            None => "invalid VM config (its trial fails with the located error)".to_string(),
        };
        for name in trial_names(&path) {
            details.insert(name, line.clone());
        }
    }
    for trial in trials.iter().filter(|t| !args.libtest.is_filtered_out(t)) {
        println!("{}: test", trial.name());
        if let Some(line) = details.get(trial.name()) {
            println!("    {line}");
        }
    }
}

/// One line of what a run of `plan` uses, each default marked as one.
fn defaults_line(plan: &crate::plan::Plan) -> String {
    let spec = plan.arch.spec();
    let config = &plan.loaded.config.qemu;
    let default = |set: bool| match set {
        true => "",
        false => " (default)",
    };
    let cpu = match &config.cpu {
        Some(cpu) => format!("cpu {cpu}"),
        None => format!(
            "cpu {} under TCG, {} under KVM (default)",
            spec.tcg_cpu, spec.kvm_cpu
        ),
    };
    let exit = match (plan.qemu.exit_device, config.exit_device) {
        (Some(device), set) => format!("exit device {device}{}", default(set.is_some())),
        (None, Some(_)) => "exit device none".to_string(),
        (None, None) => format!(
            "exit device none (default: `qemu.exit_device = true` adds {})",
            spec.exit_device
        ),
    };
    format!(
        "{}; machine {}{}; {cpu}; memory {}{}; {exit}",
        plan.arch,
        plan.qemu.machine,
        default(config.machine.is_some()),
        plan.qemu.memory,
        default(config.memory.is_some()),
    )
}

/// The exit code of a frontend that cannot start (libtest's `ERROR_EXIT_CODE`).
pub(crate) const ERROR_EXIT_CODE: i32 = 101;

/// Orders trials so the longest start first: with several threads the suite then ends when
/// its longest trial does, not when a long trial that started last does. Listing keeps name
/// order.
pub(crate) fn longest_first(trials: &mut [Trial], settings: &Settings) {
    let logs = settings.logs_dir();
    trials.sort_by_cached_key(|trial| {
        let expected = match trial.has_ignored_flag() {
            true => std::time::Duration::ZERO,
            false => expected_duration(&logs, trial.name()),
        };
        std::cmp::Reverse(expected)
    });
}

/// How long a trial is expected to take: its last recorded run, else an estimate by guest.
pub(crate) fn expected_duration(logs: &Path, test: &str) -> std::time::Duration {
    let recorded = ResultRecord::read(&run::logs::latest_dir(logs, test).join(record::FILE_NAME))
        .ok()
        .filter(|r| !r.outcome.is_skip())
        .and_then(|r| std::time::Duration::try_from_secs_f64(r.elapsed_secs).ok());
    recorded.unwrap_or_else(|| {
        let seconds = ESTIMATES
            .iter()
            .find(|(prefix, _)| test.starts_with(prefix))
            .map_or(DEFAULT_ESTIMATE, |(_, seconds)| *seconds);
        std::time::Duration::from_secs(seconds)
    })
}

/// Seconds a guest takes under TCG on a 2-core machine before any run is recorded.
const ESTIMATES: &[(&str, u64)] = &[("linux-", 8), ("nimbos-", 8), ("uboot-", 3)];
const DEFAULT_ESTIMATE: u64 = 1;

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
/// with [`Settings::from_env`]; an unusable environment is an error (it names every bad
/// variable), never a list of trials from a guessed workspace.
///
/// `resolver` is created per trial (it may hold a loaded artifact catalog).
pub fn trials<F, R>(select: F, resolver: R) -> Result<Vec<Trial>, SettingsError>
where
    F: Fn(&str) -> bool,
    R: Fn() -> Box<dyn FileResolver> + Send + Sync + Clone + 'static,
{
    Ok(trials_with(&Settings::from_env()?, select, resolver))
}

/// [`trials`] with explicit settings.
pub(crate) fn trials_with<F, R>(settings: &Settings, select: F, resolver: R) -> Vec<Trial>
where
    F: Fn(&str) -> bool,
    R: Fn() -> Box<dyn FileResolver> + Send + Sync + Clone + 'static,
{
    let dir = settings.configs_dir();
    let files = match config_files(&dir) {
        Ok(files) => files,
        Err(err) => {
            let message = format!(
                "cannot list VM configs in {}: {err} (the workspace is the nearest directory \
                 holding vm-configs/ above CARGO_MANIFEST_DIR, this program or the current \
                 directory; set VMHARNESS_ROOT to name it)",
                dir.display()
            );
            return vec![Trial::test("vm-configs", move || Err(message.into()))];
        }
    };
    let check = availability::Check::new(settings);
    #[cfg(feature = "artifacts")]
    let check = match Catalog::load(&settings.guests_dir()) {
        Ok(catalog) => check.with_catalog(catalog),
        Err(_) => check,
    };
    let arch = settings.arch.map(|arch| arch.to_string());
    files
        .into_iter()
        .filter(|path| select(&config::test_name(path)))
        .filter(|path| arch.as_deref().is_none_or(|arch| arch_matches(path, arch)))
        .flat_map(|path| config_trials(&path, &check, settings, resolver.clone()))
        .collect()
}

/// Whether the config at `path` is for `arch`, read from its `arch` key without validating the
/// rest: a broken config is kept (its trial reports the error) unless it names another arch.
pub fn arch_matches(path: &Path, arch: &str) -> bool {
    let Ok(text) = config::read_source(path) else {
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

/// The names of the trials one config file becomes: its own, or `<config>::<case>` for each of
/// its `[[case]]`s (a config that does not load is one failing trial under its own name).
pub fn trial_names(path: &Path) -> Vec<String> {
    let name = config::test_name(path);
    match config::load(path) {
        Ok(loaded) if !loaded.config.cases.is_empty() => loaded
            .config
            .cases
            .iter()
            .map(|case| run::case_trial_name(&name, &case.name))
            .collect(),
        _ => vec![name],
    }
}

/// The trials of one config file: the config itself, or one per `[[case]]`
/// (`<config>::<case>`).
fn config_trials<R>(
    path: &Path,
    check: &availability::Check,
    settings: &Settings,
    resolver: R,
) -> Vec<Trial>
where
    R: Fn() -> Box<dyn FileResolver> + Send + Sync + Clone + 'static,
{
    let name = config::test_name(path);
    let loaded = match config::load(path) {
        Ok(loaded) => Arc::new(loaded),
        Err(err) => {
            let message = format!("invalid VM config: {err}");
            return vec![Trial::test(name, move || Err(message.into()))];
        }
    };
    let missing = check.missing_inputs(&loaded);
    let cases: Vec<Option<String>> = match loaded.config.cases.is_empty() {
        true => vec![None],
        false => loaded
            .config
            .cases
            .iter()
            .map(|c| Some(c.name.clone()))
            .collect(),
    };
    cases
        .into_iter()
        .map(|case| {
            let unit = Unit {
                loaded: loaded.clone(),
                case,
            };
            trial(unit, &missing, check, settings, resolver.clone())
        })
        .collect()
}

/// What one trial runs: a config, or one of its cases.
#[derive(Clone)]
pub struct Unit {
    /// The config.
    pub loaded: Arc<LoadedConfig>,
    /// The `[[case]]`, if the trial is one.
    pub case: Option<String>,
}

impl Unit {
    /// The trial's name: the config's, or `<config>::<case>`.
    pub fn name(&self) -> String {
        match &self.case {
            Some(case) => run::case_trial_name(&self.loaded.name, case),
            None => self.loaded.name.clone(),
        }
    }

    /// The same trial with the config's `ignore` taken out, for a run the user asked for.
    fn unignored(self) -> Unit {
        let mut loaded = (*self.loaded).clone();
        loaded.config.ignore = None;
        Unit {
            loaded: Arc::new(loaded),
            case: self.case,
        }
    }

    /// Runs it once.
    pub(crate) fn run(&self, resolver: &dyn FileResolver, options: RunOptions) -> Report {
        match &self.case {
            Some(case) => run::run_case(&self.loaded, case, resolver, options),
            None => run::run(&self.loaded, resolver, options),
        }
    }
}

fn trial<R>(
    unit: Unit,
    missing: &[crate::run::MissingInput],
    check: &availability::Check,
    settings: &Settings,
    resolver: R,
) -> Trial
where
    R: Fn() -> Box<dyn FileResolver> + Send + Sync + 'static,
{
    let name = unit.name();
    let settings = settings.clone();
    if unit.loaded.config.ignore.is_some() {
        // libtest runs an ignored trial only under `--ignored` / `--include-ignored` (nextest:
        // `--run-ignored`): the user asked for the boot, so it runs as if not ignored.
        let unit = unit.unignored();
        return Trial::ignorable_test(name, move || run_unit(&unit, &*resolver(), &settings))
            .with_ignored_flag(true);
    }
    if !check.ignores(missing) {
        return Trial::ignorable_test(name, move || run_unit(&unit, &*resolver(), &settings));
    }
    let missing = missing.to_vec();
    if check.ignore_at_listing() {
        let reason = RunError::MissingInputs(missing.clone()).to_string();
        eprintln!("note: {name} ignored: {reason}");
        // With --ignored / --run-ignored the user asked for the real run and its real outcome.
        Trial::ignorable_test(name, move || run_unit(&unit, &*resolver(), &settings))
            .with_ignored_flag(true)
    } else {
        Trial::ignorable_test(name, move || {
            // Recorded like any run, so CI summaries count it.
            let dir = run::logs::new_run_dir(&settings.logs_dir(), &unit.name())
                .map_err(|err| format!("cannot create a log dir: {err}"))?;
            let outcome = Outcome::from(RunError::MissingInputs(missing.clone()));
            let reason = outcome.detail();
            let report = Report::new(&unit.name(), dir.join("console.log"))
                .ended(outcome, Default::default());
            write_result(&report, &unit.loaded).map_err(|err| err.to_string())?;
            let _ = run::logs::mark_latest(&dir);
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
    let unit = Unit {
        loaded: Arc::new(loaded.clone()),
        case: None,
    };
    run_unit(&unit, resolver, settings)
}

/// One attempt of a unit, run again while it ends in an infrastructure failure (at most
/// `VMHARNESS_INFRA_RETRIES` more times).
fn run_retrying_infra(unit: &Unit, resolver: &dyn FileResolver, settings: &Settings) -> Report {
    let retries = settings.infra_retries;
    let mut attempt = 0;
    loop {
        let options = RunOptions {
            settings: Some(settings.clone()),
            ..RunOptions::default()
        };
        let report = unit.run(resolver, options);
        if report.outcome.is_infra() && attempt < retries {
            attempt += 1;
            eprintln!(
                "note: {}: infrastructure failure, retrying ({attempt}/{retries}): {}",
                unit.name(),
                report.outcome
            );
            continue;
        }
        return report;
    }
}

/// Runs a config or one of its cases as a trial: retries infrastructure failures, and guest
/// failures where the config's `[retries]` allows (each attempt reported), maps the outcome.
pub fn run_unit(
    unit: &Unit,
    resolver: &dyn FileResolver,
    settings: &Settings,
) -> Result<Completion, Failed> {
    let policy = unit.loaded.config.retries.as_ref();
    let mut failed: Vec<String> = Vec::new();
    let report = loop {
        let mut report = run_retrying_infra(unit, resolver, settings);
        let flaky = matches!(
            report.outcome,
            Outcome::Fail { .. } | Outcome::Timeout { .. }
        );
        match policy {
            Some(policy) if flaky && failed.len() < policy.count as usize => {
                eprintln!(
                    "note: {}: {}; retrying as [retries] allows ({}/{}): {}",
                    unit.name(),
                    report.outcome,
                    failed.len() + 1,
                    policy.count,
                    policy.why
                );
                failed.push(format!(
                    "{}: {} (log {})",
                    report.outcome.label(),
                    report.outcome.detail(),
                    report.log_path.display()
                ));
                // The failed attempt keeps its own record; `latest` moves on to the next one.
                recorded(report, &unit.loaded);
                continue;
            }
            Some(policy) if !failed.is_empty() => {
                report.notes.push(crate::note::Note::Retried {
                    failed: std::mem::take(&mut failed),
                    allowed: policy.count + 1,
                    why: policy.why.clone(),
                });
            }
            _ => {}
        }
        break report;
    };
    announce_notes(&report);
    let report = recorded(report, &unit.loaded);
    match &report.outcome {
        Outcome::Pass => Ok(Completion::Completed),
        Outcome::Skipped { reason } => Ok(Completion::ignored_with(reason)),
        // One line, with the cause: `ignored (-kernel ... cannot be resolved: artifact ... is
        // unavailable: ...)`.
        outcome if outcome.is_unavailable() => {
            let mut reason = outcome.detail();
            for cause in outcome.causes() {
                reason.push_str(": ");
                reason.push_str(&cause.replace('\n', " "));
            }
            Ok(Completion::ignored_with(reason))
        }
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

/// Writes `result.toml` next to the console log ([`ResultRecord`]), and `junit.xml` when the
/// guest reported sub-results.
pub fn write_result(report: &Report, loaded: &LoadedConfig) -> Result<(), record::RecordError> {
    record::write(report, loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Arguments {
        Arguments::parse(
            std::iter::once("boot")
                .chain(args.iter().copied())
                .map(String::from),
        )
    }

    #[test]
    fn a_result_that_cannot_be_written_is_infra() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("t.toml");
        std::fs::write(&config, "arch = \"x86_64\"\n").unwrap();
        let loaded = config::load(&config).unwrap();
        // The record's temporary file cannot be created: a directory is in its place.
        std::fs::create_dir(
            dir.path()
                .join(format!(".result.toml.{}", std::process::id())),
        )
        .unwrap();
        let report = Report::new("t", dir.path().join("console.log"));
        let report = recorded(report, &loaded);
        assert!(report.outcome.is_infra(), "{report}");
        assert!(report.to_string().contains("result.toml"), "{report}");
    }

    #[test]
    fn the_longest_trials_start_first() {
        let root = tempfile::tempdir().unwrap();
        let settings = Settings::defaults(root.path());
        let mut trials: Vec<Trial> = ["a-selftest", "linux-x86_64", "later", "uboot-x", "recorded"]
            .into_iter()
            .map(|name| {
                let trial = Trial::test(name, || Ok(()));
                trial.with_ignored_flag(name == "later")
            })
            .collect();
        // A recorded run beats the estimate.
        let dir = run::logs::new_run_dir(&settings.logs_dir(), "recorded").unwrap();
        let config = root.path().join("recorded.toml");
        std::fs::write(&config, "arch = \"x86_64\"\n").unwrap();
        let loaded = config::load(&config).unwrap();
        let mut report = Report::new("recorded", dir.join("console.log"));
        report.elapsed = std::time::Duration::from_secs(20);
        write_result(&report, &loaded).unwrap();
        run::logs::mark_latest(&dir).unwrap();
        longest_first(&mut trials, &settings);
        let order: Vec<&str> = trials.iter().map(Trial::name).collect();
        assert_eq!(
            order,
            ["recorded", "linux-x86_64", "uboot-x", "a-selftest", "later"]
        );
    }

    #[test]
    fn several_name_filters_are_accepted() {
        let args = parse(&[
            "selftest",
            "--test-threads",
            "2",
            "linux",
            "--skip",
            "uboot",
        ]);
        assert_eq!(args.filters, ["selftest", "linux"]);
        assert_eq!(args.libtest.test_threads, Some(2));
        assert_eq!(args.libtest.skip, ["uboot"]);
        assert!(args.selects("selftest-aarch64") && args.selects("linux-x86_64"));
        assert!(!args.selects("nimbos-aarch64"));
        let one = parse(&["--exact", "selftest-aarch64"]);
        assert!(one.filters.is_empty());
        assert_eq!(one.libtest.filter.as_deref(), Some("selftest-aarch64"));
        let exact = parse(&["--exact", "a", "b"]);
        assert!(exact.selects("a") && !exact.selects("ab"));
    }

    /// Unselected trials are skipped by libtest-mimic (so it counts them as filtered out),
    /// and a skip entry never reaches a selected trial whose name contains another's.
    #[test]
    fn filtered_trials_are_skipped_by_name_and_kind() {
        let names = ["a", "ab", "c::x", "c::xy", "d::x"];
        for (args, kept) in [
            (&["--exact", "a", "c::x"][..], &["a", "c::x"][..]),
            (&["b", "::x"][..], &["ab", "c::x", "c::xy", "d::x"][..]),
            (&["--exact", "ab", "c::xy"][..], &["ab", "c::xy"][..]),
            (&["x", "y"][..], &["c::x", "c::xy", "d::x"][..]),
        ] {
            let mut args = parse(args);
            let trials = names.map(|name| Trial::test(name, || Ok(()))).into();
            let trials = args.filter(trials);
            let run: Vec<&str> = trials
                .iter()
                .filter(|trial| !args.libtest.is_filtered_out(trial))
                .map(Trial::name)
                .collect();
            assert_eq!(run, kept, "{:?}", args.filters);
        }
    }
}
