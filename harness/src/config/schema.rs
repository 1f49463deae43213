//! The VM-config TOML schema: serde types with per-field defaults.

use std::fmt;
use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Deserializer};

pub use crate::arch::AccelChoice;
use crate::arch::Arch;
use crate::fileref::FileRef;

/// One VM test, as written in `vm-configs/<name>.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmConfig {
    /// Guest architecture.
    pub arch: Arch,
    /// Accelerator choice; `auto` probes KVM and falls back to TCG.
    #[serde(default)]
    pub accel: AccelChoice,
    /// Free-form description shown in reports.
    #[serde(default)]
    pub description: Option<String>,
    /// When set, the trial is listed but ignored, with this reason.
    #[serde(default)]
    pub ignore: Option<String>,
    /// A known flake of the software under test: a guest failure or timeout is run again, at
    /// most `count` more times, and every earlier attempt is reported.
    #[serde(default)]
    pub retries: Option<RetrySection>,
    /// The guest needs KVM, for this reason (e.g. a hypervisor that needs VMX): where KVM is
    /// not usable the trial is ignored, saying why, instead of failing under TCG.
    #[serde(default)]
    pub needs_kvm: Option<String>,
    /// How QEMU is started.
    #[serde(default)]
    pub qemu: QemuSection,
    /// What the serial console must and must not show.
    #[serde(default)]
    pub console: ConsoleSection,
    /// Deadlines.
    #[serde(default)]
    pub timeouts: TimeoutSection,
    /// A FAT32 disk built for this test (in its private temp dir) and attached to the VM.
    #[serde(default)]
    pub disk: Option<crate::disk::DiskSpec>,
    /// Results the guest reports itself (KTAP, pattern-defined cases, recorded values).
    #[serde(default)]
    pub results: Option<ResultsSection>,
    /// The point after which the guest's state is saved, for `[[case]]`s.
    #[serde(default)]
    pub ready: Option<ReadySection>,
    /// Cases run in the booted guest, each its own trial (`<config>::<case>`).
    #[serde(default, rename = "case")]
    pub cases: Vec<CaseSpec>,
}

/// The `[ready]` section: where the boot (banner and steps) ends and cases begin.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadySection {
    /// What the console shows when the guest is ready (e.g. the shell prompt).
    pub expect: Pattern,
    /// How long to wait for it (default `timeouts.step`).
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub timeout: Option<Duration>,
    /// Whether cases start from a saved state (default); `false` boots each case cold.
    #[serde(default = "default_true")]
    pub save: bool,
    /// The line sent after a restore to prove the guest answers; `{token}` is replaced by a
    /// fresh random token and `{epoch}` by the host's time in seconds (to set the guest's
    /// clock, which lags by the state's age). The default sleeps first, so the guest's timer
    /// is exercised.
    #[serde(default = "default_probe")]
    pub probe: String,
    /// The answer to `probe`: a regex a whole console line must match, `{token}` replaced
    /// (default: the line is the token).
    #[serde(default = "default_answer")]
    pub answer: String,
}

fn default_true() -> bool {
    true
}
fn default_probe() -> String {
    "sleep 0.1; echo {token}".into()
}
fn default_answer() -> String {
    "^{token}$".into()
}

/// One `[[case]]`: steps run in the guest once it is ready; passes when the last one does.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseSpec {
    /// The case's name: its trial is `<config>::<name>`.
    pub name: String,
    /// What the case does and expects, like `[[console.steps]]`.
    pub steps: Vec<Step>,
}

/// The `[results]` section: what the guest reports about its own tests.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultsSection {
    /// Parse KTAP (versions 1 and 2; TAP 13/14 version lines are accepted too).
    #[serde(default)]
    pub ktap: bool,
    /// Cases delimited by patterns of their own.
    #[serde(default)]
    pub cases: Option<CasePatterns>,
    /// Patterns whose named groups are recorded as values (the last match wins).
    #[serde(default)]
    pub record: Vec<Pattern>,
}

