//! Boot once, test many, with real QEMU and the selftest guest's echo scenario: `[[case]]`s
//! start from one state saved at `[ready]`, and nothing about a state (damaged, unloadable,
//! a guest that does not answer, an arch where restores are broken) can decide a verdict:
//! each of those ends with the case booted cold and judged on its own.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use support::{run_case, selftest_config, settings};
use vmharness::arch::Arch;
use vmharness::outcome::Report;
use vmharness::run::{self, FileResolver, Note, Resolver, RunOptions};
use vmharness::settings::Settings;

/// An echo-scenario config with three cases and `extra` appended.
fn echo_config(dir: &Path, arch: Arch, extra: &str) -> PathBuf {
    let rest = format!(
        r#"[console]
banner = ["vmharness selftest {arch}"]
[ready]
expect = "^echo: ready$"
probe = "{{token}}"
answer = "^echo: {{token}}$"
[[case]]
name = "one"
steps = [{{ send_line = "one" }}, {{ expect = "^echo: one$" }}]
[[case]]
name = "two"
steps = [{{ send_line = "two" }}, {{ expect = "^echo: two$" }}]
[[case]]
name = "three"
steps = [{{ send_line = "three" }}, {{ expect = "^echo: three$" }}]
[timeouts]
total = "30s"
step = "10s"
{extra}"#
    );
    selftest_config(dir, "echo", arch, "echo", &rest)
}

/// Settings whose logs, temp dirs and saved states live under `dir`.
fn isolated(dir: &Path) -> Settings {
    let mut settings = settings();
    settings.target_dir = dir.join("target");
    settings
}

/// The saved states (complete ones) under `settings`.
fn states(settings: &Settings) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(settings.states_dir()) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.join("meta.toml").is_file())
        .collect()
}

/// Command lines of live processes that name `path` (QEMU and its `exec:cat` name the state).
fn processes_naming(path: &Path) -> Vec<String> {
    let needle = path.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
        .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
        .filter(|line| line.contains(&needle))
        .collect()
}

fn saved(report: &Report) -> bool {
    report
        .notes
        .iter()
        .any(|note| matches!(note, Note::StateSaved { .. }))
}

fn restored(report: &Report) -> bool {
    report
        .notes
        .iter()
        .any(|note| matches!(note, Note::StateRestored { .. }))
}

fn cold_because(report: &Report) -> Option<String> {
    report.notes.iter().find_map(|note| match note {
        Note::ColdBoot(why) => Some(why.clone()),
        _ => None,
    })
}

#[test]
fn concurrent_cases_share_one_saved_state_and_an_input_change_makes_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let settings = isolated(dir.path());
    let disk = "[disk]\nsize = \"40M\"\n[[disk.entries]]\ndest = \"/a.txt\"\ntext = \"first\"\n";
    let config = echo_config(dir.path(), Arch::Aarch64, disk);
    let reports: Vec<Report> = std::thread::scope(|scope| {
        let runs: Vec<_> = ["one", "two", "three"]
            .into_iter()
            .map(|case| scope.spawn(|| run_case(&config, case, &settings)))
            .collect();
        runs.into_iter().map(|run| run.join().unwrap()).collect()
    });
    for report in &reports {
        assert!(report.outcome.is_pass(), "{report}");
        assert!(restored(report), "{report}");
        assert!(report.name.starts_with("echo::"), "{report}");
    }
    assert_eq!(reports.iter().filter(|r| saved(r)).count(), 1);
    assert_eq!(states(&settings).len(), 1);
    // No QEMU, and no `cat` it fed a state through, outlives its case.
    let left = processes_naming(dir.path());
    assert!(left.is_empty(), "still running: {left:?}");
    let text = reports[0].to_string();
    assert!(
        text.contains("started from the state saved at [ready]"),
        "{text}"
    );

    // Other disk bytes are another state: a state never meets a disk it was not saved with.
    let config = echo_config(
        dir.path(),
        Arch::Aarch64,
        &disk.replace("\"first\"", "\"second\""),
    );
    let report = run_case(&config, "one", &settings);
    assert!(report.outcome.is_pass() && saved(&report), "{report}");
    assert_eq!(states(&settings).len(), 2);
}

