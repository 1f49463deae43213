//! The console loop: read, judge, act, until a verdict.

use std::path::Path;
use std::time::{Duration, Instant};

use super::judge::{Action, Judge};
use super::options::Prepared;
use crate::accel::failure_marker;
use crate::console::{Line, ReadEvent, Session};
use crate::evidence::crash::{CrashBlock, CrashDetector};
use crate::outcome::RunError;
use crate::outcome::{GuestExit, Outcome, TimeoutKind, VerdictTiming};
use crate::plan::deadline_after;
use crate::qemu::ExitStatus;
use crate::results::Collector;

/// How a drive ended.
pub(super) struct Ended {
    pub outcome: Outcome,
    pub expected: String,
    pub matched: Vec<String>,
    pub exit: Option<GuestExit>,
    pub elapsed: Duration,
    pub timing: Option<VerdictTiming>,
    pub results: Option<crate::results::Results>,
    pub crash: Option<CrashBlock>,
    crash_detector: Option<CrashDetector>,
}

impl Ended {
    /// A run that ended before its console was judged (a restore that failed).
    pub(super) fn before_drive(outcome: Outcome, elapsed: Duration) -> Ended {
        Ended {
            outcome,
            expected: String::new(),
            matched: Vec::new(),
            exit: None,
            elapsed,
            timing: None,
            results: None,
            crash: None,
            crash_detector: None,
        }
    }
}

/// How long a failed run keeps reading to see an open crash block to its end.
const CRASH_GRACE: Duration = Duration::from_secs(2);
/// A crash block's lines come in one burst: this much silence ends the wait early.
const CRASH_QUIET: Duration = Duration::from_millis(50);

/// After a failure verdict: reads on while a crash block is open (until its end line, a quiet
/// [`CRASH_QUIET`], or [`CRASH_GRACE`] in all), so the report shows it whole.
/// Without `read_on` (QEMU has exited, or the run passed) the block is taken as it is.
pub(super) fn finish_crash_block(session: &mut Session, ended: &mut Ended, read_on: bool) {
    let Some(mut detector) = ended.crash_detector.take() else {
        return;
    };
    let deadline = Instant::now() + if read_on { CRASH_GRACE } else { Duration::ZERO };
    let mut lines = Vec::new();
    while detector.open() && Instant::now() < deadline {
        lines.clear();
        let event = session.read((Instant::now() + CRASH_QUIET).min(deadline), &mut lines);
        for line in &lines {
            detector.line(&line.text);
        }
        if matches!(event, ReadEvent::Closed | ReadEvent::Idle) {
            break;
        }
    }
    ended.crash = detector.finish();
}

pub(super) fn drive(session: &mut Session, prepared: &Prepared, stderr_path: &Path) -> Ended {
    let start = session.started();
    let mut judge = Judge::new(prepared.expectations.clone(), start);
    let total_deadline = prepared
        .timeouts
        .total
        .map(|t| (deadline_after(start, t), t));
    let mut lines: Vec<Line> = Vec::new();
    let mut exit = None;
    let mut partial_seen = String::new();
    // (line read, verdict decided) when a console line (or the unfinished one) decided it.
    let mut line_decided: Option<(Duration, Duration)> = None;
    let mut collector = prepared.results.as_ref().map(Collector::new);
    let mut crash = CrashDetector::default();
    let mut pending = judge.initial_actions(start);
    let outcome = 'run: loop {
        for action in pending.drain(..) {
            match action {
                Action::Send(bytes) => {
                    if let Err(err) = session.send(&bytes) {
                        break 'run RunError::ConsoleWrite(err).into();
                    }
                }
                Action::Verdict(outcome) => break 'run outcome,
            }
        }
        let now = Instant::now();
        if let Some((deadline, limit)) = total_deadline {
            if now >= deadline {
                break timeout(session, &judge, TimeoutKind::Total(limit), stderr_path);
            }
        }
        if let Some(limit) = prepared.timeouts.no_output {
            if now >= deadline_after(session.last_output(), limit) {
                break timeout(session, &judge, TimeoutKind::NoOutput(limit), stderr_path);
            }
        }
        pending = judge.on_tick(now);
        if !pending.is_empty() {
            continue;
        }
        let mut next = now + Duration::from_secs(3600);
        if let Some((deadline, _)) = total_deadline {
            next = next.min(deadline);
        }
        if let Some(limit) = prepared.timeouts.no_output {
            next = next.min(deadline_after(session.last_output(), limit));
        }
        if let Some((deadline, _, _)) = judge.stage_deadline() {
            next = next.min(deadline);
        }
        lines.clear();
        let event = session.read(next, &mut lines);
        let now = Instant::now();
        if !lines.is_empty() {
            // A new unfinished line began: the same prompt text again is a new prompt.
            partial_seen.clear();
        }
        // The whole chunk: lines after a deciding panic line belong to its crash block.
        for line in &lines {
            crash.line(&line.text);
        }
        for line in &lines {
            if let Some(collector) = collector.as_mut() {
                collector.piece(&line.text, line.cut);
            }
            pending.extend(judge.on_piece(&line.text, line.cut, line.at, now));
            if pending.iter().any(|a| matches!(a, Action::Verdict(_))) {
                line_decided = Some((line.at, start.elapsed()));
                break;
            }
        }
        if pending.iter().any(|a| matches!(a, Action::Verdict(_))) {
            pending.retain(|a| matches!(a, Action::Verdict(_)));
            continue;
        }
        match event {
            ReadEvent::Output => {
                let partial = session.partial();
                if !partial.is_empty() && partial != partial_seen {
                    pending.extend(judge.on_partial(&partial, start.elapsed(), now));
                    if pending.iter().any(|a| matches!(a, Action::Verdict(_))) {
                        let read = session.last_output().saturating_duration_since(start);
                        line_decided = Some((read, start.elapsed()));
                    }
                }
                partial_seen = partial;
            }
            ReadEvent::Idle => {}
            ReadEvent::Closed => {
                let status = session.wait_exit(Duration::from_secs(5));
                break match status {
                    Some(status) => {
                        let guest = guest_exit(prepared, status);
                        exit = Some(guest);
                        on_exit(session, &mut judge, guest, stderr_path)
                    }
                    None => Outcome::Fail {
                        reason: format!(
                            "QEMU closed its console but did not exit while waiting for {}",
                            judge.waiting_for()
                        ),
                    },
                };
            }
        }
    };
    // QEMU may still run (a verdict before it exited): the caller kills it or, in an
    // interactive session, keeps the console attached first.
    let elapsed = start.elapsed();
    // QEMU is stopped by the caller (an interactive run keeps it alive); `qemu_stopped` is
    // filled in there.
    let timing = line_decided.map(|(line_read, decided)| VerdictTiming {
        line_read,
        decided,
        qemu_stopped: decided,
    });
    let expected = if outcome.is_pass() {
        String::new()
    } else {
        judge.waiting_for()
    };
    Ended {
        outcome,
        expected,
        matched: judge.matched().to_vec(),
        exit,
        elapsed,
        timing,
        results: collector.map(Collector::finish),
        crash: None,
        crash_detector: Some(crash),
    }
}

