//! Running one VM test: plan it, resolve its files, choose the accelerator, build and check
//! the QEMU spec, boot, and judge the console until a verdict.

mod case;
mod drive;
mod interactive;
mod judge;
pub mod logs;
mod options;
mod probe;
mod resolve;
mod spare;

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::accel::{self, Accel, ProbeSpec};
use crate::config::LoadedConfig;
use crate::console::Session;
use crate::outcome::{Outcome, Report, REPORT_TAIL_LINES};
use crate::plan::Plan;
use crate::qemu::{self, Argv, QemuProcess, QemuSpec, Transport};
use crate::remote::{self};
use crate::settings::Settings;

pub use crate::error::{causes, ErrorClass};
pub(crate) use crate::evidence::Symbols;
pub use crate::evidence::{vcpu, CrashBlock};
pub use crate::note::Note;
pub use crate::outcome::{MissingInput, ResolveError, RunError};
pub use crate::temp::{
    frontend_handles_signals, remove_active_temp_dirs, sweep as sweep_temp_dirs, RunTemp,
};
pub use case::{case_trial_name, run_case};
pub use judge::Expectations;
use options::settings;
pub use options::{Prepared, RunOptions};
pub use resolve::{resolve_ref, FileResolver, Resolver};
pub use spare::SpareQemu;

/// Loads the config at `path` and runs it as its trial would: settings and files from the
/// environment, logs under `<target>/vmharness/logs/<name>/`. A config with `[[case]]`s runs
/// its boot to `[ready]`; run one case with [`run_case`].
///
/// ```no_run
/// let report = vmharness::run::run_file("failing/panics.toml".as_ref())?;
/// assert_eq!(report.outcome.label(), "FAIL");
/// println!("{report}");
/// # Ok::<(), vmharness::config::ConfigError>(())
/// ```
pub fn run_file(path: &Path) -> Result<Report, crate::config::ConfigError> {
    let loaded = crate::config::load(path)?;
    Ok(run(&loaded, &Resolver::from_env(), RunOptions::default()))
}

/// Runs one loaded config to a verdict. Without [`RunOptions::log_dir`], the run logs into
/// its own `logs/<test>/<run>` directory and `logs/<test>/latest` points at it afterwards.
pub fn run(loaded: &LoadedConfig, resolver: &dyn FileResolver, options: RunOptions) -> Report {
    logged(
        &loaded.name,
        options,
        |options, settings, log_dir, started| {
            boot(loaded, resolver, options, settings, log_dir, started)
        },
    )
}

/// Runs `body` with the run's settings and log directory (its own `logs/<name>/<run>` unless
/// the options name one; `latest` points at it afterwards).
fn logged(
    name: &str,
    mut options: RunOptions,
    body: impl FnOnce(RunOptions, &Settings, &Path, Instant) -> Report,
) -> Report {
    let setup_started = Instant::now();
    let settings = match settings(&options) {
        Ok(settings) => settings,
        Err(err) => {
            let logs = Settings::defaults(crate::paths::workspace_root()).logs_dir();
            let log = logs.join(name).join("console.log");
            return Report::new(name, log).ended(err.into(), setup_started.elapsed());
        }
    };
    let own_dir = options.log_dir.is_none();
    let log_dir = match options.log_dir.take() {
        Some(dir) => dir,
        None => match logs::new_run_dir(&settings.logs_dir(), name) {
            Ok(dir) => dir,
            Err(source) => {
                let path = settings.logs_dir().join(name);
                let log = path.join("console.log");
                let err = RunError::Io {
                    what: "log dir",
                    path,
                    source,
                };
                return Report::new(name, log).ended(err.into(), setup_started.elapsed());
            }
        },
    };
    let report = body(options, &settings, &log_dir, setup_started);
    if own_dir {
        let _ = logs::mark_latest(&log_dir);
    }
    report
}

