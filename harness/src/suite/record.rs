//! [`ResultRecord`]: what `result.toml` (next to each test's console log) is. Written by the
//! suite after every trial, read by `cargo xtask ci` and any other pipeline.
//!
//! Versioned by `schema`: a reader refuses a newer major version rather than misreading it.
//! Fields are only added within a version; a removal or change of meaning bumps it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::LoadedConfig;
use crate::outcome::Provenance;
use crate::outcome::{Outcome, Report};
use crate::results::{SubResult, SubStatus};

/// The `schema` this code writes.
pub const SCHEMA: u32 = 2;

/// The file name next to the console log.
pub const FILE_NAME: &str = "result.toml";

/// A test's verdict as a pipeline reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultRecord {
    /// The record format version ([`SCHEMA`]).
    pub schema: u32,
    /// The test name.
    pub test: String,
    /// The guest arch.
    pub arch: String,
    /// The accelerator used, if one was chosen.
    pub accel: Option<String>,
    /// PASS, FAIL, TIMEOUT, INFRA, SKIPPED or UNAVAILABLE.
    pub outcome: Label,
    /// The one-line reason.
    pub detail: String,
    /// What caused it, outermost first.
    #[serde(default)]
    pub causes: Vec<String>,
    /// Seconds from QEMU's start (or setup) to the verdict.
    pub elapsed_secs: f64,
    /// The console log.
    pub log: PathBuf,
    /// The config file.
    pub config: PathBuf,
    /// The artifacts the run booted.
    #[serde(default)]
    pub booted: Vec<Booted>,
    /// What the guest reported about its own tests, in the order the cases ended: the first
    /// [`KEPT_FAILURES`](crate::results::KEPT_FAILURES) failures and
    /// [`KEPT_OTHERS`](crate::results::KEPT_OTHERS) others.
    #[serde(default)]
    pub sub_results: Vec<SubRecord>,
    /// Every sub-result the guest reported, kept in `sub_results` or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_result_counts: Option<SubCounts>,
    /// Values the guest printed that the config records (`[[results.record]]`).
    #[serde(default)]
    pub values: std::collections::BTreeMap<String, String>,
    /// The console's first crash block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crash: Option<CrashRecord>,
    /// The vCPUs when a failing or hanging run was stopped.
    #[serde(default)]
    pub vcpus: Vec<VcpuRecord>,
    /// Why the vCPUs could not be read, when they were wanted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcpu_error: Option<String>,
    /// Facts about the setup (accelerator fallback, a saved state used or why not).
    #[serde(default)]
    pub notes: Vec<String>,
}

/// `[crash]`: a crash block of the console.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrashRecord {
    /// `panic`, `oops`, `bug` or `warning`.
    pub kind: String,
    /// Its lines.
    pub lines: Vec<String>,
    /// `0xADDRESS is function+offset (file:line)` for its symbolized addresses.
    #[serde(default)]
    pub symbols: Vec<String>,
}

/// `[[vcpus]]`: one vCPU when QEMU was stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VcpuRecord {
    /// QEMU's CPU index.
    pub index: usize,
    /// The program counter, hex.
    pub pc: Option<String>,
    /// The stack pointer, hex.
    pub sp: Option<String>,
    /// The PC symbolized.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    /// The arch's key registers.
    #[serde(default)]
    pub state: std::collections::BTreeMap<String, String>,
    /// What the two samples showed.
    pub activity: String,
}

/// One guest-reported sub-result (`[[sub_results]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubRecord {
    /// Its name (`suite.case` for nested KTAP).
    pub name: String,
    /// PASS, FAIL, SKIP or CRASHED.
    pub status: String,
    /// Why, when not a plain pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// `[sub_result_counts]`: every sub-result per status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubCounts {
    /// Passed.
    pub passed: u64,
    /// Failed.
    pub failed: u64,
    /// Crashed (output ended before the result).
    pub crashed: u64,
    /// Skipped.
    pub skipped: u64,
}

