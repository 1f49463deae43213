//! Every failure path of the run engine, driven for real: QEMU under TCG booting the in-tree
//! selftest guests. Each test asserts the Outcome variant and what the message tells the user.

mod support;

use std::time::Duration;

use support::{run_config, selftest_config};
use vmharness::arch::Arch;
use vmharness::outcome::{Outcome, TimeoutKind};
use vmharness::run::ErrorClass;

#[test]
fn banner_passes_on_every_arch() {
    let dir = tempfile::tempdir().unwrap();
    for arch in Arch::ALL {
        let path = selftest_config(
            dir.path(),
            &format!("banner-{arch}"),
            arch,
            "banner",
            &format!("[console]\nbanner = [\"vmharness selftest {arch}\", \"selftest: ok\"]\n"),
        );
        let report = run_config(&path);
        assert_eq!(report.outcome, Outcome::Pass, "{report}");
        assert_eq!(report.exit.unwrap().guest_code, Some(0), "{report}");
    }
}

#[test]
fn panic_line_fails_fast_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    for arch in Arch::ALL {
        let path = selftest_config(
            dir.path(),
            &format!("panic-{arch}"),
            arch,
            "panic 4",
            // The guest hangs after panicking: only the panic pattern can end this quickly.
            "[timeouts]\ntotal = \"60s\"\nno_output = \"30s\"\n",
        );
        let report = run_config(&path);
        let Outcome::Fail { reason } = &report.outcome else {
            panic!("expected Fail, got {report}");
        };
        assert!(reason.contains("/panicked at/"), "{reason}");
        assert!(
            reason.contains("panicked at selftest.c:42: deliberate panic"),
            "{reason}"
        );
        assert!(report.elapsed < Duration::from_secs(20), "{report}");
        let text = report.to_string();
        assert!(
            text.contains("| line 4"),
            "tail shows the lines before the panic:\n{text}"
        );
        assert!(
            text.contains("qemu:") && text.contains("-accel tcg"),
            "{text}"
        );
        let log = std::fs::read_to_string(&report.log_path).unwrap();
        assert!(log.contains("deliberate panic"), "{log}");
    }
}

#[test]
fn silent_guest_is_a_no_output_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let path = selftest_config(
        dir.path(),
        "hang",
        Arch::X86_64,
        "hang",
        "[console]\nsuccess = \"never printed\"\n[timeouts]\nno_output = \"1s\"\ntotal = \"60s\"\n",
    );
    let report = run_config(&path);
    assert_eq!(
        report.outcome,
        Outcome::Timeout {
            which: TimeoutKind::NoOutput(Duration::from_secs(1))
        },
        "{report}"
    );
    assert!(
        report
            .to_string()
            .contains("expected: success pattern /never printed/"),
        "{report}"
    );
}

#[test]
fn step_and_total_timeouts_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = selftest_config(
        dir.path(),
        "step",
        Arch::Aarch64,
        "echo",
        "[console]\nbanner = [\"echo: ready\"]\n[[console.steps]]\nexpect = \"never\"\ntimeout = \"1s\"\n",
    );
    let report = run_config(&path);
    assert_eq!(
        report.outcome,
        Outcome::Timeout {
            which: TimeoutKind::Step(Duration::from_secs(1))
        },
        "{report}"
    );
    assert!(
        report.to_string().contains("step 1/1: expect /never/"),
        "{report}"
    );

    let path = selftest_config(
        dir.path(),
        "total",
        Arch::Aarch64,
        "echo",
        "[console]\nsuccess = \"never\"\n[timeouts]\ntotal = \"1500ms\"\n",
    );
    let report = run_config(&path);
    assert_eq!(
        report.outcome,
        Outcome::Timeout {
            which: TimeoutKind::Total(Duration::from_millis(1500))
        },
        "{report}"
    );
}

#[test]
fn guest_exit_code_is_reported_and_judged() {
    let dir = tempfile::tempdir().unwrap();
    for arch in Arch::ALL {
        let path = selftest_config(dir.path(), &format!("exit-{arch}"), arch, "exit 3", "");
        let report = run_config(&path);
        let Outcome::Fail { reason } = &report.outcome else {
            panic!("expected Fail, got {report}");
        };
        assert!(reason.contains("guest exited with code 3"), "{reason}");
        assert_eq!(report.exit.unwrap().guest_code, Some(3), "{report}");
        // The same guest passes when the config expects that code.
        let path = selftest_config(
            dir.path(),
            &format!("exit-ok-{arch}"),
            arch,
            "exit 3",
            "[console]\nexit_code = 3\n",
        );
        assert_eq!(run_config(&path).outcome, Outcome::Pass);
    }
}

#[test]
fn early_exit_fails_with_what_was_awaited() {
    let dir = tempfile::tempdir().unwrap();
    let path = selftest_config(
        dir.path(),
        "early",
        Arch::Riscv64,
        "banner",
        "[console]\nbanner = [\"selftest: ok\", \"a line that never comes\"]\n",
    );
    let report = run_config(&path);
    let Outcome::Fail { reason } = &report.outcome else {
        panic!("expected Fail, got {report}");
    };
    assert!(reason.contains("QEMU exited"), "{reason}");
    assert!(
        reason.contains("banner 2/2: /a line that never comes/"),
        "{reason}"
    );
    assert!(
        report
            .to_string()
            .contains("banner 1/2: /selftest: ok/ ← `selftest: ok`"),
        "{report}"
    );
}