/// Prepares, boots and judges one run logging into `log_dir`.
fn boot(
    loaded: &LoadedConfig,
    resolver: &dyn FileResolver,
    mut options: RunOptions,
    settings: &Settings,
    log_dir: &Path,
    setup_started: Instant,
) -> Report {
    let mut report = Report::new(&loaded.name, log_dir.join("console.log"));
    if options.remote.is_none() {
        options.remote = settings.remote.clone();
    }
    let prepared = prepare_with(loaded, resolver, &options, settings, log_dir);
    report.booted = resolver.booted();
    let prepared = match prepared {
        Ok(prepared) => prepared,
        Err(outcome) => return report.ended(outcome, setup_started.elapsed()),
    };
    launch(
        report,
        &prepared,
        &mut options,
        settings,
        setup_started,
        Hooks::default(),
        None,
    )
}

/// What a run does around the console loop (restoring and saving states for `[[case]]`s).
#[derive(Default)]
pub(crate) struct Hooks<'a> {
    /// After QEMU starts, before the console is judged; an error ends the run with it.
    pub after_spawn: Option<Hook<'a>>,
    /// After a pass while QEMU still runs; an error replaces the pass.
    pub after_pass: Option<Hook<'a>>,
}

/// One of [`Hooks`].
pub(crate) type Hook<'a> = Box<dyn FnMut(&mut Session) -> Result<(), Outcome> + 'a>;

/// Spawns QEMU for `prepared` (locally, or staged on the remote host), or takes over `early`,
/// a local QEMU already started from `prepared.spec` (a spare); judges the console and fills
/// in `report`, logging into the directory of `report.log_path`.
pub(crate) fn launch(
    mut report: Report,
    prepared: &Prepared,
    options: &mut RunOptions,
    settings: &Settings,
    setup_started: Instant,
    mut hooks: Hooks<'_>,
    early: Option<spare::Running>,
) -> Report {
    let log_dir = report
        .log_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let local = prepared.spec.argv();
    report.qemu_command = Some(local.to_shell_line());
    report.accel = Some(prepared.spec.accel);
    report.notes = prepared.notes.clone();
    let _ = std::fs::write(
        log_dir.join("qemu-command.sh"),
        format!("{}\n", local.to_shell_line()),
    );
    let logged_stderr = log_dir.join("qemu-stderr.log");
    let mut stderr_path = logged_stderr.clone();
    // Remote hook: the command becomes `ssh -tt host ...`; the guard removes the remote dir.
    let staged = match &options.remote {
        None => None,
        Some(host) => match remote::stage(&prepared.spec, host) {
            Ok((argv, guard)) => {
                report.notes.push(Note::Remote {
                    destination: host.destination.clone(),
                    dir: guard.dir().to_string(),
                });
                let _ = std::fs::write(
                    log_dir.join("remote-command.sh"),
                    format!("{}\n", argv.to_shell_line()),
                );
                Some((argv, guard))
            }
            Err(err) => return report.ended(RunError::from(err).into(), setup_started.elapsed()),
        },
    };
    let argv: &Argv = staged.as_ref().map_or(&local, |(argv, _)| argv);
    // A terminal only where a person types; a pipe costs nothing over raw QEMU.
    let transport = match options.input {
        Some(_) => Transport::Pty,
        None => Transport::Pipe,
    };
    let spawned = match early {
        Some(running) => {
            // QEMU keeps writing to the file it was given, wherever it is renamed to.
            if std::fs::rename(&running.stderr, &stderr_path).is_err() {
                stderr_path = running.stderr;
            }
            Ok(running.process)
        }
        None => QemuProcess::spawn(argv, &stderr_path, transport),
    };
    let process = match spawned {
        Ok(process) => process,
        Err(err) => return report.ended(RunError::from(err).into(), setup_started.elapsed()),
    };
    let mut session = match Session::new(process, &report.log_path, settings.console_log_limit) {
        Ok(session) => session,
        Err(source) => {
            let err = RunError::Io {
                what: "console log",
                path: report.log_path.clone(),
                source,
            };
            return report.ended(err.into(), setup_started.elapsed());
        }
    };
    // A failed hook leaves the terminal's tee and input to the attempt that follows.
    let hooked = hooks.after_spawn.as_mut().map(|hook| hook(&mut session));
    let mut ended = match hooked {
        Some(Err(outcome)) => drive::Ended::before_drive(outcome, session.started().elapsed()),
        _ => {
            if let Some(tee) = options.tee.take() {
                session.set_tee(tee);
            }
            if let Some(input) = options.input.take() {
                session.set_input(input);
            }
            drive::drive(&mut session, prepared, &stderr_path)
        }
    };
    if let (true, Some(hook)) = (ended.outcome.is_pass(), hooks.after_pass.as_mut()) {
        if let Err(outcome) = hook(&mut session) {
            ended.outcome = outcome;
        }
    }
    interactive::finish(&mut session, &mut ended);
    // What the guest was doing, for a failure while QEMU still runs; symbols read once.
    let failed_running = ended.exit.is_none() && !ended.outcome.is_pass();
    drive::finish_crash_block(&mut session, &mut ended, failed_running);
    let symbols = match ended.outcome.is_pass() {
        true => None,
        false => prepared.symbols.as_deref().and_then(Symbols::load),
    };
    if failed_running {
        // A guest that ended itself (panic=-1 reboots into -no-reboot) has no vCPUs to read.
        if session.wait_exit(std::time::Duration::ZERO).is_none() {
            report.vcpus = vcpu_state(prepared, prepared.plan.arch, symbols.as_ref());
        }
    }
    if ended.exit.is_none() {
        session.kill();
    }
    report.crash = ended.crash.take();
    if let (Some(crash), Some(symbols)) = (report.crash.as_mut(), symbols.as_ref()) {
        crash.symbolize(symbols);
    }
    if let Some(timing) = ended.timing.as_mut() {
        timing.qemu_stopped = session.started().elapsed();
    }
    report.outcome = ended.outcome;
    if let Some(results) = ended.results {
        // The guest's own verdicts count: one failing case fails a run that otherwise passed.
        if let (true, Some(reason)) = (report.outcome.is_pass(), results.failure_reason()) {
            report.outcome = Outcome::Fail { reason };
        }
        report.results = Some(results);
    }
    report.expected = ended.expected;
    report.matched = ended.matched;
    report.exit = ended.exit;
    report.elapsed = ended.elapsed;
    report.verdict_timing = ended.timing;
    report.console_bytes = session.bytes_read();
    report.tail = session.tail(REPORT_TAIL_LINES);
    if let Err(source) = session.finish_log() {
        let err = RunError::Write {
            what: "console log",
            path: report.log_path.clone(),
            source,
        };
        // A pass whose log is not whole is not a pass; a failure keeps its verdict.
        match report.outcome.is_pass() {
            true => report.outcome = err.into(),
            false => report.notes.push(Note::LogIncomplete(err.to_string())),
        }
    }
    if !report.outcome.is_pass() {
        report.qemu_stderr = last_lines(&stderr_path, 10);
    }
    drop(session);
    if stderr_path != logged_stderr {
        let _ = std::fs::copy(&stderr_path, &logged_stderr);
    }
    drop(staged);
    report
}

