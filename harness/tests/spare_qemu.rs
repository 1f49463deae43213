//! The next case's QEMU started early (issue 21), with real QEMU and the selftest guest's echo
//! scenario: while a `[[case]]` runs from the saved state, a spare QEMU waits in
//! `-incoming defer` and the next case of the same config takes it over. A spare that died or
//! stands in for something else is never used, none starts when turned off, and none outlives
//! the scope that allowed it.
//!
//! The spare slot is one per process, so these tests run one at a time.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use support::{run_case, selftest_config, settings};
use vmharness::arch::Arch;
use vmharness::outcome::Report;
use vmharness::run::{Note, SpareQemu};
use vmharness::settings::Settings;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An echo-scenario config named `name` with three cases that pass and one that fails.
fn echo_config(dir: &Path, name: &str, arch: Arch) -> PathBuf {
    let rest = r#"[console]
banner = ["vmharness selftest"]
[ready]
expect = "^echo: ready$"
probe = "{token}"
answer = "^echo: {token}$"
[[case]]
name = "one"
steps = [{ send_line = "one" }, { expect = "^echo: one$" }]
[[case]]
name = "two"
steps = [{ send_line = "two" }, { expect = "^echo: two$" }]
[[case]]
name = "three"
steps = [{ send_line = "three" }, { expect = "^echo: three$" }]
[[case]]
name = "wrong"
steps = [{ send_line = "four" }, { expect = "^echo: five$" }]
[timeouts]
total = "30s"
step = "3s"
[disk]
size = "40M"
[[disk.entries]]
dest = "/a.txt"
text = "a"
"#;
    selftest_config(dir, name, arch, "echo", rest)
}

/// Settings whose logs, temp dirs and saved states live under `dir`.
fn isolated(dir: &Path) -> Settings {
    let mut settings = settings();
    settings.target_dir = dir.join("target");
    settings.nextest = false;
    settings.spare_qemu = true;
    settings
}

/// `Some(started_early)` for a restored case, `None` for one that booted cold.
fn started_early(report: &Report) -> Option<bool> {
    report.notes.iter().find_map(|note| match note {
        Note::StateRestored { started_early, .. } => Some(*started_early),
        _ => None,
    })
}

/// (pid, command line) of live processes that name `path`.
fn processes_naming(path: &Path) -> Vec<(i32, String)> {
    let needle = path.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse().ok()?;
            let bytes = std::fs::read(entry.path().join("cmdline")).ok()?;
            Some((pid, String::from_utf8_lossy(&bytes).replace('\0', " ")))
        })
        .filter(|(_, line)| line.contains(&needle))
        .collect()
}