#[test]
fn a_damaged_state_is_discarded_and_made_again() {
    let dir = tempfile::tempdir().unwrap();
    let settings = isolated(dir.path());
    let config = echo_config(
        dir.path(),
        Arch::X86_64,
        "[disk]\nsize = \"40M\"\n[[disk.entries]]\ndest = \"/a.txt\"\ntext = \"a\"\n",
    );
    let first = run_case(&config, "one", &settings);
    assert!(first.outcome.is_pass() && saved(&first), "{first}");
    let state = states(&settings).pop().unwrap();
    type Damage<'a> = (&'a str, &'a dyn Fn(&Path));
    let damages: [Damage; 3] = [
        ("truncated stream", &|s| {
            std::fs::write(s.join("state"), b"short").unwrap();
        }),
        ("changed frozen disk", &|s| {
            let disk = s.join("disk.img");
            let mut perms = std::fs::metadata(&disk).unwrap().permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
            std::fs::set_permissions(&disk, perms).unwrap();
            let mut bytes = std::fs::read(&disk).unwrap();
            bytes[4096] ^= 0xff;
            std::fs::write(&disk, bytes).unwrap();
        }),
        ("garbled metadata", &|s| {
            std::fs::write(s.join("meta.toml"), "not = [toml").unwrap();
        }),
    ];
    for (what, damage) in damages {
        damage(&state);
        let report = run_case(&config, "two", &settings);
        assert!(report.outcome.is_pass(), "{what}: {report}");
        let discarded = report
            .notes
            .iter()
            .any(|note| matches!(note, Note::StateDiscarded(why) if why.contains("damaged")));
        assert!(
            discarded && saved(&report) && restored(&report),
            "{what}: {report}"
        );
        assert_eq!(states(&settings), std::slice::from_ref(&state), "{what}");
    }
}

#[test]
fn a_state_that_does_not_load_is_marked_unusable_and_its_cases_boot_cold() {
    let dir = tempfile::tempdir().unwrap();
    let settings = isolated(dir.path());
    let config = echo_config(dir.path(), Arch::Aarch64, "");
    assert!(run_case(&config, "one", &settings).outcome.is_pass());
    // Same size, other bytes: the metadata check passes, QEMU refuses the stream.
    let state = states(&settings).pop().unwrap().join("state");
    let size = std::fs::metadata(&state).unwrap().len() as usize;
    std::fs::write(&state, vec![0x5a; size]).unwrap();
    let report = run_case(&config, "two", &settings);
    assert!(report.outcome.is_pass(), "{report}");
    let why = cold_because(&report).unwrap_or_default();
    assert!(
        why.contains("restoring the saved state failed") && why.contains("marked unusable"),
        "{report}"
    );
    let aside = report.log_path.parent().unwrap().join("restore-failed");
    assert!(aside.join("console.log").is_file(), "{}", aside.display());
    // From now on its cases boot cold at once, saying why.
    let report = run_case(&config, "three", &settings);
    assert!(report.outcome.is_pass(), "{report}");
    let why = cold_because(&report).unwrap_or_default();
    assert!(why.contains("failed before"), "{report}");
}

#[test]
fn a_restored_guest_that_does_not_answer_is_never_a_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let settings = isolated(dir.path());
    let config = echo_config(dir.path(), Arch::X86_64, "");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "answer = \"^echo: {token}$\"",
        "answer = \"^never {token}$\"",
    );
    std::fs::write(&config, text).unwrap();
    let report = run_case(&config, "one", &settings);
    assert!(report.outcome.is_pass(), "{report}");
    let why = cold_because(&report).unwrap_or_default();
    assert!(why.contains("did not answer"), "{report}");
}

#[test]
fn cases_boot_cold_where_states_are_off_or_known_broken() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = isolated(dir.path());
    settings.saved_states = false;
    let config = echo_config(dir.path(), Arch::Aarch64, "");
    let report = run_case(&config, "one", &settings);
    assert!(report.outcome.is_pass(), "{report}");
    assert_eq!(
        cold_because(&report).as_deref(),
        Some("VMHARNESS_SAVED_STATES=off")
    );
    // riscv64's timer state does not survive a restore in the QEMU releases we know.
    settings.saved_states = true;
    let config = echo_config(dir.path(), Arch::Riscv64, "");
    let report = run_case(&config, "two", &settings);
    assert!(report.outcome.is_pass(), "{report}");
    let why = cold_because(&report).unwrap_or_default();
    assert!(why.contains("riscv64") && why.contains("timer"), "{report}");
    assert!(states(&settings).is_empty());
}

