//! Running one VM test: resolve files, choose the accelerator, build and check the QEMU
//! command, boot, and judge the console until a verdict.

mod drive;
mod interactive;
pub mod judge;
mod resolve;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use regex::Regex;

use crate::accel::{self, Accel, ProbeSpec};
use crate::config::{AccelChoice, LoadedConfig};
use crate::console::{ConsoleInput, Session};
use crate::outcome::{Outcome, Report, REPORT_TAIL_LINES};
use crate::qemu::{self, QemuCommand, QemuProcess};
use crate::remote::{self, Remote};

pub use judge::{Expectations, Judge, DEFAULT_PANIC_PATTERNS};
pub use resolve::{
    artifacts_required, FileResolver, ResolveFailure, Resolver, REQUIRE_ARTIFACTS_ENV,
};

/// Environment variable: multiply every timeout by this factor (for slow CI machines).
pub const TIMEOUT_SCALE_ENV: &str = "VMHARNESS_TIMEOUT_SCALE";

/// Environment variable: overrides every config's `accel` (`auto`, `kvm` or `tcg`), e.g. in CI.
/// `RunOptions::accel` still wins over it.
pub const ACCEL_ENV: &str = "VMHARNESS_ACCEL";

/// Knobs a frontend may turn for one run.
#[derive(Default)]
pub struct RunOptions {
    /// Overrides the config's `accel`.
    pub accel: Option<AccelChoice>,
    /// Extra QEMU arguments appended after the config's.
    pub extra_args: Vec<String>,
    /// Replaces the config's kernel command line.
    pub append: Option<String>,
    /// Disables every timeout (for debugging with `--gdb`).
    pub no_timeouts: bool,
    /// Receives the cleaned console bytes as they arrive (e.g. a terminal).
    pub tee: Option<Box<dyn std::io::Write + Send>>,
    /// Overrides the log directory (default `target/vmharness/logs/<test>`).
    pub log_dir: Option<PathBuf>,
    /// Runs QEMU on this host over ssh (default: `$VMHARNESS_REMOTE`, else locally).
    pub remote: Option<Remote>,
    /// Keyboard input for an interactive session. With input, a verdict does not end the run:
    /// the console stays attached until QEMU exits or the escape key is pressed, and the
    /// verdict reached first is reported.
    pub input: Option<ConsoleInput>,
}

/// Everything needed before QEMU starts.
pub struct Prepared {
    /// The checked QEMU command.
    pub command: QemuCommand,
    /// The accelerator chosen.
    pub accel: Accel,
    /// Setup notes (KVM fallback and the like).
    pub notes: Vec<String>,
    /// The verdict expectations.
    pub expectations: Expectations,
    /// Scaled deadlines.
    pub timeouts: Timeouts,
    /// Where logs go.
    pub log_dir: PathBuf,
    /// Private temp dir (disk images); removed when dropped.
    pub temp: tempfile::TempDir,
    /// Decodes QEMU's exit status into the guest's exit code.
    pub exit_device: Option<crate::arch::ExitDevice>,
}

/// The run-wide deadlines, already scaled for the accelerator.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Whole run.
    pub total: Option<Duration>,
    /// Silence.
    pub no_output: Option<Duration>,
}

