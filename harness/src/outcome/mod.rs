//! The verdict of one VM test and the report that explains it.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

mod error;
mod provenance;

pub use error::{MissingInput, ResolveError, RunError};
pub use provenance::Provenance;

use crate::accel::Accel;
use crate::error::ErrorClass;
use crate::note::Note;
use crate::qemu::ExitStatus;
use crate::results::Results;

/// Which deadline ran out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeoutKind {
    /// The whole-run deadline (`timeouts.total`).
    Total(Duration),
    /// A banner entry's, step's or success pattern's own deadline.
    Step(Duration),
    /// The guest printed nothing for this long (`timeouts.no_output`).
    NoOutput(Duration),
    /// Every expectation was met, but QEMU did not exit (the config expects an exit).
    NoExit {
        /// When the last expectation was met, from QEMU's start.
        met_at: Duration,
        /// The deadline that then passed.
        limit: Duration,
    },
}

impl fmt::Display for TimeoutKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimeoutKind::Total(d) => write!(f, "total timeout of {}", secs(*d)),
            TimeoutKind::Step(d) => write!(f, "step timeout of {}", secs(*d)),
            TimeoutKind::NoOutput(d) => write!(f, "no console output for {}", secs(*d)),
            TimeoutKind::NoExit { met_at, limit } => write!(
                f,
                "all expectations met at {}; QEMU did not exit within {} (the config expects the guest to exit; set `success` if it runs on)",
                secs(*met_at),
                secs(*limit)
            ),
        }
    }
}

/// How a VM test ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Every expectation was met.
    Pass,
    /// The guest misbehaved: a panic pattern, a wrong exit code, QEMU exiting early.
    Fail {
        /// What the judge saw.
        reason: String,
    },
    /// A deadline passed while waiting for an expectation.
    Timeout {
        /// Which deadline.
        which: TimeoutKind,
    },
    /// The config says not to run it (`ignore = "why"`).
    Skipped {
        /// Why it was not run.
        reason: String,
    },
    /// The run could not judge the guest: its error, whose class is the label (FAIL for a
    /// test definition that cannot run, INFRA for the host, UNAVAILABLE for a missing input).
    Error(Arc<RunError>),
}

impl PartialEq for Outcome {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Outcome::Pass, Outcome::Pass) => true,
            (Outcome::Fail { reason: a }, Outcome::Fail { reason: b })
            | (Outcome::Skipped { reason: a }, Outcome::Skipped { reason: b }) => a == b,
            (Outcome::Timeout { which: a }, Outcome::Timeout { which: b }) => a == b,
            (Outcome::Error(a), Outcome::Error(b)) => {
                Arc::ptr_eq(a, b) || a.to_string() == b.to_string()
            }
            _ => false,
        }
    }
}

impl Eq for Outcome {}

impl From<RunError> for Outcome {
    fn from(error: RunError) -> Self {
        Outcome::Error(Arc::new(error))
    }
}

impl Outcome {
    /// A short upper-case label: PASS, FAIL, TIMEOUT, INFRA, SKIPPED, UNAVAILABLE.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Fail { .. } => "FAIL",
            Outcome::Timeout { .. } => "TIMEOUT",
            Outcome::Skipped { .. } => "SKIPPED",
            Outcome::Error(error) => error.class().label(),
        }
    }

    /// The error class of an [`Outcome::Error`].
    pub fn class(&self) -> Option<ErrorClass> {
        match self {
            Outcome::Error(error) => Some(error.class()),
            _ => None,
        }
    }

    /// Whether the host, not the guest or the test, failed (the only outcome retried).
    pub fn is_infra(&self) -> bool {
        self.class() == Some(ErrorClass::Infra)
    }

    /// Whether an input was missing here (a skip with its reason, not a pass).
    pub fn is_unavailable(&self) -> bool {
        self.class() == Some(ErrorClass::Unavailable)
    }

    /// The process exit code `cargo xtask qemu --check` uses for this outcome.
    pub fn exit_code(&self) -> i32 {
        match self.label() {
            "PASS" => 0,
            "FAIL" => 1,
            "TIMEOUT" => 2,
            "INFRA" => 3,
            "SKIPPED" => 4,
            _ => 5,
        }
    }

    /// Whether the test passed.
    pub fn is_pass(&self) -> bool {
        matches!(self, Outcome::Pass)
    }

    /// The one-line reason, without the label.
    pub fn detail(&self) -> String {
        match self {
            Outcome::Pass => "all expectations met".into(),
            Outcome::Fail { reason } | Outcome::Skipped { reason } => reason.clone(),
            Outcome::Timeout { which } => which.to_string(),
            Outcome::Error(error) => error.to_string(),
        }
    }

    /// The reason and every cause, one `caused by:` line each (what a report prints).
    pub fn explained(&self) -> String {
        let mut text = self.detail();
        for cause in self.causes() {
            text.push_str("\n  caused by: ");
            text.push_str(&cause.replace('\n', "\n    "));
        }
        text
    }

    /// What caused an [`Outcome::Error`], outermost first.
    pub fn causes(&self) -> Vec<String> {
        match self {
            Outcome::Error(error) => crate::error::causes(error.as_ref()),
            _ => Vec::new(),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Pass => f.write_str("PASS"),
            other => write!(f, "{}: {}", other.label(), other.detail()),
        }
    }
}