/// Pattern-defined cases: `start` names a case (group `name`), `end` ends it with group
/// `status` (pass/fail/skip) or `code` (an exit code, 0 unless `expect` says otherwise).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CasePatterns {
    /// Where a case starts: its console lines until the end are its excerpt.
    #[serde(default)]
    pub start: Option<Pattern>,
    /// Where a case ends, with its result.
    pub end: Pattern,
    /// Cases whose intended exit code is not 0, by name (NimbOS's `stack_overflow = -1`).
    #[serde(default)]
    pub expect: std::collections::BTreeMap<String, i64>,
    /// What a case that started and never ended is (default `crashed`, a failure).
    #[serde(default)]
    pub unfinished: Unfinished,
}

/// What a started case with no result means.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unfinished {
    /// A failure: the guest crashed or hung in it.
    #[default]
    Crashed,
    /// Not counted against the trial.
    Skipped,
}

/// The `[qemu]` section. Unset fields take the arch table's defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QemuSection {
    /// QEMU binary (name on `PATH` or a path); default from the arch table.
    pub binary: Option<String>,
    /// `-M` machine type.
    pub machine: Option<String>,
    /// `-cpu` model; `host` is only allowed with KVM.
    pub cpu: Option<String>,
    /// `-cpu` models for newer QEMU releases, `{ "8.0" = "max,sstc=on" }`: from QEMU 8.0 on
    /// that model, before it `cpu` (the newest entry the running QEMU has reached wins).
    #[serde(default, deserialize_with = "de_cpu_since")]
    pub cpu_since: Vec<CpuSince>,
    /// `-m` memory size, e.g. `512M`.
    #[serde(default, deserialize_with = "de_memory")]
    pub memory: Option<String>,
    /// `-smp` CPU count.
    #[serde(default, deserialize_with = "de_smp")]
    pub smp: Option<u32>,
    /// `-bios` firmware file.
    pub bios: Option<FileRef>,
    /// `-kernel` image.
    pub kernel: Option<FileRef>,
    /// `-initrd` image.
    pub initrd: Option<FileRef>,
    /// `-pflash` firmware images, one per flash unit, in order (e.g. OVMF code, then vars).
    #[serde(default)]
    pub pflash: Vec<FileRef>,
    /// The guest's ELF with symbols, for symbolizing addresses in failure reports (default:
    /// the kernel, when it is an ELF with symbols).
    pub symbols: Option<FileRef>,
    /// Raw images QEMU's generic loader puts at a physical address before boot
    /// (`-device loader,file=...,addr=...,force-raw=on`).
    #[serde(default)]
    pub loader: Vec<LoaderSpec>,
    /// `-append` kernel command line.
    pub append: Option<String>,
    /// Extra QEMU arguments, appended verbatim (one argv element each).
    #[serde(default)]
    pub args: Vec<String>,
    /// Add the arch's guest exit device (x86_64 isa-debug-exit, aarch64 semihosting, riscv64
    /// sifive_test); unset takes the arch's default: yes, except on aarch64, where semihosting
    /// would also give the guest the host's files.
    pub exit_device: Option<bool>,
}

/// One `[[qemu.loader]]`: a file and the guest-physical address it is loaded at.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoaderSpec {
    /// The image.
    pub file: FileRef,
    /// Where it goes in guest-physical memory.
    pub addr: u64,
}

/// The `[console]` section: expectations on the serial output.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSection {
    /// Regexes that must all appear, in this order, before the steps run.
    #[serde(default)]
    pub banner: Vec<Pattern>,
    /// When it matches (after banner and steps), the test passes and QEMU is stopped.
    #[serde(default)]
    pub success: Option<Pattern>,
    /// Extra failure patterns, on top of the always-on defaults.
    #[serde(default)]
    pub panic_patterns: Vec<Pattern>,
    /// Lines matching any of these never count as failures.
    #[serde(default)]
    pub allow: Vec<Pattern>,
    /// Interaction with the guest, run in order after the banner.
    #[serde(default)]
    pub steps: Vec<Step>,
    /// Expected guest exit code when QEMU exits on its own (default 0).
    #[serde(default)]
    pub exit_code: i32,
    /// Appended by `send_line` steps (default `"\r"`, like a terminal's Enter key).
    #[serde(default)]
    pub line_ending: Option<String>,
}

/// One interaction step, run in order after the banner.
#[derive(Debug, Clone)]
pub enum Step {
    /// Wait until the console shows a match.
    Expect {
        /// What must appear.
        pattern: Pattern,
        /// This step's timeout (default `timeouts.step`).
        timeout: Option<Duration>,
    },
    /// Fail if the console shows a match within `timeout`.
    ExpectNot {
        /// What must not appear.
        pattern: Pattern,
        /// How long to watch (default `timeouts.step`).
        timeout: Option<Duration>,
    },
    /// Write text to the guest's serial input.
    Send {
        /// The text to write.
        text: String,
        /// Append the console's line ending.
        line: bool,
    },
}