/// Runs one loaded config to a verdict.
pub fn run(loaded: &LoadedConfig, resolver: &dyn FileResolver, options: RunOptions) -> Report {
    let setup_started = Instant::now();
    let log_dir = options
        .log_dir
        .clone()
        .unwrap_or_else(|| crate::paths::log_dir(&crate::paths::workspace_root(), &loaded.name));
    let mut report = Report {
        name: loaded.name.clone(),
        outcome: Outcome::Pass,
        expected: String::new(),
        matched: Vec::new(),
        tail: Vec::new(),
        qemu_stderr: Vec::new(),
        elapsed: Duration::ZERO,
        qemu_command: None,
        accel: None,
        notes: Vec::new(),
        exit: None,
        log_path: log_dir.join("console.log"),
        console_bytes: 0,
        verdict_timing: None,
        booted: Vec::new(),
    };
    let mut options = options;
    if options.remote.is_none() {
        match Remote::from_env() {
            Ok(from_env) => options.remote = from_env,
            Err(err) => {
                report.outcome = Outcome::Infra {
                    reason: err.to_string(),
                };
                return report;
            }
        }
    }
    let prepared = prepare(loaded, resolver, &options, &log_dir);
    report.booted = resolver.booted();
    let prepared = match prepared {
        Ok(prepared) => prepared,
        Err(outcome) => {
            report.outcome = outcome;
            report.elapsed = setup_started.elapsed();
            return report;
        }
    };
    report.qemu_command = Some(prepared.command.to_shell_line());
    report.accel = Some(prepared.accel);
    report.notes = prepared.notes.clone();
    let _ = std::fs::write(
        log_dir.join("qemu-command.sh"),
        format!("{}\n", prepared.command.to_shell_line()),
    );
    let stderr_path = log_dir.join("qemu-stderr.log");
    // Remote hook: the command becomes `ssh -tt host ...`; the guard removes the remote dir.
    let staged = match &options.remote {
        None => None,
        Some(host) => match remote::stage(&prepared.command, host) {
            Ok((command, guard)) => {
                report.notes.push(format!(
                    "remote: QEMU runs on {} in {}",
                    host.destination,
                    guard.dir()
                ));
                Some((command, guard))
            }
            Err(err) => {
                report.outcome = Outcome::Infra {
                    reason: err.to_string(),
                };
                report.elapsed = setup_started.elapsed();
                return report;
            }
        },
    };
    let command = staged.as_ref().map_or(&prepared.command, |(c, _)| c);
    if staged.is_some() {
        let _ = std::fs::write(
            log_dir.join("remote-command.sh"),
            format!("{}\n", command.to_shell_line()),
        );
    }
    let process = match QemuProcess::spawn(command, &stderr_path) {
        Ok(process) => process,
        Err(err) => {
            report.outcome = Outcome::Infra {
                reason: err.to_string(),
            };
            report.elapsed = setup_started.elapsed();
            return report;
        }
    };
    let mut session = match Session::new(process, &report.log_path) {
        Ok(session) => session,
        Err(err) => {
            report.outcome = Outcome::Infra {
                reason: format!(
                    "cannot open console log {}: {err}",
                    report.log_path.display()
                ),
            };
            return report;
        }
    };
    if let Some(tee) = options.tee.take() {
        session.set_tee(tee);
    }
    if let Some(input) = options.input.take() {
        session.set_input(input);
    }
    let mut ended = drive::drive(&mut session, &prepared, &stderr_path);
    interactive::finish(&mut session, &mut ended);
    if ended.exit.is_none() {
        session.kill();
    }
    if let Some(timing) = ended.timing.as_mut() {
        timing.qemu_stopped = session.started().elapsed();
    }
    report.outcome = ended.outcome;
    report.expected = ended.expected;
    report.matched = ended.matched;
    report.exit = ended.exit;
    report.elapsed = ended.elapsed;
    report.verdict_timing = ended.timing;
    report.console_bytes = session.bytes_read();
    report.tail = session.tail(REPORT_TAIL_LINES);
    if !report.outcome.is_pass() {
        report.qemu_stderr = last_lines(&stderr_path, 10);
    }
    drop(session);
    drop(staged);
    drop(prepared);
    report
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

/// Resolves files, picks the accelerator and builds the checked QEMU command.
pub fn prepare(
    loaded: &LoadedConfig,
    resolver: &dyn FileResolver,
    options: &RunOptions,
    log_dir: &Path,
) -> Result<Prepared, Outcome> {
    let config = &loaded.config;
    if let Some(reason) = &config.ignore {
        return Err(Outcome::Skipped {
            reason: reason.clone(),
        });
    }
    let infra = |reason: String| Outcome::Infra { reason };
    std::fs::create_dir_all(log_dir).map_err(|err| {
        infra(format!(
            "cannot create log dir {}: {err}",
            log_dir.display()
        ))
    })?;
    let root = crate::paths::workspace_root();
    let temp_parent = crate::paths::state_dir(&root).join("tmp");
    let _ = std::fs::create_dir_all(&temp_parent);
    let temp = tempfile::Builder::new()
        .prefix(&format!("{}-", loaded.name))
        .tempdir_in(&temp_parent)
        .or_else(|_| tempfile::tempdir())
        .map_err(|err| infra(format!("cannot create a temp dir: {err}")))?;

    let spec = config.arch.spec();
    let binary = config
        .qemu
        .binary
        .clone()
        .unwrap_or_else(|| spec.qemu_binary.to_string());
    // A remote host has its own QEMU: `remote::stage` checks it there.
    let binary_path = match options.remote {
        Some(_) => PathBuf::from(&binary),
        None => qemu::find_binary(&binary).map_err(|err| infra(err.to_string()))?,
    };
    let machine = config
        .qemu
        .machine
        .clone()
        .unwrap_or_else(|| spec.machine.to_string());
    let kvm_cpu = config
        .qemu
        .cpu
        .clone()
        .unwrap_or_else(|| spec.kvm_cpu.to_string());
    let probe = ProbeSpec {
        qemu: &binary_path,
        machine: &machine,
        cpu: &kvm_cpu,
        cache_dir: &accel::default_cache_dir(&root),
    };
    let choice = match (options.accel, accel_from_env()?) {
        (Some(choice), _) | (None, Some(choice)) => choice,
        (None, None) => config.accel,
    };
    let decision = match &options.remote {
        Some(host) => {
            remote::choose_accel(host, choice, config.arch).map_err(|err| infra(err.to_string()))?
        }
        None => accel::choose(choice, config.arch, &probe).map_err(|err| infra(err.to_string()))?,
    };
    let mut notes: Vec<String> = decision.note.into_iter().collect();

    let mut command = QemuCommand::new(&binary_path);
    command.machine(&machine).accel(decision.accel);
    let cpu = match (decision.accel, &config.qemu.cpu) {
        (_, Some(cpu)) => cpu.clone(),
        (Accel::Kvm, None) => spec.kvm_cpu.to_string(),
        (Accel::Tcg, None) => spec.tcg_cpu.to_string(),
    };
    command.cpu(&cpu);
    command.memory(config.qemu.memory.as_deref().unwrap_or(spec.memory));
    if let Some(smp) = config.qemu.smp {
        command.smp(smp);
    }
    let base = loaded.base_dir();
    for (option, value) in [
        ("-bios", &config.qemu.bios),
        ("-kernel", &config.qemu.kernel),
        ("-initrd", &config.qemu.initrd),
    ] {
        if let Some(reference) = value {
            let path = resolver
                .resolve(reference, base)
                .map_err(|failure| failure.into_outcome(option))?;
            command.path_opt(option, &path);
        }
    }
    if let Some(append) = options.append.as_ref().or(config.qemu.append.as_ref()) {
        command.opt("-append", append);
    }
    let exit_device = config
        .qemu
        .exit_device
        .unwrap_or(true)
        .then_some(spec.exit_device);
    if let Some(device) = exit_device {
        command.args(device.qemu_args().iter().copied());
    }
    resolve::attach_disk(loaded, resolver, temp.path(), &mut command)?;
    command.args(config.qemu.args.iter().cloned());
    command.args(options.extra_args.iter().cloned());
    if options.remote.is_none() {
        qemu::preflight(&mut command).map_err(|err| infra(err.to_string()))?;
    }

    let scale = scale_factor(decision.accel, config.timeouts.tcg_scale);
    let scaled = |d: Duration| (!options.no_timeouts).then(|| d.mul_f64(scale));
    let timeouts = Timeouts {
        total: scaled(config.timeouts.total),
        no_output: scaled(config.timeouts.no_output),
    };
    if scale != 1.0 {
        notes.push(format!("timeouts scaled by {scale}"));
    }
    let expectations = expectations(
        loaded,
        if options.no_timeouts {
            None
        } else {
            Some(scale)
        },
    );
    Ok(Prepared {
        command,
        accel: decision.accel,
        notes,
        expectations,
        timeouts,
        log_dir: log_dir.to_path_buf(),
        temp,
        exit_device,
    })
}

/// The accelerator forced by [`ACCEL_ENV`], if set.
fn accel_from_env() -> Result<Option<AccelChoice>, Outcome> {
    let Ok(value) = std::env::var(ACCEL_ENV) else {
        return Ok(None);
    };
    match value.trim() {
        "" => Ok(None),
        "auto" => Ok(Some(AccelChoice::Auto)),
        "kvm" => Ok(Some(AccelChoice::Kvm)),
        "tcg" => Ok(Some(AccelChoice::Tcg)),
        other => Err(Outcome::Infra {
            reason: format!(
                "{ACCEL_ENV}=`{other}` is not an accelerator (expected auto, kvm or tcg)"
            ),
        }),
    }
}

fn scale_factor(accel: Accel, tcg_scale: f64) -> f64 {
    let env = std::env::var(TIMEOUT_SCALE_ENV)
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v > 0.0)
        .unwrap_or(1.0);
    env * if accel == Accel::Tcg { tcg_scale } else { 1.0 }
}