#[test]
fn steps_send_and_expect_through_the_serial_port() {
    let dir = tempfile::tempdir().unwrap();
    for arch in Arch::ALL {
        let steps = "[console]\nbanner = [\"echo: ready\"]\n\
            [[console.steps]]\nsend_line = \"hello vmharness\"\n\
            [[console.steps]]\nexpect = \"echo: hello vmharness\"\n\
            [[console.steps]]\nexpect_not = \"echo: exit\"\ntimeout = \"300ms\"\n\
            [[console.steps]]\nsend_line = \"exit\"\n";
        let path = selftest_config(dir.path(), &format!("echo-{arch}"), arch, "echo", steps);
        let report = run_config(&path);
        assert_eq!(report.outcome, Outcome::Pass, "{report}");
    }
}

#[test]
fn expect_not_fails_when_the_pattern_appears() {
    let dir = tempfile::tempdir().unwrap();
    let steps = "[console]\nbanner = [\"echo: ready\"]\n\
        [[console.steps]]\nsend_line = \"forbidden word\"\n\
        [[console.steps]]\nexpect_not = \"forbidden\"\ntimeout = \"5s\"\n";
    let path = selftest_config(dir.path(), "expect-not", Arch::X86_64, "echo", steps);
    let report = run_config(&path);
    let Outcome::Fail { reason } = &report.outcome else {
        panic!("expected Fail, got {report}");
    };
    assert!(reason.contains("expect_not /forbidden/"), "{reason}");
}

#[test]
fn allowed_lines_do_not_fail() {
    let dir = tempfile::tempdir().unwrap();
    let path = selftest_config(
        dir.path(),
        "allowed",
        Arch::Aarch64,
        "panic 1",
        "[console]\nallow = [\"deliberate panic\"]\nsuccess = \"panicked at\"\n",
    );
    // The panic line is allowed, so it may satisfy the success pattern instead.
    assert_eq!(run_config(&path).outcome, Outcome::Pass);
}

#[test]
fn flood_keeps_every_line_in_the_log_and_a_bounded_tail() {
    let dir = tempfile::tempdir().unwrap();
    let path = selftest_config(
        dir.path(),
        "flood",
        Arch::Aarch64,
        "flood 1",
        "[console]\nbanner = [\"flood: done\"]\n[timeouts]\ntotal = \"120s\"\n",
    );
    let report = run_config(&path);
    assert_eq!(report.outcome, Outcome::Pass, "{report}");
    assert!(report.console_bytes >= 1024 * 1024, "{report}");
    assert!(report.tail.len() <= 40);
    let log = std::fs::read_to_string(&report.log_path).unwrap();
    let flood_lines = log.lines().filter(|l| l.contains("] flood ")).count();
    assert!(
        flood_lines >= 16_000,
        "{flood_lines} flood lines in the log"
    );
}

#[test]
fn missing_qemu_binary_is_infra_with_install_hint() {
    let dir = tempfile::tempdir().unwrap();
    let path = selftest_config(dir.path(), "no-qemu", Arch::Aarch64, "banner", "");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "[qemu]\n",
        "[qemu]\nbinary = \"/nonexistent/bin/qemu-system-aarch64\"\n",
    );
    std::fs::write(&path, text).unwrap();
    let report = run_config(&path);
    assert_eq!(report.outcome.class(), Some(ErrorClass::Infra), "{report}");
    let reason = report.outcome.explained();
    assert!(
        reason.contains("qemu-system-aarch64` not found"),
        "{reason}"
    );
    assert!(
        reason.contains("apt-get install -y --no-install-recommends qemu-system-arm"),
        "{reason}"
    );
}

/// A path in the config that does not exist is a mistake in the test definition: FAIL, never
/// retried as an infrastructure problem.
#[test]
fn missing_kernel_file_fails_naming_the_option() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nokernel.toml");
    std::fs::write(
        &path,
        "arch = \"riscv64\"\naccel = \"tcg\"\n[qemu]\nkernel = \"does/not/exist.elf\"\n",
    )
    .unwrap();
    let report = run_config(&path);
    assert_eq!(report.outcome.class(), Some(ErrorClass::Fail), "{report}");
    let reason = report.outcome.explained();
    assert!(
        reason.contains("`-kernel` file") && reason.contains("does/not/exist.elf"),
        "{reason}"
    );
}

#[test]
fn forced_kvm_on_a_broken_host_is_infra_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let path = selftest_config(dir.path(), "kvm", Arch::X86_64, "banner", "");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("accel = \"tcg\"", "accel = \"kvm\"");
    std::fs::write(&path, text).unwrap();
    let qemu = vmharness::qemu::find_binary("qemu-system-x86_64").unwrap();
    let cache = tempfile::tempdir().unwrap();
    let probe = vmharness::accel::ProbeSpec {
        qemu: &qemu,
        machine: "q35",
        cpu: "host",
        cache_dir: cache.path(),
        timeout: vmharness::accel::DEFAULT_PROBE_TIMEOUT,
        temp_dir: cache.path(),
    };
    let kvm = vmharness::accel::kvm_usable(Arch::X86_64, &probe);
    let report = run_config(&path);
    match kvm {
        // On a host with working KVM the same config must simply pass.
        Ok(()) => assert_eq!(report.outcome, Outcome::Pass, "{report}"),
        Err(why) => {
            assert!(
                report.outcome.is_infra(),
                "KVM unusable: {why}, got {report}"
            );
            let reason = report.outcome.explained();
            assert!(reason.contains("KVM is unusable on this host"), "{reason}");
            assert!(report.elapsed < Duration::from_secs(60), "{report}");
        }
    }
}

