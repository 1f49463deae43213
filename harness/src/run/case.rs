//! Running one `[[case]]`: from the config's state saved at `[ready]` where that works, else
//! by booting cold. Either way the case's steps are judged like any run, with the same
//! panic patterns and deadlines, and its report says which way it started.
//!
//! The first case that needs a state boots to `[ready]` under the state's lock, stops the VM,
//! freezes the disk, saves, and then restores from it like every other case: the state is
//! proven by its first use. After a restore the guest must answer `ready.probe` (by default
//! after a sleep, so its timer is exercised) before the case's steps start; a state whose
//! restore fails is marked unusable and the case boots cold, so a bad state never decides a
//! verdict.
//!
//! Where a frontend allows it ([`super::SpareQemu`]), a case whose guest answered starts the
//! next case's QEMU (`spare.rs`), and a case restores in that one when it fits.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::probe::now_secs;
use super::spare::{self, SpareKey};
use super::{
    launch, logged, prepare_with, FileResolver, Hooks, Note, Prepared, RunError, RunOptions,
};
use crate::config::{CaseSpec, LoadedConfig, ReadySection};
use crate::console::Session;
use crate::error::one_line;
use crate::outcome::{Outcome, Report};
use crate::plan::CasePart;
use crate::qemu::{self, QemuSpec, Qmp, RamFile, RamMapping};
use crate::settings::Settings;
use crate::states::{self, Method, SavedState, StateError, StateKey, StateMeta, StateStore};

/// How long saving or loading a state may take before scaling (a 512M guest takes ~0.3 s).
const MIGRATION_LIMIT: Duration = Duration::from_secs(60);
/// How long a save waits at most for the console to go quiet (a guest that never stops printing
/// is saved anyway).
const SAVE_SETTLE_LIMIT: Duration = Duration::from_secs(1);
/// How many saved states are kept (the least recently used go first).
const KEEP_STATES: usize = 16;
/// How long a restored guest has to answer the probe before scaling.
const PROBE_LIMIT: Duration = Duration::from_secs(10);

/// The trial name of `case` in config `config`: `config::case`.
pub fn case_trial_name(config: &str, case: &str) -> String {
    format!("{config}::{case}")
}

/// Runs `case` of `loaded` to a verdict, logging like [`super::run`] under the trial name.
pub fn run_case(
    loaded: &LoadedConfig,
    case: &str,
    resolver: &dyn FileResolver,
    options: RunOptions,
) -> Report {
    let name = case_trial_name(&loaded.name, case);
    logged(&name, options, |options, settings, log_dir, started| {
        let context = Context {
            loaded,
            name: &name,
            resolver,
            settings,
            log_dir,
            started,
        };
        context.run(case, options)
    })
}

/// What every attempt of one case run shares.
struct Context<'a> {
    loaded: &'a LoadedConfig,
    name: &'a str,
    resolver: &'a dyn FileResolver,
    settings: &'a Settings,
    log_dir: &'a Path,
    started: Instant,
}

/// How a case starts.
enum Start {
    /// From this state.
    Saved(SavedState),
    /// By booting, for this reason.
    Cold(String),
    /// Booting to `[ready]` failed: the report says how (every case would fail alike).
    BootFailed(Box<Report>),
}