/// The judge's expectations for a config; `scale` multiplies step timeouts (`None`: no timeouts).
pub fn expectations(loaded: &LoadedConfig, scale: Option<f64>) -> Expectations {
    let console = &loaded.config.console;
    let never = Duration::from_secs(100 * 365 * 24 * 3600);
    let scale_step = |d: Duration| scale.map_or(never, |s| d.mul_f64(s));
    let steps = console
        .steps
        .iter()
        .cloned()
        .map(|step| match step {
            crate::config::Step::Expect { pattern, timeout } => crate::config::Step::Expect {
                pattern,
                timeout: timeout.map(scale_step),
            },
            crate::config::Step::ExpectNot { pattern, timeout } => crate::config::Step::ExpectNot {
                pattern,
                timeout: timeout.map(|d| d.mul_f64(scale.unwrap_or(1.0))),
            },
            send => send,
        })
        .collect();
    let mut panic_patterns: Vec<Regex> = DEFAULT_PANIC_PATTERNS
        .iter()
        .filter_map(|p| Regex::new(p).ok())
        .collect();
    panic_patterns.extend(console.panic_patterns.iter().map(|p| p.0.clone()));
    Expectations {
        banner: console.banner.clone(),
        steps,
        success: console.success.clone(),
        panic_patterns,
        allow: console.allow.iter().map(|p| p.0.clone()).collect(),
        exit_code: console.exit_code,
        step_timeout: scale_step(loaded.config.timeouts.step),
        line_ending: console.line_ending.clone().unwrap_or_else(|| "\r".into()),
    }
}