/// The vCPU state over QMP while QEMU still runs, symbolized; `Err` says why not.
fn vcpu_state(
    prepared: &Prepared,
    arch: crate::arch::Arch,
    symbols: Option<&Symbols>,
) -> Option<Result<Vec<vcpu::CpuState>, String>> {
    let socket = prepared.spec.qmp.as_ref()?;
    Some(vcpu::snapshot(socket, arch, symbols).map_err(|err| crate::error::one_line(&err)))
}

fn last_lines(path: &Path, n: usize) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

/// Plans the config, resolves its files, picks the accelerator and builds the checked spec.
pub fn prepare(
    loaded: &LoadedConfig,
    resolver: &dyn FileResolver,
    options: &RunOptions,
    log_dir: &Path,
) -> Result<Prepared, Outcome> {
    let settings = settings(options)?;
    prepare_with(loaded, resolver, options, &settings, log_dir)
}

fn prepare_with(
    loaded: &LoadedConfig,
    resolver: &dyn FileResolver,
    options: &RunOptions,
    settings: &Settings,
    log_dir: &Path,
) -> Result<Prepared, Outcome> {
    let mut plan = Plan::new(loaded, settings).map_err(RunError::from)?;
    if let Some(reason) = &plan.ignore {
        return Err(Outcome::Skipped {
            reason: reason.clone(),
        });
    }
    if let Some(choice) = options.accel {
        plan.set_accel(choice).map_err(RunError::from)?;
    }
    plan.qemu.extra.extend(options.extra_args.iter().cloned());
    if let Some(append) = &options.append {
        plan.qemu.append = Some(append.clone());
    }
    plan.deadlines.enabled = !options.no_timeouts;

    std::fs::create_dir_all(log_dir).map_err(|source| RunError::Io {
        what: "log dir",
        path: log_dir.to_path_buf(),
        source,
    })?;
    let temp_parent = settings.state_dir().join("tmp");
    let mut temp = RunTemp::new(&temp_parent, &loaded.name).map_err(|source| RunError::Io {
        what: "temp dir",
        path: temp_parent.clone(),
        source,
    })?;

    // A remote host has its own QEMU: `remote::stage` checks it there.
    let binary = match options.remote {
        Some(_) => PathBuf::from(&plan.qemu.binary),
        None => qemu::find_binary(&plan.qemu.binary).map_err(RunError::from)?,
    };
    let decision = match &options.remote {
        Some(host) => remote::choose_accel(host, plan.accel, plan.arch).map_err(RunError::from)?,
        None => {
            let probe = ProbeSpec {
                qemu: &binary,
                machine: &plan.qemu.machine,
                cpu: &plan.cpu(Accel::Kvm),
                cache_dir: &settings.state_dir().join("kvm-probe"),
                temp_dir: &temp_parent,
                timeout: settings.kvm_probe_timeout,
            };
            accel::choose(plan.accel, plan.arch, &probe).map_err(RunError::from)?
        }
    };
    if let (Some(why), Accel::Tcg) = (&loaded.config.needs_kvm, decision.accel) {
        return Err(Outcome::from(RunError::MissingInputs(vec![
            MissingInput::NoKvm {
                why: why.clone(),
                reason: decision
                    .fallback
                    .clone()
                    .unwrap_or_else(|| format!("the accelerator is TCG ({})", plan.accel_source)),
            },
        ])));
    }
    let mut notes: Vec<Note> = Vec::new();
    if let Some(reason) = &decision.fallback {
        plan.check_cpu(Accel::Tcg, &format!("accel auto: {reason}"))
            .map_err(RunError::from)?;
        notes.push(Note::AccelFallback(reason.clone()));
    }

    let files = resolve::inputs(&plan, resolver, settings)?;
    files.check_regular(&plan).map_err(RunError::from)?;
    let disk_image = resolve::build_disk(&plan, &files, settings, temp.path())?;
    // `cpu_since` needs the local QEMU's release; on a remote host the configured `cpu` applies.
    let version = match options.remote {
        None if !plan.qemu.cpu_since.is_empty() => {
            Some(qemu::version(&binary).map_err(RunError::QemuVersion)?)
        }
        _ => None,
    };
    let mut spec = QemuSpec::from_plan(
        &plan,
        binary,
        decision.accel,
        version.as_ref(),
        &|used| files.path(used),
        disk_image,
    );
    // QMP for failure reports and saved states, local runs only; a socket path must fit a
    // socket address, so a deep temp dir is reached through a short path.
    if options.remote.is_none() {
        match temp.socket_path("qmp.sock") {
            Ok(socket) => spec.qmp = Some(socket),
            Err(err) => notes.push(Note::NoQmp(format!(
                "cannot make a QMP socket path in {}: {err}",
                temp.path().display()
            ))),
        }
    }
    let symbols = files
        .path(&crate::plan::InputUse::Symbols)
        .or_else(|| spec.kernel.clone());
    if options.remote.is_none() {
        qemu::preflight(&spec).map_err(RunError::from)?;
    }
    let scale = plan.deadlines.scale(decision.accel);
    if plan.deadlines.enabled && scale != 1.0 {
        notes.push(Note::TimeoutsScaled(scale));
    }
    Ok(Prepared {
        timeouts: plan.deadlines.timeouts(decision.accel),
        expectations: plan.expectations(decision.accel),
        spec,
        notes,
        temp,
        results: loaded.config.results.clone(),
        symbols,
        plan,
    })
}