#[test]
fn a_failing_case_fails_on_its_own_from_the_saved_state() {
    let dir = tempfile::tempdir().unwrap();
    let settings = isolated(dir.path());
    let extra = r#"[[case]]
name = "wrong"
steps = [{ send_line = "four" }, { expect = "^echo: five$", timeout = "1s" }]
[[case]]
name = "panics"
steps = [{ send_line = "panicked at x" }, { expect = "^echo: never$" }]
"#;
    let config = echo_config(dir.path(), Arch::Aarch64, extra);
    let report = run_case(&config, "wrong", &settings);
    assert_eq!(report.outcome.label(), "TIMEOUT", "{report}");
    assert!(restored(&report), "{report}");
    assert!(report.expected.contains("/^echo: five$/"), "{report}");
    let report = run_case(&config, "panics", &settings);
    assert_eq!(report.outcome.label(), "FAIL", "{report}");
    assert!(
        report.outcome.detail().contains("panic pattern"),
        "{report}"
    );
    // The other cases are untouched by the failures.
    assert!(run_case(&config, "one", &settings).outcome.is_pass());
}

#[test]
fn a_boot_that_never_gets_ready_fails_the_case_and_saves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let settings = isolated(dir.path());
    let config = echo_config(dir.path(), Arch::X86_64, "");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "expect = \"^echo: ready$\"",
        "expect = \"^never ready$\"\ntimeout = \"2s\"",
    );
    std::fs::write(&config, text).unwrap();
    let report = run_case(&config, "one", &settings);
    assert_eq!(report.outcome.label(), "TIMEOUT", "{report}");
    assert!(report.expected.contains("never ready"), "{report}");
    assert!(states(&settings).is_empty());
    let text = report.to_string();
    assert!(text.contains("to save the guest's state"), "{text}");
}

#[test]
fn an_unknown_case_is_a_definition_failure() {
    let dir = tempfile::tempdir().unwrap();
    let config = echo_config(dir.path(), Arch::X86_64, "");
    let report = run_case(&config, "nosuch", &isolated(dir.path()));
    assert_eq!(report.outcome.label(), "FAIL", "{report}");
    assert!(report.to_string().contains("no case `nosuch`"), "{report}");
}

/// A restored guest's wall clock lags by the state's age; a probe with `{epoch}` sets it.
/// Real guest: Debian's arm64 kernel with busybox (`date -s @...` in the Linux configs' probe).
#[test]
fn the_probe_sets_the_restored_guests_clock() {
    let dir = tempfile::tempdir().unwrap();
    let settings = isolated(dir.path());
    let config = vmharness::settings::Settings::from_env()
        .expect("usable environment")
        .root
        .join("vm-configs/linux-aarch64.toml");
    let clock = r#"case = [{ name = "clock", steps = [{ send_line = "echo now=$(date +%s)" }, { expect = "^now=[0-9]{10}$" }] }]"#;
    let without = r#"ready.probe = "sleep 0.1; echo {token}""#;
    let run = |overrides: &[&str]| {
        let overrides: Vec<String> = overrides.iter().map(|o| o.to_string()).collect();
        let loaded = vmharness::config::load_with_overrides(&config, &overrides).unwrap();
        let options = RunOptions {
            settings: Some(settings.clone()),
            ..RunOptions::default()
        };
        let report = run::run_case(
            &loaded,
            "clock",
            &Resolver::from_settings(&settings),
            options,
        );
        assert!(report.outcome.is_pass() && restored(&report), "{report}");
        let host = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let log = std::fs::read_to_string(&report.log_path).unwrap();
        let guest: i64 = log
            .lines()
            // Log lines are `[   0.600581] text`.
            .find_map(|l| l.split_once("] ")?.1.strip_prefix("now="))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no now= line in {log}"));
        host - guest
    };
    run(&[clock]);
    // The state is now at least this old.
    std::thread::sleep(std::time::Duration::from_secs(6));
    let lag = run(&[clock]);
    assert!(
        (-1..=2).contains(&lag),
        "the clock was set, yet lags {lag} s"
    );
    let lag = run(&[clock, without]);
    assert!(
        lag >= 5,
        "without {{epoch}} the clock should lag by the state's age: {lag} s"
    );
}