#[test]
fn auto_accel_falls_back_to_tcg_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let path = selftest_config(dir.path(), "auto", Arch::Aarch64, "banner", "");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("accel = \"tcg\"", "accel = \"auto\"");
    std::fs::write(&path, text).unwrap();
    let report = run_config(&path);
    assert_eq!(report.outcome, Outcome::Pass, "{report}");
    assert_eq!(report.accel, Some(vmharness::accel::Accel::Tcg));
    assert!(
        report.notes.iter().any(|n| n
            .to_string()
            .contains("using TCG because the guest is aarch64")),
        "{:?}",
        report.notes
    );
    assert!(!report.qemu_command.unwrap().contains("-cpu host"));
}

/// QEMU refusing an option of the config is the test definition's mistake: FAIL, not INFRA
/// (which would be retried), whatever the option.
#[test]
fn qemu_rejecting_the_config_is_a_failure_not_infra() {
    let dir = tempfile::tempdir().unwrap();
    for (name, setting) in [
        ("machine", "machine = \"nonexistent\"\n"),
        ("cpu", "cpu = \"nosuchcpu\"\n"),
        ("smp", "smp = 100000\n"),
        ("device", "args = [\"-device\", \"nosuchdev\"]\n"),
    ] {
        let path = selftest_config(
            dir.path(),
            &format!("rejected-{name}"),
            Arch::Riscv64,
            "banner",
            "",
        );
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("[qemu]\n", &format!("[qemu]\n{setting}"));
        std::fs::write(&path, text).unwrap();
        let report = run_config(&path);
        assert_eq!(
            report.outcome.class(),
            Some(ErrorClass::Fail),
            "{name}: {report}"
        );
        assert!(
            report
                .outcome
                .detail()
                .contains("QEMU rejected its command line"),
            "{name}: {report}"
        );
    }
}

/// A QEMU the kernel will not execute is reported with the errno and what to do, never as an
/// abort of the forked child ("IO Safety violation ... killed by signal 6").
#[test]
fn unexecutable_qemu_is_reported_with_its_errno() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("qemu-system-x86_64");
    std::fs::write(&script, "#!/nonexistent/interpreter\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let huge_append = format!("append = \"{}\"\n", "x".repeat(200 * 1024));
    let bad_binary = format!("binary = {:?}\n", script.display().to_string());
    for (name, setting, class, words) in [
        (
            "too-long",
            huge_append.as_str(),
            ErrorClass::Fail,
            "Argument list too long",
        ),
        (
            "no-interpreter",
            bad_binary.as_str(),
            ErrorClass::Infra,
            "interpreter does not exist",
        ),
    ] {
        let path = selftest_config(dir.path(), name, Arch::X86_64, "banner", "");
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("[qemu]\n", &format!("[qemu]\n{setting}"));
        std::fs::write(&path, text).unwrap();
        let report = run_config(&path);
        assert_eq!(report.outcome.class(), Some(class), "{name}: {report}");
        let text = report.outcome.explained();
        assert!(
            text.contains("cannot execute") && text.contains(words),
            "{name}: {text}"
        );
        assert!(!text.contains("signal 6"), "{name}: {text}");
    }
}

/// Runs a config whose "QEMU" is a shell script printing `output` (printf format) and exiting 0.
fn run_fake_qemu(name: &str, output: &str, console: &str) -> vmharness::outcome::Report {
    let dir = tempfile::tempdir().unwrap();
    let rest = format!("[console]\n{console}\n[timeouts]\ntotal = \"60s\"\n");
    run_config(&support::fake_qemu_config(dir.path(), name, output, &rest))
}

/// 2 MiB without a newline, then the banner: the 16 KiB line cap must not decide whether it
/// matches, wherever the cut falls.
#[test]
fn a_banner_after_a_huge_unterminated_line_is_found() {
    // The banner is 16 bytes: these put the cut after its 1st, 8th and 15th byte.
    for extra in [0, 16 * 1024 - 1, 16 * 1024 - 8, 16 * 1024 - 15] {
        let output = format!(
            "head -c {} /dev/zero | tr '\\0' x; printf 'vmharness banner\\n'",
            2 * 1024 * 1024 + extra
        );
        let report = run_fake_qemu("long-line", &output, "banner = [\"vmharness banner\"]");
        assert!(report.outcome.is_pass(), "extra {extra}: {report}");
    }
}