/// The QEMUs waiting for a state (`-incoming defer`) that name `path`, after waiting up to
/// `limit` for there to be one.
fn waiting_qemus(path: &Path, limit: Duration) -> Vec<i32> {
    let deadline = Instant::now() + limit;
    loop {
        let found: Vec<i32> = processes_naming(path)
            .into_iter()
            .filter(|(_, line)| line.contains("-incoming defer"))
            .map(|(pid, _)| pid)
            .collect();
        if !found.is_empty() || Instant::now() >= deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs case `one` of an aarch64 echo config under `settings` (saving its state) with spares
/// allowed, and sends `signal` to the spare it leaves; returns the config and the scope.
fn first_case_then_signal_its_spare(
    dir: &Path,
    settings: &Settings,
    signal: &str,
) -> (PathBuf, SpareQemu) {
    let config = echo_config(dir, "echo", Arch::Aarch64);
    let spares = SpareQemu::allow(1);
    let first = run_case(&config, "one", settings);
    assert!(first.outcome.is_pass(), "{first}");
    let waiting = waiting_qemus(dir, Duration::from_secs(5));
    assert_eq!(waiting.len(), 1, "a spare was started");
    let sent = std::process::Command::new("kill")
        .args([signal, &waiting[0].to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    (config, spares)
}

fn assert_nothing_left(dir: &Path) {
    let left = processes_naming(dir);
    assert!(left.is_empty(), "still running: {left:?}");
}

/// Cases of one config run one after another: the first saves the state, every later one is
/// restored in the QEMU started while the case before ran; verdicts are their own, the logs
/// name the command that ran, and the spare goes with the scope.
#[test]
fn later_cases_take_over_a_qemu_started_while_the_case_before_ran() {
    let _serial = serial();
    for arch in [Arch::Aarch64, Arch::X86_64] {
        let dir = tempfile::tempdir().unwrap();
        let settings = isolated(dir.path());
        let config = echo_config(dir.path(), "echo", arch);
        let spares = SpareQemu::allow(1);
        assert!(spares.allowed(), "this test needs 2 CPUs");
        let mut reports = Vec::new();
        for case in ["one", "two", "wrong", "three", "one"] {
            let report = run_case(&config, case, &settings);
            assert_eq!(
                report.outcome.is_pass(),
                case != "wrong",
                "{arch} {case}: {report}"
            );
            reports.push(report);
        }
        assert_eq!(started_early(&reports[0]), Some(false), "{}", reports[0]);
        for report in &reports[1..] {
            assert_eq!(started_early(report), Some(true), "{arch}: {report}");
            let text = report.to_string();
            assert!(
                text.contains("in a QEMU started while the case before ran"),
                "{text}"
            );
            let logs = report.log_path.parent().unwrap();
            let command = std::fs::read_to_string(logs.join("qemu-command.sh")).unwrap();
            assert_eq!(
                Some(command.trim_end()),
                report.qemu_command.as_deref(),
                "{arch}"
            );
            assert!(command.contains("-incoming defer"), "{command}");
            assert!(logs.join("qemu-stderr.log").is_file(), "{arch}");
        }
        // The last case left a spare; it goes with the scope.
        assert_eq!(
            waiting_qemus(dir.path(), Duration::from_secs(5)).len(),
            1,
            "{arch}"
        );
        drop(spares);
        assert_nothing_left(dir.path());
    }
}

/// A spare whose QEMU died, and one for another config, are killed and never used: the case
/// starts its own QEMU and passes.
#[test]
fn a_dead_or_mismatched_spare_is_never_used() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let settings = isolated(dir.path());
    let (config, spares) = first_case_then_signal_its_spare(dir.path(), &settings, "-KILL");
    let report = run_case(&config, "two", &settings);
    assert!(report.outcome.is_pass(), "{report}");
    assert_eq!(started_early(&report), Some(false), "{report}");
    let logs = report.log_path.parent().unwrap();
    assert!(
        !logs.join("spare-failed").exists(),
        "the dead spare was not even tried"
    );

    // Same state, another config: its spare stands in for `echo` only.
    let other = echo_config(dir.path(), "echo-too", Arch::Aarch64);
    assert_eq!(waiting_qemus(dir.path(), Duration::from_secs(5)).len(), 1);
    let report = run_case(&other, "three", &settings);
    assert!(report.outcome.is_pass(), "{report}");
    assert_eq!(started_early(&report), Some(false), "{report}");
    drop(spares);
    assert_nothing_left(dir.path());
}

/// A restore that fails in a spare (its QEMU stopped: QMP never answers) is tried again in a
/// QEMU of the case's own: the case passes, the state stays usable, the failed attempt's logs
/// are kept in `spare-failed/`.
#[test]
fn a_restore_that_fails_in_a_spare_is_retried_in_the_cases_own_qemu() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut settings = isolated(dir.path());
    // The restore's deadline (60 s) scaled down, so the stopped spare fails in 6 s.
    settings.timeout_scale = 0.1;
    let (config, spares) = first_case_then_signal_its_spare(dir.path(), &settings, "-STOP");

    let report = run_case(&config, "two", &settings);
    assert!(report.outcome.is_pass(), "{report}");
    assert_eq!(started_early(&report), Some(false), "{report}");
    let logs = report.log_path.parent().unwrap();
    assert!(logs.join("spare-failed").join("console.log").is_file());
    let report = run_case(&config, "three", &settings);
    assert!(report.outcome.is_pass(), "{report}");
    assert!(started_early(&report).is_some(), "still restored: {report}");
    drop(spares);
    assert_nothing_left(dir.path());
}

/// No spare starts with `VMHARNESS_SPARE_QEMU=off`, under nextest, without a scope, or where
/// the trials running at once leave no CPU free.
#[test]
fn no_spare_starts_when_off_under_nextest_or_without_a_free_cpu() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let config = echo_config(dir.path(), "echo", Arch::Aarch64);
    let on = isolated(dir.path());
    let mut off = on.clone();
    off.spare_qemu = false;
    let mut nextest = on.clone();
    nextest.nextest = true;
    let full = SpareQemu::allow(usize::MAX);
    assert!(!full.allowed());
    let runs = [
        (Some(SpareQemu::allow(1)), &off),
        (Some(SpareQemu::allow(1)), &nextest),
        (Some(full), &on),
        (None, &on),
    ];
    for (scope, settings) in runs {
        for case in ["one", "two"] {
            let report = run_case(&config, case, settings);
            assert!(report.outcome.is_pass(), "{report}");
            assert_eq!(started_early(&report), Some(false), "{report}");
        }
        assert!(
            waiting_qemus(dir.path(), Duration::from_millis(500)).is_empty(),
            "no spare with {:?} and spare_qemu = {}, nextest = {}",
            scope.as_ref().map(SpareQemu::allowed),
            settings.spare_qemu,
            settings.nextest
        );
        drop(scope);
    }
    assert_nothing_left(dir.path());
}