fn guest_exit(prepared: &Prepared, status: ExitStatus) -> GuestExit {
    let guest_code = match (status, prepared.spec.exit_device) {
        (ExitStatus::Code(code), Some(device)) => Some(device.guest_code(code)),
        (ExitStatus::Code(code), None) => Some(code),
        (ExitStatus::Signal(_), _) => None,
    };
    GuestExit {
        qemu: status,
        guest_code,
    }
}

fn on_exit(session: &Session, judge: &mut Judge, exit: GuestExit, stderr_path: &Path) -> Outcome {
    let stderr = std::fs::read_to_string(stderr_path).unwrap_or_default();
    if let Some(marker) = failure_marker(&stderr) {
        return RunError::AccelFailure {
            marker,
            during: None,
        }
        .into();
    }
    if session.bytes_read() == 0 && !stderr.trim().is_empty() && exit.qemu != ExitStatus::Code(0) {
        let first = stderr
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim();
        return RunError::QemuStart {
            status: exit.qemu,
            first_line: first.to_string(),
            rejected_argv: names_an_option(first),
        }
        .into();
    }
    match exit.guest_code {
        Some(code) => judge.on_exit(code, &exit.qemu.to_string(), Instant::now()),
        None => Outcome::Fail {
            reason: format!(
                "QEMU was {} while waiting for {}",
                exit.qemu,
                judge.waiting_for()
            ),
        },
    }
}

fn timeout(session: &Session, judge: &Judge, which: TimeoutKind, stderr_path: &Path) -> Outcome {
    // A panic message without a trailing newline still fails as a panic.
    if let Some(outcome) = judge.check_panic(&session.partial()) {
        return outcome;
    }
    let stderr = std::fs::read_to_string(stderr_path).unwrap_or_default();
    if let Some(marker) = failure_marker(&stderr) {
        return RunError::AccelFailure {
            marker,
            during: Some(which),
        }
        .into();
    }
    if let Some(met) = judge.all_met_at() {
        let limit = match which {
            TimeoutKind::Total(d) | TimeoutKind::Step(d) | TimeoutKind::NoOutput(d) => d,
            TimeoutKind::NoExit { limit, .. } => limit,
        };
        return Outcome::Timeout {
            which: TimeoutKind::NoExit {
                met_at: met.saturating_duration_since(session.started()),
                limit,
            },
        };
    }
    Outcome::Timeout { which }
}

/// What QEMU says when its command line, not the host, is wrong (QEMU 7.2 to 10).
const ARGV_REJECTIONS: &[&str] = &[
    "unsupported machine type",
    "unable to find CPU model",
    "Invalid SMP CPUs",
    "is not a valid device model name",
];

/// Whether QEMU's first stderr line blames its command line: it names one of its options
/// (`qemu-system-x86_64: -m lots: Parameter 'size' expects ...`) or rejects a machine, CPU
/// model, CPU count or device.
fn names_an_option(line: &str) -> bool {
    let Some((program, rest)) = line.split_once(": ") else {
        return false;
    };
    program.contains("qemu")
        && (rest.starts_with('-') || ARGV_REJECTIONS.iter().any(|r| rest.contains(r)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_rejections_are_told_from_host_failures() {
        for line in [
            "qemu-system-aarch64: -m lots: Parameter 'size' expects a non-negative number",
            "qemu-system-aarch64: unsupported machine type",
            "qemu-system-aarch64: unable to find CPU model 'nosuchcpu'",
            "qemu-system-aarch64: Invalid SMP CPUs 100000. The max CPUs supported by machine 'virt-7.2' is 512",
            "qemu-system-x86_64: -device nosuchdev: 'nosuchdev' is not a valid device model name",
        ] {
            assert!(names_an_option(line), "{line}");
        }
        for line in [
            "qemu-system-x86_64: failed to initialize kvm: Permission denied",
            "qemu-system-x86_64: cannot set up guest memory 'pc.ram': Cannot allocate memory",
            "Could not access KVM kernel module: No such file or directory",
        ] {
            assert!(!names_an_option(line), "{line}");
        }
    }
}