/// A KTAP diagnostic line longer than the line cap, whose piece after the cut reads like a
/// result: no sub-result is invented, and the run passes with its one real result.
#[test]
fn a_cut_line_invents_no_ktap_result() {
    let output = "printf 'KTAP version 1\\n1..1\\n# '; head -c 16382 /dev/zero | tr '\\0' x; \
                  printf 'not ok 2 bogus\\nok 1 real\\n'";
    let report = run_fake_qemu("ktap-cut", output, "[results]\nktap = true");
    assert!(report.outcome.is_pass(), "{report}");
    let names: Vec<&str> = report
        .results
        .as_ref()
        .unwrap()
        .cases
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["real"], "{report}");
}

/// An escape sequence that never ends used to swallow the rest of the console ("console: (no
/// output)").
#[test]
fn an_unterminated_escape_hides_nothing_after_its_line() {
    for opener in ["\\033]0;title", "\\033P1", "\\033[12;"] {
        let output = format!("printf 'boot{opener} never ended\\nbanner: ok\\nlast line\\n'");
        let report = run_fake_qemu("osc", &output, "banner = [\"banner: ok\"]");
        assert!(report.outcome.is_pass(), "{opener}: {report}");
        assert_eq!(
            report.tail.last().map(String::as_str),
            Some("last line"),
            "{report}"
        );
    }
}