impl Context<'_> {
    /// A report logging into `dir` that names the artifacts resolved so far (a restored
    /// case's are the state's: its key covers every file's sha256).
    fn report(&self, dir: &Path) -> Report {
        let mut report = Report::new(self.name, dir.join("console.log"));
        report.booted = self.resolver.booted();
        report
    }

    fn prepare(&self, options: &RunOptions) -> Result<Prepared, Box<Report>> {
        let prepared = prepare_with(
            self.loaded,
            self.resolver,
            options,
            self.settings,
            self.log_dir,
        );
        prepared.map_err(|outcome| {
            let report = self.report(self.log_dir);
            Box::new(report.ended(outcome, self.started.elapsed()))
        })
    }

    fn run(&self, case_name: &str, mut options: RunOptions) -> Report {
        if options.remote.is_none() {
            options.remote = self.settings.remote.clone();
        }
        let config = &self.loaded.config;
        let (Some(case), Some(ready)) = (
            config.cases.iter().find(|case| case.name == case_name),
            config.ready.as_ref(),
        ) else {
            let err = RunError::NoSuchCase(case_name.to_string());
            return self
                .report(self.log_dir)
                .ended(err.into(), self.started.elapsed());
        };
        let mut prepared = match self.prepare(&options) {
            Ok(prepared) => prepared,
            Err(report) => return *report,
        };
        let mut notes = Vec::new();
        let start = self.start(&mut prepared, ready, &mut options, &mut notes);
        let state = match start {
            Start::BootFailed(mut report) => {
                report.notes.extend(notes);
                return *report;
            }
            Start::Cold(why) => {
                notes.push(Note::ColdBoot(why));
                return self.cold(prepared, case, &mut options, notes);
            }
            Start::Saved(state) => state,
        };
        let mut in_spare = spare::wanted(self.settings);
        let restore = loop {
            let restore = self.restored(
                &mut prepared,
                &state,
                ready,
                case,
                &mut options,
                notes.clone(),
                in_spare,
            );
            if !matches!(restore, Err(RestoreFailed { in_spare: true, .. })) {
                break restore;
            }
            // A spare never decides: the restore is tried again in a QEMU of the case's own.
            move_aside(self.log_dir, "spare-failed");
            drop(prepared);
            prepared = match self.prepare(&options) {
                Ok(prepared) => prepared,
                Err(report) => return *report,
            };
            in_spare = false;
        };
        match restore {
            Ok(report) => report,
            Err(RestoreFailed { why, .. }) => {
                StateStore::mark_unusable(&state, &why);
                spare::forget(&state.meta.key);
                move_aside(self.log_dir, "restore-failed");
                notes.push(Note::ColdBoot(format!(
                    "restoring the saved state failed ({why}); it is marked unusable and its cases boot cold (logs in restore-failed/)"
                )));
                // The save boot wrote to this run's disk: start from a freshly built one.
                drop(prepared);
                match self.prepare(&options) {
                    Ok(prepared) => self.cold(prepared, case, &mut options, notes),
                    Err(report) => *report,
                }
            }
        }
    }

    /// Boots and runs the case without a saved state.
    fn cold(
        &self,
        mut prepared: Prepared,
        case: &CaseSpec,
        options: &mut RunOptions,
        notes: Vec<Note>,
    ) -> Report {
        prepared.expectations = prepared
            .plan
            .case_expectations(prepared.spec.accel, CasePart::Cold(case));
        prepared.notes.extend(notes);
        let report = self.report(self.log_dir);
        let hooks = Hooks::default();
        launch(
            report,
            &prepared,
            options,
            self.settings,
            self.started,
            hooks,
            None,
        )
    }

    /// Finds this config's saved state, or makes it; or says why the case boots cold.
    fn start(
        &self,
        prepared: &mut Prepared,
        ready: &ReadySection,
        options: &mut RunOptions,
        notes: &mut Vec<Note>,
    ) -> Start {
        if options.remote.is_some() {
            return Start::Cold("QEMU runs on a remote host, where states are not saved".into());
        }
        if !self.settings.saved_states {
            return Start::Cold("VMHARNESS_SAVED_STATES=off".into());
        }
        if !ready.save {
            return Start::Cold("the config sets `ready.save = false`".into());
        }
        if prepared.spec.qmp.is_none() {
            return Start::Cold("no QMP socket to save a state over (see the note above)".into());
        }
        let version = match qemu::version(&prepared.spec.binary) {
            Ok(version) => version,
            Err(err) => return Start::Cold(one_line(&err)),
        };
        let forced = self.settings.state_method;
        let method = match states::support(prepared.plan.arch, &version, forced) {
            Ok(Method::Template) => match states::template_fits(&prepared.spec, &version) {
                Ok(_) => Method::Template,
                Err(why) if forced.is_some() => {
                    return Start::Cold(format!("saved states cannot use `template`: {why}"))
                }
                Err(_) => Method::for_version(&version),
            },
            Ok(method) => method,
            Err(why) => return Start::Cold(why),
        };
        let boot = prepared
            .plan
            .case_expectations(prepared.spec.accel, CasePart::Boot);
        let key = match StateKey::of(&prepared.spec, &version, method, &boot) {
            Ok(key) => key,
            Err(err) => return Start::Cold(one_line(&err)),
        };
        let store = StateStore::new(self.settings.states_dir());
        // Concurrent cases (one process each under nextest) wait here while one saves.
        let _lock = match store.lock(&key) {
            Ok(lock) => lock,
            Err(err) => return Start::Cold(one_line(&err)),
        };
        match store.open(&key) {
            Ok(Some(state)) => match &state.unusable {
                Some(why) => Start::Cold(format!(
                    "restoring the saved state {} failed before: {why}",
                    key.short()
                )),
                None => Start::Saved(state),
            },
            Ok(None) => self.save(prepared, &store, &key, method, boot, options, notes),
            Err(err) => {
                notes.push(Note::StateDiscarded(one_line(&err)));
                spare::forget(&key.hex);
                store.discard(&key);
                self.save(prepared, &store, &key, method, boot, options, notes)
            }
        }
    }

    /// Boots to `[ready]`, stops the VM there, freezes its disk and saves its state.
    #[allow(clippy::too_many_arguments)]
    fn save(
        &self,
        prepared: &mut Prepared,
        store: &StateStore,
        key: &StateKey,
        method: Method,
        boot: crate::run::Expectations,
        options: &mut RunOptions,
        notes: &mut Vec<Note>,
    ) -> Start {
        let new = match store.begin(key) {
            Ok(new) => new,
            Err(err) => return Start::Cold(one_line(&err)),
        };
        let save_dir = self.log_dir.join("save");
        if let Err(err) = std::fs::create_dir_all(&save_dir) {
            return Start::Cold(format!("cannot create {}: {err}", save_dir.display()));
        }
        let socket = prepared.spec.qmp.clone().unwrap_or_default();
        let disk = prepared.spec.disk.as_ref().map(|disk| disk.image.clone());
        let limit = prepared
            .plan
            .deadlines
            .scaled(MIGRATION_LIMIT, prepared.spec.accel);
        if method == Method::Template {
            let ram = StateStore::ram_in(new.path());
            match template_ram(&prepared.spec, &ram, RamMapping::Shared) {
                Ok(file) => prepared.spec.ram_file = Some(file),
                Err(why) => return Start::Cold(why),
            }
        }
        let case_expectations = std::mem::replace(&mut prepared.expectations, boot);
        let mut frozen: Option<String> = None;
        let mut save_took = Duration::ZERO;
        let mut save_failure: Option<String> = None;
        let hook = |session: &mut Session| -> Result<(), Outcome> {
            // Save at a quiet console, not between a matched line and its line end.
            super::probe::settle(session, Instant::now() + SAVE_SETTLE_LIMIT);
            let started = Instant::now();
            let result = save_state(&socket, disk.as_deref(), new.path(), method, limit);
            save_took = started.elapsed();
            match result {
                Ok(disk_sha256) => {
                    frozen = disk_sha256;
                    Ok(())
                }
                Err(err) => {
                    let err = RunError::from(err);
                    save_failure = Some(one_line(&err));
                    Err(err.into())
                }
            }
        };
        let hooks = Hooks {
            after_spawn: None,
            after_pass: Some(Box::new(hook)),
        };
        // The save boot is not the user's: a terminal gets the case's run only.
        let mut quiet = RunOptions {
            settings: options.settings.clone(),
            accel: options.accel,
            extra_args: options.extra_args.clone(),
            append: options.append.clone(),
            no_timeouts: options.no_timeouts,
            ..RunOptions::default()
        };
        let report = launch(
            self.report(&save_dir),
            prepared,
            &mut quiet,
            self.settings,
            self.started,
            hooks,
            None,
        );
        prepared.expectations = case_expectations;
        // QEMU has exited: nothing writes the RAM file any more.
        prepared.spec.ram_file = None;
        let ram = match (report.outcome.is_pass(), method) {
            (true, Method::Template) => match StateStore::freeze_ram(new.path()) {
                Ok(ram) => Some(ram),
                Err(err) => {
                    let _ = std::fs::remove_dir_all(new.path());
                    return Start::Cold(one_line(&err));
                }
            },
            _ => None,
        };
        if !report.outcome.is_pass() {
            let _ = std::fs::remove_dir_all(new.path());
            return match save_failure {
                Some(why) => Start::Cold(format!("saving the state failed ({why}; logs in save/)")),
                None => Start::BootFailed(Box::new(self.boot_failed(report))),
            };
        }
        let stream = std::fs::metadata(StateStore::state_in(new.path()));
        let state_bytes = stream.as_ref().map_or(0, |m| m.len());
        // A mapped-ram stream is sparse: what it takes on disk is what matters.
        let allocated = stream.map_or(0, |m| std::os::unix::fs::MetadataExt::blocks(&m) * 512);
        let meta = StateMeta {
            key: key.hex.clone(),
            method,
            state_bytes,
            disk_sha256: frozen,
            saved_at: now_secs(),
            boot_secs: report.elapsed.as_secs_f64(),
            inputs: key.inputs.clone(),
            ram,
        };
        match store.commit(new.path(), meta) {
            Ok(state) => {
                store.prune(KEEP_STATES);
                notes.push(Note::StateSaved {
                    key: key.short().to_string(),
                    bytes: allocated.min(state_bytes),
                    ram_bytes: state.meta.ram.as_ref().map(|ram| ram.allocated),
                    boot: report.elapsed,
                    save: save_took,
                });
                Start::Saved(state)
            }
            Err(err) => {
                let _ = std::fs::remove_dir_all(new.path());
                Start::Cold(one_line(&err))
            }
        }
    }

    /// The save boot's report as the case's: it failed before `[ready]`.
    fn boot_failed(&self, mut report: Report) -> Report {
        report.notes.push(Note::ColdBoot(
            "this run booted to [ready] to save the guest's state and failed before (logs in save/)"
                .into(),
        ));
        report
    }

    /// Runs the case from `state`, in the spare QEMU if `spares` and one fits; `Err` says why
    /// the restore failed (not the case).
    #[allow(clippy::too_many_arguments)]
    fn restored(
        &self,
        prepared: &mut Prepared,
        state: &SavedState,
        ready: &ReadySection,
        case: &CaseSpec,
        options: &mut RunOptions,
        notes: Vec<Note>,
        spares: bool,
    ) -> Result<Report, RestoreFailed> {
        let accel = prepared.spec.accel;
        let method = state.meta.method;
        let failed = |why: String| RestoreFailed {
            why,
            in_spare: false,
        };
        prepared.expectations = prepared
            .plan
            .case_expectations(accel, CasePart::Restored(case));
        prepared.spec.incoming = Some(states::incoming().to_string());
        if method == Method::Template {
            let file = template_ram(&prepared.spec, &state.ram(), RamMapping::Private);
            prepared.spec.ram_file = Some(file.map_err(failed)?);
        }
        if let (Some(disk), Some(frozen)) = (prepared.spec.disk.as_mut(), state.disk()) {
            disk.image = frozen;
            prepared.spec.disk_overlay_dir = Some(prepared.temp.path().to_path_buf());
        }
        // A spare runs on pipes, locally.
        let spares = spares && options.input.is_none() && options.remote.is_none();
        let key = SpareKey::new(&self.loaded.name, &state.meta.key);
        let early = match spares {
            true => spare::take(&key, &prepared.spec).map(|adopted| {
                prepared.spec = adopted.spec;
                prepared.temp = adopted.temp;
                adopted.running
            }),
            false => None,
        };
        let started_early = early.is_some();
        // The next case's QEMU, started once this one answers.
        let mut next = spares.then(|| {
            (
                prepared.spec.clone(),
                prepared.temp.path().to_path_buf(),
                self.settings.state_dir().join("tmp"),
            )
        });
        prepared.notes.extend(notes);
        let socket = prepared.spec.qmp.clone().unwrap_or_default();
        let limit = prepared.plan.deadlines.scaled(MIGRATION_LIMIT, accel);
        let probe_limit = prepared.plan.deadlines.scaled(PROBE_LIMIT, accel);
        let line_ending = prepared.expectations.line_ending.clone();
        let mut failure: Option<String> = None;
        let mut took = Duration::ZERO;
        let mut resumed = Duration::ZERO;
        let hook = |session: &mut Session| -> Result<(), Outcome> {
            let result = restore_state(&socket, method, &state.state(), limit).and_then(|()| {
                resumed = session.started().elapsed();
                super::probe::probe(session, ready, &line_ending, probe_limit)
            });
            took = session.started().elapsed();
            if let (Ok(()), Some((spec, case_temp, temp_parent))) = (&result, next.take()) {
                spare::start(key.clone(), spec, case_temp, temp_parent);
            }
            result.map_err(|err| {
                failure = Some(one_line(&err));
                Outcome::from(err)
            })
        };
        let hooks = Hooks {
            after_spawn: Some(Box::new(hook)),
            after_pass: None,
        };
        let mut report = launch(
            self.report(self.log_dir),
            prepared,
            options,
            self.settings,
            self.started,
            hooks,
            early,
        );
        if let Some(why) = failure {
            return Err(RestoreFailed {
                why,
                in_spare: started_early,
            });
        }
        let age = Duration::from_secs(now_secs().saturating_sub(state.meta.saved_at));
        report.notes.push(Note::StateRestored {
            key: state.meta.key[..16].to_string(),
            method: method.name(),
            age,
            resumed,
            took,
            clock_set: ready.probe.contains("{epoch}"),
            started_early,
        });
        Ok(report)
    }
}