/// How QEMU and the guest exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestExit {
    /// QEMU's own exit status.
    pub qemu: ExitStatus,
    /// The guest's exit code, decoded from the arch's exit channel.
    pub guest_code: Option<i32>,
}

impl fmt::Display for GuestExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QEMU {}", self.qemu)?;
        if let Some(code) = self.guest_code {
            write!(f, ", guest exit code {code}")?;
        }
        Ok(())
    }
}

/// Everything a user needs to understand one VM test's result.
#[derive(Debug, Clone)]
pub struct Report {
    /// The test name.
    pub name: String,
    /// The verdict.
    pub outcome: Outcome,
    /// What the test was waiting for when it ended (empty on pass).
    pub expected: String,
    /// Expectations met, in order, with when and on which text.
    pub matched: Vec<String>,
    /// The last console lines (at most 40).
    pub tail: Vec<String>,
    /// The last lines QEMU wrote to stderr.
    pub qemu_stderr: Vec<String>,
    /// Time from QEMU start (or from setup, if QEMU never started) to the verdict.
    pub elapsed: Duration,
    /// The QEMU command line as a copy-pasteable shell line, once it was built.
    pub qemu_command: Option<String>,
    /// The accelerator used, once chosen.
    pub accel: Option<Accel>,
    /// Notes about setup, such as the KVM fallback.
    pub notes: Vec<Note>,
    /// How QEMU exited, if it did on its own.
    pub exit: Option<GuestExit>,
    /// The full console log.
    pub log_path: PathBuf,
    /// Console bytes read.
    pub console_bytes: u64,
    /// When a console line decided the verdict: its read, the verdict, QEMU stopped.
    pub verdict_timing: Option<VerdictTiming>,
    /// The artifacts the run booted: key, output sha256, Debian package versions.
    pub booted: Vec<Provenance>,
    /// What the guest reported about its own tests (`[results]`), if the config asks.
    pub results: Option<Results>,
    /// The first crash block of the console (a panic, Oops, BUG, WARNING), whole.
    pub crash: Option<crate::evidence::CrashBlock>,
    /// The vCPUs when a failing or hanging run was stopped (or why they could not be read).
    pub vcpus: Option<Result<Vec<crate::evidence::vcpu::CpuState>, String>>,
}

impl Report {
    /// The report of a run that has not started, logging to `log_path`.
    pub fn new(name: &str, log_path: PathBuf) -> Report {
        Report {
            name: name.to_string(),
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
            log_path,
            console_bytes: 0,
            verdict_timing: None,
            booted: Vec::new(),
            results: None,
            crash: None,
            vcpus: None,
        }
    }

    /// This report, ended with `outcome` after `elapsed` (for runs that never booted).
    pub(crate) fn ended(mut self, outcome: Outcome, elapsed: Duration) -> Report {
        self.outcome = outcome;
        self.elapsed = elapsed;
        self
    }
}

/// Timestamps of a verdict decided by a console line (a panic or the success pattern), each
/// measured from QEMU's start. Benchmarks use them for read-to-verdict latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerdictTiming {
    /// When the read that completed the deciding line returned.
    pub line_read: Duration,
    /// When the judge returned the verdict for that line.
    pub decided: Duration,
    /// When QEMU had been killed and reaped after the verdict.
    pub qemu_stopped: Duration,
}

