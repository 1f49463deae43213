//! The verdict of one VM test and the report that explains it.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::accel::Accel;
use crate::artifact::Provenance;
use crate::qemu::ExitStatus;

/// Which deadline ran out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeoutKind {
    /// The whole-run deadline (`timeouts.total`).
    Total(Duration),
    /// A banner entry's, step's or success pattern's own deadline.
    Step(Duration),
    /// The guest printed nothing for this long (`timeouts.no_output`).
    NoOutput(Duration),
}

impl fmt::Display for TimeoutKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimeoutKind::Total(d) => write!(f, "total timeout of {}", secs(*d)),
            TimeoutKind::Step(d) => write!(f, "step timeout of {}", secs(*d)),
            TimeoutKind::NoOutput(d) => write!(f, "no console output for {}", secs(*d)),
        }
    }
}

/// How a VM test ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every expectation was met.
    Pass,
    /// The guest misbehaved: a panic pattern, a wrong exit code, QEMU exiting early.
    Fail {
        /// What went wrong.
        reason: String,
    },
    /// A deadline passed while waiting for an expectation.
    Timeout {
        /// Which deadline.
        which: TimeoutKind,
    },
    /// The host could not run the test: QEMU missing, KVM broken, an artifact unobtainable.
    Infra {
        /// What is wrong with the host.
        reason: String,
    },
    /// The config says not to run it (`ignore = "why"`).
    Skipped {
        /// Why it was not run.
        reason: String,
    },
    /// An input cannot be obtained here (an artifact needs the network, an `env:` variable is
    /// unset). Not a pass: its own label and exit code, so a pipeline can tell it from an
    /// intended skip (and `VMHARNESS_REQUIRE_ARTIFACTS=1` makes it an infrastructure failure).
    Unavailable {
        /// What is missing.
        reason: String,
    },
}

impl Outcome {
    /// A short upper-case label: PASS, FAIL, TIMEOUT, INFRA, SKIPPED, UNAVAILABLE.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Fail { .. } => "FAIL",
            Outcome::Timeout { .. } => "TIMEOUT",
            Outcome::Infra { .. } => "INFRA",
            Outcome::Skipped { .. } => "SKIPPED",
            Outcome::Unavailable { .. } => "UNAVAILABLE",
        }
    }

    /// The process exit code `cargo xtask qemu --check` uses for this outcome.
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Pass => 0,
            Outcome::Fail { .. } => 1,
            Outcome::Timeout { .. } => 2,
            Outcome::Infra { .. } => 3,
            Outcome::Skipped { .. } => 4,
            Outcome::Unavailable { .. } => 5,
        }
    }

    /// Whether the test passed.
    pub fn is_pass(&self) -> bool {
        matches!(self, Outcome::Pass)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Pass => f.write_str("PASS"),
            Outcome::Fail { reason } => write!(f, "FAIL: {reason}"),
            Outcome::Timeout { which } => write!(f, "TIMEOUT: {which}"),
            Outcome::Infra { reason } => write!(f, "INFRA: {reason}"),
            Outcome::Skipped { reason } => write!(f, "SKIPPED: {reason}"),
            Outcome::Unavailable { reason } => write!(f, "UNAVAILABLE: {reason}"),
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
    pub notes: Vec<String>,
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
pub const REPORT_TAIL_LINES: usize = 40;

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} {}: {}",
            self.outcome.label(),
            self.name,
            detail(&self.outcome)
        )?;
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

fn detail(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Pass => "all expectations met".into(),
        Outcome::Fail { reason }
        | Outcome::Infra { reason }
        | Outcome::Skipped { reason }
        | Outcome::Unavailable { reason } => reason.clone(),
        Outcome::Timeout { which } => which.to_string(),
    }
}

/// Formats a duration as seconds with millisecond precision.
pub fn secs(duration: Duration) -> String {
    format!("{:.3}s", duration.as_secs_f64())
}