/// Why a restore failed, and whether it was in a spare QEMU.
struct RestoreFailed {
    why: String,
    in_spare: bool,
}

/// The `template` RAM file at `path` for `spec`: `Shared` while saving, else a private mapping
/// (of a file opened read-only where QEMU can).
fn template_ram(spec: &QemuSpec, path: &Path, mapping: RamMapping) -> Result<RamFile, String> {
    let version = qemu::version(&spec.binary).map_err(|err| one_line(&err))?;
    let bytes = states::template_fits(spec, &version)?;
    Ok(states::ram_file(
        path,
        bytes,
        mapping == RamMapping::Shared,
        &version,
    ))
}

/// Stops the VM, freezes its disk into `new` and saves its state there; the frozen disk's
/// sha256 when there is a disk.
fn save_state(
    socket: &Path,
    disk: Option<&Path>,
    new: &Path,
    method: Method,
    limit: Duration,
) -> Result<Option<String>, StateError> {
    let mut qmp = Qmp::connect(socket)?;
    qmp.execute("stop", serde_json::json!({}))?;
    // `stop` drains and flushes every disk, so the image holds what the guest wrote.
    let frozen = match disk {
        Some(disk) => Some(StateStore::freeze_disk(new, disk)?),
        None => None,
    };
    states::save(&mut qmp, method, &StateStore::state_in(new), limit)?;
    Ok(frozen)
}

fn restore_state(
    socket: &Path,
    method: Method,
    state: &Path,
    limit: Duration,
) -> Result<(), RunError> {
    let mut qmp = states::wait_for_qmp(socket, Instant::now() + limit)?;
    states::restore(&mut qmp, method, state, limit)?;
    Ok(())
}

/// Moves a failed attempt's logs into `<dir>/<name>/`.
fn move_aside(dir: &Path, name: &str) {
    let aside: PathBuf = dir.join(name);
    let _ = std::fs::create_dir_all(&aside);
    for file in ["console.log", "qemu-stderr.log", "qemu-command.sh"] {
        let _ = std::fs::rename(dir.join(file), aside.join(file));
    }
}