/// A step as written: exactly one of `expect`, `expect_not`, `send`, `send_line` is set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    expect: Option<Pattern>,
    expect_not: Option<Pattern>,
    send: Option<String>,
    send_line: Option<String>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    timeout: Option<Duration>,
}

impl<'de> Deserialize<'de> for Step {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let raw = RawStep::deserialize(deserializer)?;
        let RawStep {
            expect,
            expect_not,
            send,
            send_line,
            timeout,
        } = raw;
        let given = [
            expect.is_some(),
            expect_not.is_some(),
            send.is_some(),
            send_line.is_some(),
        ];
        if given.iter().filter(|set| **set).count() != 1 {
            return Err(D::Error::custom(
                "a step needs exactly one of `expect`, `expect_not`, `send`, `send_line`",
            ));
        }
        if expect_not.is_some() && timeout == Some(Duration::ZERO) {
            return Err(D::Error::custom(
                "an `expect_not` step watches for `timeout`; 0 would watch forever",
            ));
        }
        let is_send = send.is_some() || send_line.is_some();
        if is_send && timeout.is_some() {
            return Err(D::Error::custom(
                "`timeout` only applies to `expect` and `expect_not` steps",
            ));
        }
        Ok(match (expect, expect_not, send, send_line) {
            (Some(pattern), _, _, _) => Step::Expect { pattern, timeout },
            (_, Some(pattern), _, _) => Step::ExpectNot { pattern, timeout },
            (_, _, Some(text), _) => Step::Send { text, line: false },
            (_, _, _, Some(text)) => Step::Send { text, line: true },
            _ => unreachable!("exactly one step kind was checked above"),
        })
    }
}

/// The `[timeouts]` section. Every deadline is at most
/// [`MAX_DURATION`](crate::config::MAX_DURATION); `0` means none.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutSection {
    /// Whole-run deadline.
    #[serde(default = "default_total", deserialize_with = "de_duration")]
    pub total: Duration,
    /// Default deadline for each banner entry, expect step and the success pattern.
    #[serde(default = "default_step", deserialize_with = "de_duration")]
    pub step: Duration,
    /// Fail when the guest prints nothing for this long.
    #[serde(default = "default_no_output", deserialize_with = "de_duration")]
    pub no_output: Duration,
    /// Every timeout is multiplied by this under TCG.
    #[serde(default = "default_tcg_scale", deserialize_with = "de_scale")]
    pub tcg_scale: f64,
}

impl Default for TimeoutSection {
    fn default() -> Self {
        TimeoutSection {
            total: default_total(),
            step: default_step(),
            no_output: default_no_output(),
            tcg_scale: default_tcg_scale(),
        }
    }
}

fn default_total() -> Duration {
    Duration::from_secs(300)
}
fn default_step() -> Duration {
    Duration::from_secs(120)
}
fn default_no_output() -> Duration {
    Duration::from_secs(60)
}
fn default_tcg_scale() -> f64 {
    1.0
}

/// A regex from a config, compiled while the config is parsed (so errors carry line:column).
#[derive(Clone)]
pub struct Pattern(pub Regex);

impl Pattern {
    /// The regex source text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}/", self.0.as_str())
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}/", self.0.as_str())
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let source = String::deserialize(deserializer)?;
        Regex::new(&source)
            .map(Pattern)
            .map_err(|err| serde::de::Error::custom(format!("invalid regex: {err}")))
    }
}

/// The longest deadline a config may set. `0` means no deadline at all.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

fn parse_duration<E: serde::de::Error>(text: &str) -> Result<Duration, E> {
    let duration = humantime::parse_duration(text).map_err(|err| {
        E::custom(format!(
            "invalid duration `{text}`: {err} (write e.g. \"30s\", \"500ms\", \"2m\")"
        ))
    })?;
    at_most_max(duration, text)
}

fn at_most_max<E: serde::de::Error>(duration: Duration, text: &str) -> Result<Duration, E> {
    if duration <= MAX_DURATION {
        Ok(duration)
    } else {
        Err(E::custom(format!(
            "duration `{text}` is longer than the 365 days a deadline may be (0 means none)"
        )))
    }
}