impl From<crate::results::Counts> for SubCounts {
    fn from(counts: crate::results::Counts) -> Self {
        let wide = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        SubCounts {
            passed: wide(counts.passed),
            failed: wide(counts.failed),
            crashed: wide(counts.crashed),
            skipped: wide(counts.skipped),
        }
    }
}

impl From<&crate::evidence::vcpu::CpuState> for VcpuRecord {
    fn from(cpu: &crate::evidence::vcpu::CpuState) -> Self {
        VcpuRecord {
            index: cpu.index,
            pc: cpu.pc.map(|v| format!("{v:#x}")),
            sp: cpu.sp.map(|v| format!("{v:#x}")),
            symbol: cpu.symbol.clone(),
            state: cpu.state.clone(),
            activity: cpu.activity.to_string(),
        }
    }
}

impl From<&SubResult> for SubRecord {
    fn from(case: &SubResult) -> Self {
        SubRecord {
            name: case.name.clone(),
            status: case.status.label().to_string(),
            detail: case.detail.clone(),
        }
    }
}

/// An outcome label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Label {
    /// Every expectation met.
    Pass,
    /// The guest or the test definition is wrong.
    Fail,
    /// A deadline passed.
    Timeout,
    /// The host could not run it.
    Infra,
    /// `ignore = "why"`.
    Skipped,
    /// An input is missing here.
    Unavailable,
}

impl Label {
    /// The label of an outcome.
    pub fn of(outcome: &Outcome) -> Label {
        match outcome.label() {
            "PASS" => Label::Pass,
            "FAIL" => Label::Fail,
            "TIMEOUT" => Label::Timeout,
            "INFRA" => Label::Infra,
            "SKIPPED" => Label::Skipped,
            _ => Label::Unavailable,
        }
    }

    /// Whether a pipeline counts it as a failure.
    pub fn is_failure(self) -> bool {
        matches!(self, Label::Fail | Label::Timeout | Label::Infra)
    }

    /// Whether nothing was tested (a skip or a missing input).
    pub fn is_skip(self) -> bool {
        matches!(self, Label::Skipped | Label::Unavailable)
    }
}

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Label::Pass => "PASS",
            Label::Fail => "FAIL",
            Label::Timeout => "TIMEOUT",
            Label::Infra => "INFRA",
            Label::Skipped => "SKIPPED",
            Label::Unavailable => "UNAVAILABLE",
        })
    }
}

/// One artifact a run booted (`[[booted]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Booted {
    /// The artifact.
    pub artifact: String,
    /// Its recipe key.
    pub key: String,
    /// How `guests.lock` judged it (`locked`, `new key`, ...).
    pub lock: String,
    /// Whether the lock had not recorded this key (the inputs moved).
    pub new_key: bool,
    /// Whether a local build stood in for the release download (never pinned; `lock` says
    /// which file).
    #[serde(default)]
    pub local_build: bool,
    /// Debian packages consumed, `name version arch sha256:...`.
    #[serde(default)]
    pub packages: Vec<String>,
    /// Output file -> sha256.
    #[serde(default)]
    pub outputs: std::collections::BTreeMap<String, String>,
}

impl From<&Provenance> for Booted {
    fn from(p: &Provenance) -> Self {
        Booted {
            artifact: p.artifact.clone(),
            key: p.key.clone(),
            lock: p.lock.clone(),
            new_key: p.new_key,
            local_build: p.local_build,
            packages: p.packages.clone(),
            outputs: p.outputs.clone(),
        }
    }
}

/// Why a record could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The file could not be read or written.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// `read` or `write`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a record.
    #[error("{} is not a result record", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The TOML error.
        #[source]
        source: toml::de::Error,
    },
    /// A record of a newer format.
    #[error("{} has schema {found}; this vmharness reads schema {SCHEMA}", path.display())]
    Schema {
        /// The file.
        path: PathBuf,
        /// Its schema.
        found: u32,
    },
}