/// Two runs of one test at once (two terminals) each keep their own log and record, and
/// `latest` names one of them.
#[test]
fn concurrent_runs_of_one_test_keep_both_logs() {
    let dir = tempfile::tempdir().unwrap();
    let path = selftest_config(
        dir.path(),
        "twice",
        Arch::Aarch64,
        "banner",
        "[console]\nbanner = [\"selftest: ok\"]\n",
    );
    let loaded = vmharness::config::load(&path).unwrap();
    let mut settings = support::settings();
    settings.target_dir = dir.path().join("target");
    let reports: Vec<_> = std::thread::scope(|scope| {
        let runs: Vec<_> = (0..2)
            .map(|_| {
                let (loaded, settings) = (&loaded, settings.clone());
                scope.spawn(move || {
                    let resolver = vmharness::run::Resolver::from_settings(&settings);
                    let options = vmharness::run::RunOptions {
                        settings: Some(settings),
                        ..Default::default()
                    };
                    vmharness::run::run(loaded, &resolver, options)
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert_ne!(reports[0].log_path, reports[1].log_path);
    for report in &reports {
        assert!(report.outcome.is_pass(), "{report}");
        let log = std::fs::read_to_string(&report.log_path).unwrap();
        assert!(
            log.contains("selftest: ok"),
            "{}",
            report.log_path.display()
        );
    }
    let latest = std::fs::canonicalize(
        vmharness::run::logs::latest_dir(&settings.logs_dir(), "twice").join("console.log"),
    )
    .unwrap();
    assert!(reports
        .iter()
        .any(|r| std::fs::canonicalize(&r.log_path).unwrap() == latest));
}

/// A console log that cannot be written (a full disk) is an infrastructure failure naming the
/// file, never a pass with a truncated log.
#[test]
fn an_unwritable_console_log_is_infra() {
    let dir = tempfile::tempdir().unwrap();
    let path = selftest_config(
        dir.path(),
        "full-disk",
        Arch::Aarch64,
        "banner",
        "[console]\nbanner = [\"selftest: ok\"]\n",
    );
    let loaded = vmharness::config::load(&path).unwrap();
    let log_dir = dir.path().join("logs");
    std::fs::create_dir(&log_dir).unwrap();
    std::os::unix::fs::symlink("/dev/full", log_dir.join("console.log")).unwrap();
    let settings = support::settings();
    let resolver = vmharness::run::Resolver::from_settings(&settings);
    let options = vmharness::run::RunOptions {
        settings: Some(settings),
        log_dir: Some(log_dir.clone()),
        ..Default::default()
    };
    let report = vmharness::run::run(&loaded, &resolver, options);
    assert!(report.outcome.is_infra(), "{report}");
    let text = report.outcome.explained();
    assert!(
        text.contains("console.log") && text.contains("No space left on device"),
        "{text}"
    );
    // The log was created; writing it failed part way.
    assert!(
        text.contains("write failed: console log") && text.contains("(disk full?)"),
        "{text}"
    );
    assert!(!text.contains("cannot create"), "{text}");
}

const FULL_DISK_CHILD_ENV: &str = "VMHARNESS_FULL_DISK_CHILD_DIR";

/// Runs a config with a `[disk]` whose temp dir (`$CARGO_TARGET_DIR`) is a tiny tmpfs; writes
/// the report into the dir it is given.
#[test]
fn child_mode_builds_a_disk_on_a_full_tmpfs() {
    let Some(dir) = std::env::var_os(FULL_DISK_CHILD_ENV) else {
        return; // only does something when started by the test below
    };
    let dir = std::path::Path::new(&dir);
    let source = dir.join("payload.bin");
    let bytes: Vec<u8> = (0..2u32 << 20).map(|i| (i % 251) as u8 + 1).collect();
    std::fs::write(&source, bytes).unwrap();
    let rest = format!(
        "[console]\nbanner = [\"selftest: ok\"]\n[disk]\nsize = \"40M\"\n\
         [[disk.entries]]\ndest = \"/payload.bin\"\nsource = {:?}\n",
        source.display().to_string()
    );
    let path = selftest_config(dir, "full-tmpfs", Arch::X86_64, "banner", &rest);
    let report = run_config(&path);
    std::fs::write(dir.join("report.txt"), report.to_string()).unwrap();
}

/// The disk image's writes fail part way (the temp dir's file system fills up): the report
/// says the write failed, where, and that the disk may be full, not that a file could not be
/// created. The tiny file system is a tmpfs in a private mount namespace.
#[test]
fn a_disk_image_that_fills_the_disk_says_the_write_failed() {
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("tiny");
    std::fs::create_dir(&mount).unwrap();
    let settings = support::settings();
    let output = std::process::Command::new("unshare")
        .args([
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            r#"mount -t tmpfs -o size=256k tmpfs "$1" && exec "$2" child_mode_builds_a_disk_on_a_full_tmpfs --exact --nocapture"#,
            "sh",
        ])
        .arg(&mount)
        .arg(std::env::current_exe().unwrap())
        .env(FULL_DISK_CHILD_ENV, dir.path())
        .env("CARGO_TARGET_DIR", &mount)
        .env("VMHARNESS_CACHE", &settings.artifacts.cache_dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = std::fs::read_to_string(dir.path().join("report.txt")).unwrap();
    assert!(text.starts_with("INFRA "), "{text}");
    assert!(
        text.contains("write failed: image") && text.contains("(disk full?)"),
        "{text}"
    );
    assert!(text.contains("No space left on device"), "{text}");
    assert!(text.contains("disk.img"), "{text}");
    assert!(!text.contains("cannot create"), "{text}");
}

/// A flood beyond the log's cap keeps its head and tail and a marker, and every line is
/// still judged: the success pattern is the flood's last line.
#[test]
fn a_capped_console_log_keeps_head_tail_and_the_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let path = selftest_config(
        dir.path(),
        "flood-capped",
        Arch::Aarch64,
        "flood 2",
        "[console]\nsuccess = \"flood: done\"\n[timeouts]\ntotal = \"120s\"\n",
    );
    let mut settings = support::settings();
    settings.console_log_limit = 256 << 10;
    let report = support::run_config_with(&path, settings);
    assert!(report.outcome.is_pass(), "{report}");
    let log = std::fs::read_to_string(&report.log_path).unwrap();
    assert!(log.len() < (256 << 10) + 1024, "{} bytes", log.len());
    assert!(
        log.contains("vmharness selftest aarch64"),
        "the head is kept"
    );
    assert!(log.contains("flood: done"), "the tail is kept");
    assert!(log.contains("lines ("), "no marker of what was dropped");
}

/// Two trials that need the KVM answer at once run the probe guest once; the other waits for
/// its answer (each used to pay the probe's seconds and print the note).
#[test]
fn concurrent_kvm_checks_probe_once() {
    let qemu = vmharness::qemu::find_binary("qemu-system-x86_64").unwrap();
    let cache = tempfile::tempdir().unwrap();
    let answers: Vec<Result<(), String>> = std::thread::scope(|scope| {
        let checks: Vec<_> = (0..3)
            .map(|_| {
                let (qemu, cache) = (&qemu, cache.path());
                scope.spawn(move || {
                    let probe = vmharness::accel::ProbeSpec {
                        qemu,
                        machine: "q35",
                        cpu: "host",
                        cache_dir: cache,
                        timeout: vmharness::accel::DEFAULT_PROBE_TIMEOUT,
                        temp_dir: cache,
                    };
                    vmharness::accel::kvm_usable(Arch::X86_64, &probe)
                })
            })
            .collect();
        checks.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let probes = std::fs::read_to_string(cache.path().join(vmharness::accel::PROBE_HISTORY))
        .unwrap_or_default()
        .lines()
        .count();
    let kvm_openable = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    // Without a usable /dev/kvm no probe is needed at all.
    assert_eq!(probes, usize::from(kvm_openable), "{answers:?}");
    assert!(
        answers.windows(2).all(|w| w[0].is_ok() == w[1].is_ok()),
        "{answers:?}"
    );
}

/// The standalone-NimbOS path on riscv64, for real: OpenSBI jumps to our stub at 0x80200000,
/// the stub jumps to 0x90200000, where `[[qemu.loader]]` put a raw payload (built here) that
/// prints through the SBI console and shuts the machine down.
#[test]
fn the_riscv64_stub_reaches_a_raw_image_loaded_at_0x90200000() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("payload.S");
    std::fs::write(
        &source,
        "\t.section .text\n\t.globl _start\n_start:\n\tlla s0, msg\n1:\tlbu a0, 0(s0)\n\tbeqz a0, 2f\n\tli a7, 1\n\tecall\n\taddi s0, s0, 1\n\tj 1b\n2:\tli a7, 0x53525354\n\tli a6, 0\n\tli a0, 0\n\tli a1, 0\n\tecall\n3:\twfi\n\tj 3b\nmsg:\t.asciz \"payload at 0x90200000 runs\\n\"\n",
    )
    .unwrap();
    let object = dir.path().join("payload.o");
    let raw = dir.path().join("payload.bin");
    let ok = |mut command: std::process::Command| {
        let status = command
            .status()
            .expect("clang and ld.lld (cargo xtask setup installs them)");
        assert!(status.success(), "{command:?}");
    };
    let mut clang = std::process::Command::new("clang");
    clang
        .args([
            "--target=riscv64-unknown-none-elf",
            "-march=rv64gc",
            "-mabi=lp64d",
            "-c",
        ])
        .arg(&source)
        .arg("-o")
        .arg(&object);
    ok(clang);
    let mut lld = std::process::Command::new("ld.lld");
    lld.args(["-Ttext=0x90200000", "--oformat=binary", "-o"])
        .arg(&raw)
        .arg(&object);
    ok(lld);
    let path = dir.path().join("stub.toml");
    std::fs::write(
        &path,
        format!(
            "arch = \"riscv64\"\naccel = \"tcg\"\n[qemu]\nkernel = \"artifact:nimbos-stub-riscv64/stub.elf\"\nmemory = \"512M\"\n\
             [[qemu.loader]]\nfile = {:?}\naddr = 0x90200000\n[console]\nbanner = [\"payload at 0x90200000 runs\"]\n[timeouts]\ntotal = \"60s\"\n",
            raw.display().to_string()
        ),
    )
    .unwrap();
    let report = run_config(&path);
    assert!(report.outcome.is_pass(), "{report}");
    let command = report.qemu_command.unwrap_or_default();
    assert!(
        command.contains("loader,file=") && command.contains("addr=0x90200000,force-raw=on"),
        "{command}"
    );
}

/// The selftest guests print KTAP (`ktap` scenario) on every arch: the suite's failure, the
/// skip, and the case cut off when the run ends are sub-results, and they fail the trial.
#[test]
fn selftest_ktap_is_reported_case_by_case_on_every_arch() {
    let dir = tempfile::tempdir().unwrap();
    for arch in Arch::ALL {
        let path = selftest_config(
            dir.path(),
            &format!("ktap-{arch}"),
            arch,
            "ktap",
            "[console]\nsuccess = \"# hang: started\"\n[results]\nktap = true\n",
        );
        let report = run_config(&path);
        let results = report.results.as_ref().expect("sub-results");
        let summary: Vec<String> = results
            .cases
            .iter()
            .map(|c| format!("{} {}", c.status.label(), c.name))
            .collect();
        assert_eq!(
            summary,
            [
                "PASS boot",
                "PASS console.write",
                "SKIP console.read",
                "FAIL console.flush",
                "CRASHED #3"
            ],
            "{arch}: {report}"
        );
        let Outcome::Fail { reason } = &report.outcome else {
            panic!("{arch}: expected a Fail: {report}");
        };
        assert!(
            reason.starts_with("2 of 5 sub-results failed"),
            "{arch}: {reason}"
        );
        assert!(
            report
                .to_string()
                .contains("| # console.flush: expected 0, got 1"),
            "{report}"
        );
    }
}

/// A target dir deeper than a unix socket path may be (108 bytes): a hang still shows what the
/// vCPU was doing, read over QMP.
#[test]
fn a_hang_under_a_deep_target_dir_still_shows_the_vcpu() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = support::settings();
    settings.target_dir = dir
        .path()
        .join("a".repeat(60))
        .join("b".repeat(60))
        .join("target");
    let path = selftest_config(
        dir.path(),
        "deep-hang",
        Arch::X86_64,
        "hang",
        "[console]\nsuccess = \"never printed\"\n[timeouts]\ntotal = \"2s\"\n",
    );
    let report = support::run_config_with(&path, settings);
    assert_eq!(report.outcome.label(), "TIMEOUT", "{report}");
    assert!(
        matches!(&report.vcpus, Some(Ok(cpus)) if !cpus.is_empty()),
        "{report}"
    );
}

/// A hang is reported with what the vCPU was doing: stopped over QMP, its PC symbolized to the
/// function it waits in (the selftest ELF is its own symbol file), on every arch.
#[test]
fn a_hang_shows_the_vcpu_in_the_function_it_waits_in() {
    let dir = tempfile::tempdir().unwrap();
    for arch in Arch::ALL {
        let path = selftest_config(
            dir.path(),
            &format!("hang-{arch}"),
            arch,
            "hang",
            "[console]\nsuccess = \"never printed\"\n[timeouts]\ntotal = \"2s\"\n",
        );
        let report = run_config(&path);
        assert_eq!(report.outcome.label(), "TIMEOUT", "{report}");
        let cpus = match &report.vcpus {
            Some(Ok(cpus)) => cpus,
            other => panic!("{arch}: no vCPU state: {other:?}\n{report}"),
        };
        let cpu = &cpus[0];
        let symbol = cpu.symbol.as_deref().unwrap_or_default();
        assert!(
            symbol.starts_with("plat_halt"),
            "{arch}: {symbol:?}\n{report}"
        );
        assert_eq!(
            cpu.activity,
            vmharness::run::vcpu::Activity::Waiting,
            "{arch}\n{report}"
        );
        assert!(report.to_string().contains("vcpu 0:   pc 0x"), "{report}");
    }
}

/// A panic that prints code addresses gets them symbolized in its crash block, and the block
/// is labelled `panic`, on every arch.
#[test]
fn panic_addresses_are_symbolized_in_the_crash_block() {
    let dir = tempfile::tempdir().unwrap();
    for arch in Arch::ALL {
        let path = selftest_config(
            dir.path(),
            &format!("panic-sym-{arch}"),
            arch,
            "panic 1",
            "",
        );
        let report = run_config(&path);
        assert_eq!(report.outcome.label(), "FAIL", "{report}");
        let crash = report
            .crash
            .as_ref()
            .unwrap_or_else(|| panic!("{arch}: no crash block\n{report}"));
        assert_eq!(crash.kind, "panic");
        assert_eq!(crash.lines.len(), 3, "{arch}: {crash:?}");
        let symbols: Vec<&str> = crash.symbols.iter().map(|(_, s)| s.as_str()).collect();
        assert!(
            symbols
                .iter()
                .any(|s| s.starts_with("scenario_panic (./selftest.c:")),
            "{arch}: {symbols:?}"
        );
        assert!(
            symbols.iter().any(|s| s.starts_with("plat_halt (./")),
            "{arch}: {symbols:?}"
        );
        assert!(
            report
                .to_string()
                .contains(" is scenario_panic (./selftest.c:"),
            "{report}"
        );
        let loaded = vmharness::config::load(&path).unwrap();
        let record = vmharness::suite::ResultRecord::of(&report, &loaded);
        let recorded = record.crash.expect("[crash] in result.toml");
        assert_eq!((recorded.kind.as_str(), recorded.lines.len()), ("panic", 3));
        assert!(
            recorded.symbols.iter().any(|s| s.contains("is plat_halt")),
            "{recorded:?}"
        );
        assert_eq!(record.vcpus.len(), 1, "the vCPU is recorded too");
    }
}

/// A guest that met every expectation but does not exit, where the config expects an exit, is
/// told apart from a plain timeout, with the vCPU state.
#[test]
fn pass_then_hang_is_its_own_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let path = selftest_config(
        dir.path(),
        "no-exit",
        Arch::Aarch64,
        "hang",
        "[console]\nbanner = [\"vmharness selftest aarch64\"]\n[timeouts]\ntotal = \"2s\"\n",
    );
    let report = run_config(&path);
    let Outcome::Timeout { which } = &report.outcome else {
        panic!("expected a timeout: {report}");
    };
    assert!(matches!(which, TimeoutKind::NoExit { .. }), "{which:?}");
    let text = report.to_string();
    assert!(
        text.contains("all expectations met at ")
            && text.contains("QEMU did not exit within 2.000s"),
        "{text}"
    );
    assert!(matches!(report.vcpus, Some(Ok(_))), "{text}");
}

/// A crash block is kept when QEMU has already exited by the verdict (no vCPUs to read then).
#[test]
fn a_crash_block_survives_a_guest_that_exited() {
    let output = "printf 'booting\\nWARNING: CPU: 0 PID: 1 at mm/x.c:9 f+0x1\\nCall trace:\\n ---[ end trace 0 ]---\\n'";
    let report = run_fake_qemu("warned", output, "banner = [\"never printed\"]");
    assert_eq!(report.outcome.label(), "FAIL", "{report}");
    let crash = report.crash.as_ref().expect("crash block");
    assert_eq!(
        (crash.kind, crash.lines.len(), crash.complete),
        ("warning", 3, true),
        "{crash:?}"
    );
    assert!(report.vcpus.is_none(), "{report}");
}

/// A verdict on the unfinished last line (a prompt) used to leave that line out of
/// `console.log` and the report's tail: QEMU was killed before the line ended, and the
/// unfinished bytes were dropped with it.
#[test]
fn the_unfinished_line_a_verdict_matched_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let rest = "[console]\nsuccess = \"^login-prompt> $\"\n[timeouts]\ntotal = \"30s\"\n";
    let body = "printf 'booted\\nlogin-prompt> '; sleep 20";
    let config = support::fake_qemu_config(dir.path(), "prompt", body, rest);
    let report = run_config(&config);
    assert!(report.outcome.is_pass(), "{report}");
    let log = std::fs::read_to_string(&report.log_path).unwrap();
    let last = log.lines().last().unwrap_or_default();
    assert!(last.ends_with("] login-prompt> "), "{log}");
    assert_eq!(
        report.tail.last().map(String::as_str),
        Some("login-prompt> ")
    );
}

/// Every file input must be a regular file: `/dev/zero` as the kernel used to be read whole
/// into memory when a failing run symbolized it, a FIFO hung QEMU past `total`, a directory
/// was INFRA (retried). Each is a FAIL located at its key, found before anything opens it;
/// only a disk entry's source may be a directory (it is copied as a tree).
#[test]
fn special_files_as_inputs_fail_at_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    let directory = dir.path().join("tree");
    std::fs::create_dir(&directory).unwrap();
    std::fs::write(directory.join("a.txt"), "a").unwrap();
    let kernel = "kernel = \"artifact:selftest-x86_64/selftest.elf\"\n";
    let specials = [
        ("/dev/zero".to_string(), "a character device"),
        (fifo.display().to_string(), "a FIFO"),
        (directory.display().to_string(), "a directory"),
    ];
    for (key, directory_ok) in [
        ("kernel", false),
        ("initrd", false),
        ("bios", false),
        ("pflash", false),
        ("symbols", false),
        ("loader", false),
        ("disk", true),
        ("args", false),
    ] {
        for (special, kind) in &specials {
            let qemu = match key {
                "kernel" => format!("kernel = {special:?}\n"),
                "pflash" => format!("{kernel}pflash = [{special:?}]\n"),
                "loader" => {
                    format!("{kernel}[[qemu.loader]]\nfile = {special:?}\naddr = 0x4000000\n")
                }
                "disk" => format!(
                    "{kernel}[disk]\n[[disk.entries]]\ndest = \"/x/\"\nsource = {special:?}\n"
                ),
                "args" => format!("{kernel}args = [\"-initrd\", {special:?}]\n"),
                _ => format!("{kernel}{key} = {special:?}\n"),
            };
            let text = format!(
                "arch = \"x86_64\"\naccel = \"tcg\"\n[qemu]\n{qemu}[console]\nbanner = [\"selftest: ok\"]\n[timeouts]\ntotal = \"60s\"\n"
            );
            // Tables after `[console]` would land in it: put `[console]` first for those.
            let text = match key {
                "loader" | "disk" => format!(
                    "arch = \"x86_64\"\naccel = \"tcg\"\n[console]\nbanner = [\"selftest: ok\"]\n[timeouts]\ntotal = \"60s\"\n[qemu]\n{qemu}"
                ),
                _ => text,
            };
            let path = dir.path().join("t.toml");
            std::fs::write(&path, &text).unwrap();
            let report = run_config(&path);
            let case = format!("{key} = {special}");
            if directory_ok && *kind == "a directory" {
                assert!(report.outcome.is_pass(), "{case}: {report}");
                continue;
            }
            assert_eq!(
                report.outcome.class(),
                Some(ErrorClass::Fail),
                "{case}: {report}"
            );
            let reason = report.outcome.explained();
            assert!(
                reason.contains(&format!("{kind}, not a regular file")),
                "{case}: {reason}"
            );
            // Located at the value (the typed keys; `args` is one list for every word).
            let quoted = format!("{special:?}");
            let (line, text_line) = text
                .lines()
                .enumerate()
                .find(|(_, line)| line.contains(&quoted))
                .unwrap();
            let column = match key {
                "args" => text_line.find('[').unwrap(),
                _ => text_line.find(&quoted).unwrap(),
            };
            let location = format!("{}:{}:{}: ", path.display(), line + 1, column + 1);
            assert!(
                reason.starts_with(&location),
                "{case}: {location}: {reason}"
            );
        }
    }
}

/// `-semihosting` gives the guest the host's files (relative to QEMU's working directory):
/// only a config that asks for the exit device (`qemu.exit_device = true`, the selftest
/// guests) gets it. No other aarch64 config does, U-Boot and Linux included.
#[test]
fn semihosting_only_where_a_config_asks_for_it() {
    use vmharness::plan::Plan;
    use vmharness::qemu::Accel;
    let settings = support::settings();
    let configs = settings.configs_dir();
    let argv = |loaded: &vmharness::config::LoadedConfig| {
        let plan = Plan::new(loaded, &settings).unwrap();
        let path = |used: &vmharness::plan::InputUse| {
            let named = plan.inputs.iter().any(|input| &input.used_as == used);
            named.then(|| "/input".into())
        };
        let spec = vmharness::qemu::QemuSpec::from_plan(
            &plan,
            "qemu".into(),
            Accel::Tcg,
            None,
            &path,
            None,
        );
        spec.argv().to_shell_line()
    };
    let mut seen = Vec::new();
    for path in vmharness::suite::config_files(&configs).unwrap() {
        let loaded = vmharness::config::load(&path).unwrap();
        if loaded.config.arch != Arch::Aarch64 {
            continue;
        }
        let asked = loaded.config.qemu.exit_device == Some(true);
        let argv = argv(&loaded);
        let semihosting = argv.split(' ').any(|word| word == "-semihosting");
        assert_eq!(semihosting, asked, "{}: {argv}", loaded.name);
        seen.push((loaded.name, asked));
    }
    for (name, asked) in [
        ("uboot-aarch64", false),
        ("linux-aarch64", false),
        ("nimbos-aarch64", false),
        ("selftest-aarch64", true),
        ("selftest-echo-aarch64", true),
    ] {
        assert!(
            seen.contains(&(name.to_string(), asked)),
            "{name}: {seen:?}"
        );
    }
    // The selftest guest exits through semihosting: with it, it passes for real; without it,
    // it says so (QEMU refused the call) and cannot exit.
    // Run from a copy: run_config logs beside the config, and vm-configs/ is source.
    let dir = tempfile::tempdir().unwrap();
    let selftest = dir.path().join("selftest-aarch64.toml");
    std::fs::copy(configs.join("selftest-aarch64.toml"), &selftest).unwrap();
    let report = support::run_config(&selftest);
    assert!(report.outcome.is_pass(), "{report}");
    let text = std::fs::read_to_string(&selftest)
        .unwrap()
        .replace("exit_device = true\n", "")
        .replace(
            "[console]\n",
            "[console]\npanic_patterns = [\"semihosting is off\"]\n",
        );
    let without = dir.path().join("plain.toml");
    std::fs::write(&without, text).unwrap();
    let report = support::run_config(&without);
    assert!(
        matches!(&report.outcome, Outcome::Fail { reason } if reason.contains("semihosting is off")),
        "{report}"
    );
    let command = report.qemu_command.unwrap_or_default();
    assert!(
        !command.split(' ').any(|word| word == "-semihosting"),
        "{command}"
    );
}
