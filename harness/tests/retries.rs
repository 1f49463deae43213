//! `[retries]`: a known flake of the software under test gets more attempts, and every failed
//! attempt is reported, never hidden.
//!
//! The guest is the real selftest guest under real QEMU; what makes it flaky is a wrapper
//! around QEMU that selects the `panic` scenario for the first N boots and the `banner`
//! scenario after that.

mod support;

use std::path::{Path, PathBuf};

use vmharness::run::{self, Resolver};
use vmharness::settings::Settings;
use vmharness::suite::{Label, ResultRecord, Unit};

/// A QEMU that panics the selftest guest on its first `failures` boots.
fn flaky_qemu(dir: &Path, failures: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("flaky-qemu");
    let count = dir.join("boots");
    let text = format!(
        "#!/bin/sh\necho boot >> '{count}'\nif [ \"$(wc -l < '{count}')\" -le {failures} ]; then\n  \
         exec qemu-system-x86_64 \"$@\" -fw_cfg name=opt/vmharness/scenario,string=panic\nfi\n\
         exec qemu-system-x86_64 \"$@\" -fw_cfg name=opt/vmharness/scenario,string=banner\n",
        count = count.display()
    );
    std::fs::write(&script, text).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

fn boots(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("boots"))
        .map(|text| text.lines().count())
        .unwrap_or(0)
}

/// A selftest config booted through the flaky QEMU, with `rest` appended.
fn config(dir: &Path, failures: u32, rest: &str) -> PathBuf {
    let binary = flaky_qemu(dir, failures);
    let path = dir.join("flaky.toml");
    let text = format!(
        "arch = \"x86_64\"\naccel = \"tcg\"\n{rest}\n[qemu]\nbinary = {:?}\n\
         kernel = \"artifact:selftest-x86_64/selftest.elf\"\n[console]\nbanner = [\"selftest: ok\"]\n",
        binary.display().to_string()
    );
    std::fs::write(&path, text).unwrap();
    path
}

const POLICY: &str = "[retries]\ncount = 1\nwhy = \"the guest panics on its first boot (test)\"";

/// Runs the config as `cargo test` does; returns the trial's result and its latest record.
fn trial(config: &Path, dir: &Path) -> (Result<(), String>, ResultRecord) {
    let mut settings: Settings = support::settings();
    settings.target_dir = dir.join("target");
    let loaded = vmharness::config::load(config).expect("config loads");
    let unit = Unit {
        loaded: std::sync::Arc::new(loaded),
        case: None,
    };
    let resolver = Resolver::from_settings(&settings);
    let result = vmharness::suite::run_unit(&unit, &resolver, &settings)
        .map(|_| ())
        .map_err(|failed| format!("{failed:?}"));
    let latest = run::logs::latest_dir(&settings.logs_dir(), &unit.name());
    let record = ResultRecord::read(&latest.join("result.toml")).expect("result.toml");
    (result, record)
}

fn records(dir: &Path) -> Vec<ResultRecord> {
    let logs = dir.join("target/vmharness/logs/flaky");
    let mut records: Vec<ResultRecord> = std::fs::read_dir(&logs)
        .unwrap()
        .filter_map(Result::ok)
        // `latest` links to one of the runs.
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|entry| ResultRecord::read(&entry.path().join("result.toml")).ok())
        .collect();
    records.sort_by(|a, b| a.log.cmp(&b.log));
    records
}

#[test]
fn a_flake_the_config_names_passes_on_its_retry_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (result, record) = trial(&config(dir.path(), 1, POLICY), dir.path());
    assert_eq!(result, Ok(()));
    assert_eq!(boots(dir.path()), 2);
    assert_eq!(record.outcome, Label::Pass);
    let note = record
        .notes
        .iter()
        .find(|n| n.starts_with("attempt 2 of 2 allowed by [retries]"))
        .unwrap_or_else(|| panic!("no retry note: {:?}", record.notes));
    assert!(
        note.contains("the guest panics on its first boot (test)"),
        "{note}"
    );
    assert!(note.contains("[1] FAIL: "), "{note}");
    assert!(note.contains("panicked at selftest.c:42"), "{note}");
    // The failed attempt keeps its own record and log.
    let all = records(dir.path());
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(
        all.iter().filter(|r| r.outcome == Label::Fail).count(),
        1,
        "{all:?}"
    );
    let failed = all.iter().find(|r| r.outcome == Label::Fail).unwrap();
    let log = failed.log.display().to_string();
    assert!(note.contains(&log), "{note} / {log}");
}

#[test]
fn a_flake_that_keeps_failing_fails_with_every_attempt_listed() {
    let dir = tempfile::tempdir().unwrap();
    let (result, record) = trial(&config(dir.path(), 5, POLICY), dir.path());
    let failure = result.unwrap_err();
    assert_eq!(boots(dir.path()), 2, "count = 1: two attempts in all");
    assert_eq!(record.outcome, Label::Fail);
    assert!(
        failure.contains("attempt 2 of 2 allowed by [retries]"),
        "{failure}"
    );
    assert!(failure.contains("[1] FAIL: "), "{failure}");
}

#[test]
fn without_retries_a_failure_is_final() {
    let dir = tempfile::tempdir().unwrap();
    let (result, record) = trial(&config(dir.path(), 1, ""), dir.path());
    assert!(result.is_err());
    assert_eq!(boots(dir.path()), 1);
    assert_eq!(record.outcome, Label::Fail);
}

/// A definition mistake is not a flake: it fails once, whatever `[retries]` says.
#[test]
fn a_definition_mistake_is_never_retried() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 0, POLICY);
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "selftest.elf\"",
        "selftest.elf\"\ninitrd = \"no-such-file\"",
    );
    std::fs::write(&config, text).unwrap();
    let (result, record) = trial(&config, dir.path());
    assert!(result.is_err());
    assert_eq!(boots(dir.path()), 0);
    assert_eq!(record.outcome, Label::Fail);
    assert!(record.notes.iter().all(|n| !n.contains("[retries]")));
}

#[test]
fn retry_policies_are_checked_where_they_are_written() {
    let dir = tempfile::tempdir().unwrap();
    for (policy, message) in [
        (
            "[retries]\ncount = 0\nwhy = \"x\"",
            "`retries.count` must be 1 to 3, not 0",
        ),
        (
            "[retries]\ncount = 4\nwhy = \"x\"",
            "`retries.count` must be 1 to 3, not 4",
        ),
        (
            "[retries]\ncount = 1\nwhy = \" \"",
            "must name the known defect",
        ),
        ("[retries]\ncount = 1", "missing field `why`"),
    ] {
        let path = config(dir.path(), 0, policy);
        let err = vmharness::config::load(&path).unwrap_err().to_string();
        assert!(err.contains("flaky.toml:"), "{policy}: {err}");
        assert!(err.contains(message), "{policy}: {err}");
    }
}