impl ResultRecord {
    /// The record of a finished run.
    pub fn of(report: &Report, loaded: &LoadedConfig) -> ResultRecord {
        ResultRecord {
            schema: SCHEMA,
            test: report.name.clone(),
            arch: loaded.config.arch.to_string(),
            accel: report.accel.map(|a| a.to_string()),
            outcome: Label::of(&report.outcome),
            detail: report.outcome.detail(),
            causes: report.outcome.causes(),
            elapsed_secs: (report.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            log: report.log_path.clone(),
            config: loaded.path.clone(),
            booted: report.booted.iter().map(Booted::from).collect(),
            sub_results: report
                .results
                .iter()
                .flat_map(|r| r.cases.iter().map(SubRecord::from))
                .collect(),
            sub_result_counts: report.results.as_ref().map(|r| r.counts().into()),
            values: report
                .results
                .as_ref()
                .map(|r| r.values.clone())
                .unwrap_or_default(),
            crash: report.crash.as_ref().map(|c| CrashRecord {
                kind: c.kind.to_string(),
                lines: c.lines.clone(),
                symbols: c
                    .symbols
                    .iter()
                    .map(|(address, symbol)| format!("{address:#x} is {symbol}"))
                    .collect(),
            }),
            vcpus: match &report.vcpus {
                Some(Ok(cpus)) => cpus.iter().map(VcpuRecord::from).collect(),
                _ => Vec::new(),
            },
            vcpu_error: match &report.vcpus {
                Some(Err(why)) => Some(why.clone()),
                _ => None,
            },
            notes: report.notes.iter().map(ToString::to_string).collect(),
        }
    }

    /// Writes the record next to its console log (atomically: a reader never sees half).
    pub fn write(&self) -> Result<PathBuf, RecordError> {
        let dir = self.log.parent().unwrap_or(Path::new("."));
        let path = dir.join(FILE_NAME);
        let io = |source| RecordError::Io {
            action: "write",
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let text = toml::to_string(self).map_err(|err| io(std::io::Error::other(err)))?;
        let temp = dir.join(format!(".{FILE_NAME}.{}", std::process::id()));
        std::fs::write(&temp, text).map_err(io)?;
        std::fs::rename(&temp, &path).map_err(io)?;
        Ok(path)
    }

    /// Reads a record, refusing other schemas.
    pub fn read(path: &Path) -> Result<ResultRecord, RecordError> {
        let text = std::fs::read_to_string(path).map_err(|source| RecordError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        })?;
        #[derive(Deserialize)]
        struct Version {
            schema: Option<u32>,
        }
        let found = toml::from_str::<Version>(&text)
            .ok()
            .and_then(|v| v.schema)
            .unwrap_or(1);
        if found != SCHEMA {
            return Err(RecordError::Schema {
                path: path.to_path_buf(),
                found,
            });
        }
        toml::from_str(&text).map_err(|source| RecordError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// The report after writing its `result.toml` and `junit.xml`: a record that
/// cannot be written turns a pass (or an unavailable input) into an infrastructure failure
/// naming the file, since a result a pipeline cannot read is lost work; a failure keeps its
/// verdict and the write error goes to stderr.
pub fn recorded(mut report: Report, loaded: &LoadedConfig) -> Report {
    if let Err(err) = write(&report, loaded) {
        if report.outcome.is_pass() || report.outcome.is_unavailable() {
            report.outcome = crate::run::RunError::Record(Box::new(err)).into();
        } else {
            eprintln!("warning: {}: {}", loaded.name, err);
        }
    }
    report
}

/// Writes `result.toml` next to the console log ([`ResultRecord`]), and `junit.xml` when the
/// guest reported sub-results.
pub(crate) fn write(report: &Report, loaded: &LoadedConfig) -> Result<(), RecordError> {
    ResultRecord::of(report, loaded).write()?;
    write_junit(report)?;
    Ok(())
}

/// The JUnit file next to `result.toml` when the guest reported sub-results: one test case per
/// sub-result (nextest's JUnit knows only the trial).
pub(crate) const JUNIT_FILE: &str = "junit.xml";

/// The most `junit.xml` may take: the sub-results that do not fit (passes and skips before
/// failures) are counted in the suite's `system-out` instead.
pub const JUNIT_MAX_BYTES: u64 = 8 << 20;

/// What the suite's elements and the summary take at most, besides the test cases.
const JUNIT_FRAME_BYTES: u64 = 4096;

/// What one test case's elements take besides its escaped texts.
const JUNIT_CASE_BYTES: u64 = 256;

/// Writes `junit.xml` for a report with sub-results (nothing otherwise); returns its path.
/// It holds the kept sub-results within [`JUNIT_MAX_BYTES`], failures first.
pub(crate) fn write_junit(report: &Report) -> Result<Option<PathBuf>, RecordError> {
    let Some(results) = &report.results else {
        return Ok(None);
    };
    use quick_junit::{NonSuccessKind, TestCase, TestCaseStatus, TestSuite};
    let written = junit_cases(report, results);
    let mut suite = TestSuite::new(report.name.clone());
    for case in results
        .cases
        .iter()
        .zip(&written)
        .filter_map(|(case, &w)| w.then_some(case))
    {
        let mut status = match case.status {
            SubStatus::Pass => TestCaseStatus::success(),
            SubStatus::Skip => TestCaseStatus::skipped(),
            SubStatus::Fail => TestCaseStatus::non_success(NonSuccessKind::Failure),
            SubStatus::Crashed => TestCaseStatus::non_success(NonSuccessKind::Error),
        };
        if let Some(detail) = &case.detail {
            status.set_message(detail.clone());
        }
        if case.status.is_failure() {
            status.set_type(case.status.label());
        }
        let mut test_case = TestCase::new(case.name.clone(), status);
        test_case.set_classname(report.name.clone());
        if !case.excerpt.is_empty() {
            test_case.set_system_out(case.excerpt.join("\n"));
        }
        suite.add_test_case(test_case);
    }
    let shown = written.iter().filter(|&&w| w).count();
    let counts = results.counts();
    if shown < counts.total() {
        suite.set_system_out(format!(
            "vmharness: the guest reported {} sub-results ({counts}); {} of them are not kept here (result.toml counts them all)",
            counts.total(),
            counts.total() - shown
        ));
    }
    let mut junit = quick_junit::Report::new(format!("vmharness {}", report.name));
    junit.add_test_suite(suite);
    let dir = report.log_path.parent().unwrap_or(Path::new("."));
    let path = dir.join(JUNIT_FILE);
    let io = |source| RecordError::Io {
        action: "write",
        path: path.clone(),
        source,
    };
    let text = junit
        .to_string()
        .map_err(|err| io(std::io::Error::other(err.to_string())))?;
    std::fs::write(&path, text).map_err(io)?;
    Ok(Some(path))
}

/// Which kept sub-results fit into [`JUNIT_MAX_BYTES`]: failures first, then the others, each
/// in order, measured as XML escapes them.
fn junit_cases(report: &Report, results: &crate::results::Results) -> Vec<bool> {
    let frame = JUNIT_FRAME_BYTES + 2 * xml_len(&report.name);
    let mut left = JUNIT_MAX_BYTES.saturating_sub(frame);
    let mut written = vec![false; results.cases.len()];
    for failures in [true, false] {
        for (i, case) in results.cases.iter().enumerate() {
            if case.status.is_failure() != failures {
                continue;
            }
            let texts = [case.name.as_str(), case.detail.as_deref().unwrap_or("")];
            let cost = JUNIT_CASE_BYTES
                + xml_len(&report.name)
                + texts.iter().map(|t| xml_len(t)).sum::<u64>()
                + case.excerpt.iter().map(|l| xml_len(l) + 1).sum::<u64>();
            if cost <= left {
                left -= cost;
                written[i] = true;
            }
        }
    }
    written
}

/// Bytes `text` takes in XML, escaped (an upper bound: control characters are dropped).
fn xml_len(text: &str) -> u64 {
    text.chars()
        .map(|c| match c {
            '<' | '>' => 4,
            '&' => 5,
            '"' | '\'' => 6,
            c => c.len_utf8() as u64,
        })
        .sum()
}