/// A device QEMU cannot migrate (ivshmem in peer mode) makes saving fail: the case boots cold,
/// saying why, and nothing half made is left in the store.
#[test]
fn a_vm_that_cannot_be_saved_boots_its_cases_cold() {
    let dir = tempfile::tempdir().unwrap();
    let settings = isolated(dir.path());
    let config = echo_config(dir.path(), Arch::X86_64, "");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "args = [\"-fw_cfg\", ",
        "args = [\"-object\", \"memory-backend-ram,id=hm,size=1M\", \"-device\", \"ivshmem-plain,memdev=hm\", \"-fw_cfg\", ",
    );
    std::fs::write(&config, text).unwrap();
    let report = run_case(&config, "one", &settings);
    assert!(report.outcome.is_pass(), "{report}");
    let why = cold_because(&report).unwrap_or_default();
    assert!(
        why.contains("saving the state failed") && why.contains("Migration is disabled"),
        "{report}"
    );
    assert!(states(&settings).is_empty());
    let leftovers: Vec<_> = std::fs::read_dir(settings.states_dir())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(".new-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// The Linux guest on riscv64 runs its cases by booting each cold, and says so.
#[test]
fn linux_on_riscv64_boots_each_case_cold() {
    let dir = tempfile::tempdir().unwrap();
    let settings = isolated(dir.path());
    let config = vmharness::settings::Settings::from_env()
        .expect("usable environment")
        .root
        .join("vm-configs/linux-riscv64.toml");
    let report = run_case(&config, "long-name", &settings);
    assert!(report.outcome.is_pass(), "{report}");
    let why = cold_because(&report).unwrap_or_default();
    assert!(why.contains("riscv64") && why.contains("timer"), "{report}");
    assert!(states(&settings).is_empty());
}

/// The `result.toml` of a case trial run through the suite (as `cargo test` runs it).
fn case_record(config: &Path, case: &str, settings: &Settings) -> vmharness::suite::ResultRecord {
    let loaded = vmharness::config::load(config).expect("config loads");
    let unit = vmharness::suite::Unit {
        loaded: std::sync::Arc::new(loaded),
        case: Some(case.to_string()),
    };
    let resolver = Resolver::from_settings(settings);
    let _ = vmharness::suite::run_unit(&unit, &resolver, settings);
    let dir = run::logs::latest_dir(&settings.logs_dir(), &unit.name());
    vmharness::suite::ResultRecord::read(&dir.join("result.toml")).expect("result.toml")
}

/// Every case trial says which bytes it booted, like a whole run: restored from a state (the
/// state's artifacts, and the state's key in a note) or booted cold.
#[test]
fn case_trials_record_the_artifacts_they_booted() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = isolated(dir.path());
    let config = echo_config(dir.path(), Arch::Aarch64, "");
    let kernel = Resolver::from_settings(&settings)
        .artifact(&"artifact:selftest-aarch64/selftest.elf".parse().unwrap())
        .unwrap();
    let sha256 = vmharness_digest::file_sha256(&kernel).unwrap();
    let check = |record: &vmharness::suite::ResultRecord, how: &str| {
        assert_eq!(
            record.outcome,
            vmharness::suite::Label::Pass,
            "{how}: {record:?}"
        );
        let [booted] = record.booted.as_slice() else {
            panic!("{how}: one artifact booted, got {:?}", record.booted);
        };
        assert_eq!(booted.artifact, "selftest-aarch64", "{how}");
        assert!(booted.key.len() >= 12, "{how}: {booted:?}");
        assert!(!booted.lock.is_empty(), "{how}: {booted:?}");
        assert_eq!(
            booted.outputs.get("selftest.elf"),
            Some(&sha256),
            "{how}: {booted:?}"
        );
    };
    // The first case saves the state and restores from it; the second only restores.
    for case in ["one", "two"] {
        let record = case_record(&config, case, &settings);
        check(&record, case);
        let key = states(&settings).pop().unwrap();
        let key = key.file_name().unwrap().to_string_lossy()[..16].to_string();
        assert!(
            record
                .notes
                .iter()
                .any(|n| n.contains("started from the state") && n.contains(&key)),
            "{case}: {:?}",
            record.notes
        );
    }
    settings.saved_states = false;
    let record = case_record(&config, "three", &settings);
    check(&record, "cold");
    assert!(
        record.notes.iter().any(|n| n.contains("booted cold")),
        "{:?}",
        record.notes
    );
}

/// A target dir deeper than a unix socket path may be (108 bytes): cases still save and
/// restore a state over QMP.
#[test]
fn cases_restore_under_a_deep_target_dir() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = isolated(dir.path());
    settings.target_dir = dir
        .path()
        .join("a".repeat(60))
        .join("b".repeat(60))
        .join("target");
    let config = echo_config(dir.path(), Arch::X86_64, "");
    for case in ["one", "two"] {
        let report = run_case(&config, case, &settings);
        assert!(report.outcome.is_pass(), "{report}");
        assert!(restored(&report), "{case}: {report}");
    }
    assert_eq!(states(&settings).len(), 1);
}