fn de_duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Seconds(f64),
        Text(String),
    }
    match Raw::deserialize(deserializer)? {
        Raw::Seconds(secs) if secs.is_finite() && secs >= 0.0 => {
            let duration = Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX);
            at_most_max(duration, &format!("{secs}"))
        }
        Raw::Seconds(secs) => Err(serde::de::Error::custom(format!(
            "invalid duration {secs}: must be a non-negative number of seconds"
        ))),
        Raw::Text(text) => parse_duration(&text),
    }
}

fn de_opt_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    de_duration(deserializer).map(Some)
}

fn de_scale<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    let scale = f64::deserialize(deserializer)?;
    let max = crate::settings::MAX_SCALE;
    if scale.is_finite() && scale > 0.0 && scale <= max {
        Ok(scale)
    } else {
        Err(serde::de::Error::custom(format!(
            "`tcg_scale = {scale}` must be a positive number up to {max}"
        )))
    }
}

/// `[retries]`: how many more attempts a known flake gets, and why.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySection {
    /// Attempts after the first one (1 to [`MAX_RETRIES`]).
    #[serde(deserialize_with = "de_retry_count")]
    pub count: u32,
    /// The known defect that makes the guest flaky, shown with every retry.
    #[serde(deserialize_with = "de_retry_why")]
    pub why: String,
}

/// The most retries `[retries] count` may ask for.
pub const MAX_RETRIES: u32 = 3;

fn de_retry_count<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    match u32::deserialize(deserializer)? {
        count @ 1..=MAX_RETRIES => Ok(count),
        other => Err(serde::de::Error::custom(format!(
            "`retries.count` must be 1 to {MAX_RETRIES}, not {other}"
        ))),
    }
}

fn de_retry_why<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let why = String::deserialize(deserializer)?;
    if why.trim().is_empty() {
        return Err(serde::de::Error::custom(
            "`retries.why` must name the known defect the retries are for",
        ));
    }
    Ok(why)
}

/// A `-cpu` model used from a QEMU release on (`[qemu] cpu_since`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuSince {
    /// The first release (major, minor) that gets `cpu`.
    pub since: (u32, u32),
    /// The `-cpu` value.
    pub cpu: String,
}

/// `{ "MAJOR.MINOR" = "model" }`, sorted oldest first.
fn de_cpu_since<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<CpuSince>, D::Error> {
    let table = std::collections::BTreeMap::<String, String>::deserialize(deserializer)?;
    let mut entries = table
        .into_iter()
        .map(|(version, cpu)| {
            let since = version
                .split_once('.')
                .and_then(|(major, minor)| Some((major.parse().ok()?, minor.parse().ok()?)))
                .ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "`cpu_since` keys are QEMU releases like \"8.0\", not `{version}`"
                    ))
                })?;
            Ok(CpuSince { since, cpu })
        })
        .collect::<Result<Vec<_>, D::Error>>()?;
    entries.sort_by_key(|entry| entry.since);
    Ok(entries)
}

fn de_smp<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    match u32::deserialize(deserializer)? {
        0 => Err(serde::de::Error::custom("`smp` must be at least 1")),
        cpus => Ok(Some(cpus)),
    }
}

/// A memory size QEMU's `-m` takes: a number with an optional `K`/`M`/`G`/`T` suffix (MiB when
/// bare), or QEMU's own `size=...,slots=...` form, passed through.
fn de_memory<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let text = String::deserialize(deserializer)?;
    if text.contains('=') || memory_bytes(&text).is_some_and(|bytes| bytes > 0) {
        Ok(Some(text))
    } else {
        Err(serde::de::Error::custom(format!(
            "invalid memory size `{text}` (write e.g. \"512M\" or \"2G\")"
        )))
    }
}

/// The bytes of a `-m` size, if it is one.
pub(crate) fn memory_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let unit: u64 = match suffix
        .trim_end_matches(['B', 'b'])
        .to_ascii_uppercase()
        .as_str()
    {
        "" if suffix.is_empty() => 1 << 20,
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return None,
    };
    let bytes = number * unit as f64;
    (bytes.is_finite() && bytes < (1u64 << 50) as f64).then_some(bytes as u64)
}