/// How many console lines a failure report shows.
pub(crate) const REPORT_TAIL_LINES: usize = 40;

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let counts = match (&self.results, self.outcome.is_pass()) {
            (Some(results), true) => format!(" ({})", results.counts()),
            _ => String::new(),
        };
        writeln!(
            f,
            "{} {}: {}{counts}",
            self.outcome.label(),
            self.name,
            self.outcome.explained()
        )?;
        if let Some(results) = &self.results {
            write_results(f, results)?;
        }
        if let Some(crash) = &self.crash {
            let end = if crash.complete {
                ""
            } else {
                ", no end line seen"
            };
            writeln!(
                f,
                "  crash ({}, {} lines{end}):",
                crash.kind,
                crash.lines.len()
            )?;
            for line in &crash.lines {
                writeln!(f, "    | {line}")?;
            }
            for (address, symbol) in &crash.symbols {
                writeln!(f, "    = {address:#x} is {symbol}")?;
            }
        }
        match &self.vcpus {
            Some(Ok(cpus)) => {
                for cpu in cpus {
                    writeln!(f, "  vcpu {}:   {}", cpu.index, describe_cpu(cpu))?;
                }
            }
            Some(Err(why)) => writeln!(f, "  vcpus:    not read: {why}")?,
            None => {}
        }
        if !self.expected.is_empty() {
            writeln!(f, "  expected: {}", self.expected)?;
        }
        if self.matched.is_empty() {
            writeln!(f, "  matched:  nothing yet")?;
        } else {
            writeln!(f, "  matched:")?;
            for entry in &self.matched {
                writeln!(f, "    {entry}")?;
            }
        }
        if let Some(exit) = &self.exit {
            writeln!(f, "  exit:     {exit}")?;
        }
        if let Some(accel) = self.accel {
            writeln!(f, "  accel:    {accel}")?;
        }
        for note in &self.notes {
            writeln!(f, "  note:     {note}")?;
        }
        for booted in &self.booted {
            writeln!(f, "  booted:   {}", booted.summary())?;
        }
        writeln!(f, "  elapsed:  {}", secs(self.elapsed))?;
        if let Some(command) = &self.qemu_command {
            writeln!(f, "  qemu:     {command}")?;
        }
        writeln!(f, "  log:      {}", self.log_path.display())?;
        if !self.qemu_stderr.is_empty() {
            writeln!(f, "  qemu stderr:")?;
            for line in &self.qemu_stderr {
                writeln!(f, "    ! {line}")?;
            }
        }
        if self.tail.is_empty() {
            writeln!(f, "  console:  (no output)")?;
        } else {
            writeln!(f, "  last {} console lines:", self.tail.len())?;
            for line in &self.tail {
                writeln!(f, "    | {line}")?;
            }
        }
        Ok(())
    }
}

/// One vCPU in one line: pc with its symbol, sp, key state, what it was doing.
fn describe_cpu(cpu: &crate::evidence::vcpu::CpuState) -> String {
    let hex = |v: Option<u64>| v.map_or_else(|| "?".to_string(), |v| format!("{v:#x}"));
    let mut text = format!("pc {}", hex(cpu.pc));
    if let Some(symbol) = &cpu.symbol {
        text.push_str(&format!(" {symbol}"));
    }
    text.push_str(&format!(", sp {}", hex(cpu.sp)));
    for (key, value) in &cpu.state {
        text.push_str(&format!(", {key} {value}"));
    }
    text.push_str(&format!("; {}", cpu.activity));
    text
}

/// How many failing sub-results a report lists with their console lines; it counts the rest.
pub(crate) const REPORT_FAILURES: usize = 10;

/// The failing sub-results first (the first [`REPORT_FAILURES`]), with their console excerpts,
/// then the recorded values.
fn write_results(f: &mut fmt::Formatter<'_>, results: &Results) -> fmt::Result {
    let counts = results.counts();
    writeln!(f, "  sub-results: {} ({counts})", counts.total())?;
    let failures = results.failures();
    for case in failures.iter().take(REPORT_FAILURES) {
        let detail = case
            .detail
            .as_deref()
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        writeln!(f, "    {} {}{detail}", case.status.label(), case.name)?;
        for line in &case.excerpt {
            writeln!(f, "      | {line}")?;
        }
    }
    let listed = failures.len().min(REPORT_FAILURES);
    if counts.failing() > listed {
        writeln!(
            f,
            "    … and {} more failing sub-results",
            counts.failing() - listed
        )?;
    }
    if results.not_kept() > 0 {
        writeln!(
            f,
            "    ({} sub-results are only counted: result.toml and junit.xml keep the first {} failures and {} others)",
            results.not_kept(),
            crate::results::KEPT_FAILURES,
            crate::results::KEPT_OTHERS
        )?;
    }
    if !results.values.is_empty() {
        let values: Vec<String> = results
            .values
            .iter()
            .map(|(name, value)| format!("{name} = {value}"))
            .collect();
        writeln!(f, "  recorded:    {}", values.join(", "))?;
    }
    Ok(())
}

/// Formats a duration as seconds with millisecond precision.
pub(crate) fn secs(duration: Duration) -> String {
    format!("{:.3}s", duration.as_secs_f64())
}