fn restored_with(report: &Report) -> Option<&'static str> {
    report.notes.iter().find_map(|note| match note {
        Note::StateRestored { method, .. } => Some(*method),
        _ => None,
    })
}

fn sha256(path: &Path) -> String {
    vmharness_digest::file_sha256(path).unwrap()
}

/// On QEMU 7.2 the default is `template`: guest RAM in a sparse file next to a device-state-only
/// stream. Concurrent cases map it copy-on-write and leave it as it was (read-only, same
/// sha256); a changed RAM file is damage, and the state is made again.
#[test]
fn template_states_keep_guest_ram_in_a_read_only_file_no_case_changes() {
    for arch in [Arch::X86_64, Arch::Aarch64] {
        let dir = tempfile::tempdir().unwrap();
        let settings = isolated(dir.path());
        let config = echo_config(dir.path(), arch, "");
        let first = run_case(&config, "one", &settings);
        assert!(first.outcome.is_pass() && saved(&first), "{arch}: {first}");
        assert_eq!(restored_with(&first), Some("template"), "{arch}: {first}");
        let state = states(&settings).pop().unwrap();
        let ram = state.join("ram");
        let meta = std::fs::metadata(&ram).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions());
        assert_eq!(mode & 0o777, 0o400, "{arch}: the RAM file is read-only");
        let allocated = std::os::unix::fs::MetadataExt::blocks(&meta) * 512;
        assert!(
            allocated < meta.len() / 4,
            "{arch}: sparse: {allocated} of {}",
            meta.len()
        );
        let stream = std::fs::metadata(state.join("state")).unwrap().len();
        assert!(
            stream < 2 << 20,
            "{arch}: device state only: {stream} bytes"
        );
        let before = sha256(&ram);
        let reports: Vec<Report> = std::thread::scope(|scope| {
            let runs: Vec<_> = ["two", "three"]
                .into_iter()
                .map(|case| scope.spawn(|| run_case(&config, case, &settings)))
                .collect();
            runs.into_iter().map(|run| run.join().unwrap()).collect()
        });
        for report in &reports {
            assert!(
                report.outcome.is_pass() && !saved(report),
                "{arch}: {report}"
            );
            assert_eq!(restored_with(report), Some("template"), "{arch}: {report}");
        }
        assert_eq!(sha256(&ram), before, "{arch}: a case changed the RAM file");
        let left = processes_naming(dir.path());
        assert!(left.is_empty(), "{arch}: still running: {left:?}");

        // One changed byte in the guest's RAM is a damaged state, made again.
        std::fs::set_permissions(&ram, std::fs::Permissions::from_mode(0o600)).unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&ram).unwrap();
        std::os::unix::fs::FileExt::write_at(&file, b"x", 1 << 20).unwrap();
        drop(file);
        let report = run_case(&config, "two", &settings);
        assert!(report.outcome.is_pass(), "{arch}: {report}");
        let discarded = report.notes.iter().any(
            |note| matches!(note, Note::StateDiscarded(why) if why.contains("damaged") && why.contains("ram ")),
        );
        assert!(discarded && saved(&report), "{arch}: {report}");
        assert_eq!(restored_with(&report), Some("template"), "{arch}: {report}");
    }
}

/// A forced stream method is used on 7.2 too, and a config that chooses NUMA nodes (which the
/// RAM file would replace) gets the stream method its QEMU offers instead of `template`.
#[test]
fn stream_methods_remain_where_asked_for_or_where_the_template_cannot_go() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = isolated(dir.path());
    settings.state_method = Some(vmharness::settings::Method::Exec);
    let config = echo_config(dir.path(), Arch::Aarch64, "");
    let report = run_case(&config, "one", &settings);
    assert!(report.outcome.is_pass(), "{report}");
    assert_eq!(restored_with(&report), Some("exec"), "{report}");
    assert!(!states(&settings)[0].join("ram").exists());

    settings.state_method = None;
    let config = echo_config(dir.path(), Arch::X86_64, "");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "args = [",
        r#"args = ["-object", "memory-backend-ram,id=m0,size=256M", "-numa", "node,memdev=m0", "#,
    );
    std::fs::write(&config, text).unwrap();
    let report = run_case(&config, "one", &settings);
    assert!(report.outcome.is_pass(), "{report}");
    let method = restored_with(&report).unwrap_or("none");
    assert!(method != "template" && method != "none", "{report}");
}
