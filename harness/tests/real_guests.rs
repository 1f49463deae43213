//! Real guests we did not write (Debian's Linux kernel) failing for real: the harness must
//! call a kernel panic a Fail naming `Kernel panic - not syncing`, although QEMU exits 0 just
//! as after a clean power-off.
//!
//! These need the `linux-aarch64` artifact (built from Debian packages by
//! `cargo xtask guests build linux-aarch64`); when it cannot be obtained the test fails with
//! the reason rather than passing.

use vmharness::outcome::Outcome;
use vmharness::run::{self, Resolver, RunOptions};

fn run_linux_with(action: &str) -> vmharness::outcome::Report {
    let root = vmharness::settings::Settings::from_env()
        .expect("usable environment")
        .root;
    let config = root.join("vm-configs/linux-aarch64.toml");
    let overrides = [format!(
        "qemu.append=\"console=ttyAMA0 panic=-1 vmharness.action={action}\""
    )];
    let loaded = vmharness::config::load_with_overrides(&config, &overrides).expect("config loads");
    let logs = tempfile::tempdir().unwrap();
    let options = RunOptions {
        log_dir: Some(logs.path().join(action)),
        ..RunOptions::default()
    };
    run::run(&loaded, &Resolver::from_env(), options)
}

fn assert_kernel_panic(action: &str, detail: &str) {
    let report = run_linux_with(action);
    let Outcome::Fail { reason } = &report.outcome else {
        panic!("expected a Fail for vmharness.action={action}, got:\n{report}");
    };
    assert!(reason.contains("/Kernel panic - not syncing/"), "{reason}");
    assert!(reason.contains(detail), "{reason}");
    // The panic pattern decided, not QEMU's exit or a timeout.
    assert!(report.exit.is_none(), "{report}");
    // The panic block whole, labelled: with panic=-1 the kernel reboots (QEMU exits under
    // -no-reboot) before its `---[ end` line, so the block runs to the console's end.
    let crash = report
        .crash
        .as_ref()
        .unwrap_or_else(|| panic!("no crash block:\n{report}"));
    assert_eq!(crash.kind, "panic", "{crash:?}");
    assert!(
        crash.lines[0].contains("Kernel panic - not syncing"),
        "{crash:?}"
    );
    assert!(
        crash.lines.iter().any(|l| l.contains("Call trace:")),
        "{crash:?}"
    );
    assert!(crash.lines.len() > 10, "{crash:?}");
    let text = report.to_string();
    assert!(text.contains("crash (panic, "), "{text}");
}

#[test]
fn sysrq_crash_is_a_kernel_panic_failure() {
    assert_kernel_panic("panic", "sysrq triggered crash");
}

#[test]
fn init_exiting_is_a_kernel_panic_failure() {
    assert_kernel_panic("exit", "Attempted to kill init");
}

/// The KTAP a shell script on our FAT32 disk prints from Debian's kernel: thirty results,
/// with a nested suite, a skip, a TODO, failures, and a suite whose output ends mid-case.
fn ktap_script() -> String {
    let mut lines = vec![
        "echo 'KTAP version 1'".to_string(),
        "echo '1..25'".to_string(),
    ];
    for i in 1..=22 {
        let line = match i {
            7 => format!("not ok {i} case_{i}"),
            9 => format!("ok {i} case_{i} # SKIP needs hardware"),
            11 => format!("ok {i} case_{i} # TODO known to fail"),
            _ => format!("ok {i} case_{i}"),
        };
        if i == 7 {
            lines.push("echo '# case_7: expected 4, got 5'".into());
        }
        lines.push(format!("echo '{line}'"));
    }
    for line in [
        "    KTAP version 1",
        "    # Subtest: fs",
        "    1..4",
        "    ok 1 a",
        "    ok 2 b",
        "    not ok 3 c",
        "    ok 4 d",
        "not ok 23 fs",
        "    KTAP version 1",
        "    # Subtest: mm",
        "    1..3",
        "    ok 1 first",
        "    # running second, then the output stops",
    ] {
        lines.push(format!("echo '{line}'"));
    }
    lines.push("exit 0".into());
    lines.join("\n") + "\n"
}

#[test]
fn thirty_ktap_results_from_linux_name_the_failures_and_fill_a_junit_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ktap-linux.toml");
    let config = format!(
        r#"arch = "aarch64"
[qemu]
kernel = "artifact:linux-aarch64/vmlinuz"
initrd = "artifact:linux-aarch64/initrd.img"
append = "console=ttyAMA0 panic=-1"
memory = "512M"
[disk]
size = "64M"
[[disk.entries]]
dest = "/run.sh"
text = """
{script}"""
[console]
banner = ["Linux version", "vmharness-init: start"]
steps = [{{ expect = "vmharness-init: run.sh exit status 0" }}]
[results]
ktap = true
[timeouts]
total = "5m"
"#,
        script = ktap_script()
    );
    std::fs::write(&path, config).unwrap();
    let loaded = vmharness::config::load(&path).expect("config loads");
    let report = run::run(&loaded, &Resolver::from_env(), RunOptions::default());
    let results = report.results.as_ref().expect("sub-results");
    assert_eq!(results.cases.len(), 30, "{report}");
    let Outcome::Fail { reason } = &report.outcome else {
        panic!("expected a Fail, got:\n{report}");
    };
    for name in [
        "case_7 (fail)",
        "fs.c (fail)",
        "mm.#2 (crashed)",
        "mm.#3 (crashed)",
        "#25 (crashed)",
    ] {
        assert!(reason.contains(name), "{name} missing from: {reason}");
    }
    assert!(
        reason.contains("5 of 30 sub-results failed (23 passed, 2 failed, 3 crashed, 2 skipped)"),
        "{reason}"
    );
    let text = report.to_string();
    let listing = text.find("FAIL case_7").expect("failing case listed");
    assert!(
        listing < text.find("last ").unwrap_or(usize::MAX),
        "failures come first:\n{text}"
    );
    assert!(text.contains("| # case_7: expected 4, got 5"), "{text}");
    // Our JUnit: one test case per sub-result.
    let junit = report.log_path.parent().unwrap().join("junit.xml");
    vmharness::suite::write_result(&report, &loaded).unwrap();
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert_eq!(xml.matches("<testcase ").count(), 30, "{xml}");
    assert_eq!(xml.matches("<failure").count(), 2, "{xml}");
    assert_eq!(xml.matches("<error").count(), 3, "{xml}");
    assert_eq!(xml.matches("<skipped").count(), 2, "{xml}");
    let record =
        std::fs::read_to_string(report.log_path.parent().unwrap().join("result.toml")).unwrap();
    assert_eq!(record.matches("[[sub_results]]").count(), 30, "{record}");
}
