//! Snapshots of the failure report for each outcome class, from real runs: PASS, a guest FAIL,
//! TIMEOUT (also one in an untyped assembly label), a FAIL of the test definition, INFRA,
//! UNAVAILABLE and SKIPPED. Times, temp paths and the QEMU binary's directory are redacted;
//! everything else is what a user reads.

mod support;

use std::path::Path;

use support::{run_config, selftest_config};
use vmharness::arch::Arch;

/// Redactions for what differs between runs and machines.
fn snapshot(name: &str, dir: &Path, text: &str) {
    let tmp = regex_escape(&dir.display().to_string());
    let cache = format!(
        r"{}/[a-z0-9_-]+/[0-9a-f]{{64}}",
        regex_escape(
            &support::settings()
                .artifacts
                .cache_dir
                .display()
                .to_string()
        )
    );
    insta::with_settings!({
        filters => vec![
            (tmp.as_str(), "[tmp]"),
            (cache.as_str(), "[cache]/[artifact]"),
            (r"\b\d+\.\d{3}s\b", "[secs]"),
            (r"/\S*/(qemu-system-[a-z0-9_]+)", "[bin]/$1"),
            (r"'stdio,id=vmh-console,signal=off'", "stdio,id=vmh-console,signal=off"),
            (r"key [0-9a-f]{12}", "key [key]"),
            // Where a waiting vCPU rests within its loop differs between samples.
            (r"pc 0x[0-9a-f]+ ([a-z_]+)\+0x[0-9a-f]+ \(([^:]+):\d+\)", "pc [pc] $1+[off] ($2:[line])"),
            (r"sp 0x[0-9a-f]+", "sp [sp]"),
            // Addresses and lines move with the compiler that built the guest; names do not.
            (r"(\|   \d+: )0x[0-9a-f]+", "$1[addr]"),
            (r"= 0x[0-9a-f]+ is ([a-z_]+) \(([^:]+):\d+\)", "= [addr] is $1 ($2:[line])"),
            (r"-qmp '?unix:[^ ']*qmp\.sock,server=on,wait=off'?", "-qmp unix:[tmp]/qmp.sock,server=on,wait=off"),
            (r"(?m)^    \| OpenSBI.*\n", ""),
            (r"state [0-9a-f]{16}", "state [key]"),
            (r"states/[0-9a-f]{64}", "states/[key]"),
            (r"after (a )?\d+\.\d+ s", "after $1[secs]"),
            (r"in \d+\.\d+ s \(state", "in [secs] (state"),
            (r"\d+\.\d MB", "[size] MB"),
            (r"saved \d+ s ago", "saved [n] s ago"),
            (r"\[key\], (exec|file|mapped-ram|template);", "[key], [method];"),
            (r"echo: vmh[0-9a-f]{16}", "echo: [token]"),
        ],
        prepend_module_to_snapshot => false,
    }, {
        insta::assert_snapshot!(name, text);
    });
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '.' | '+' | '*' | '?' | '(' | ')' | '[' | ']' | '{' | '}' | '|' | '^' | '$' | '\\' => {
                format!("\\{c}")
            }
            c => c.to_string(),
        })
        .collect()
}

#[test]
fn report_of_a_pass() {
    let dir = tempfile::tempdir().unwrap();
    let banner =
        "[console]\nbanner = [\"vmharness selftest aarch64\"]\nsuccess = \"selftest: ok\"\n";
    let path = selftest_config(dir.path(), "pass", Arch::Aarch64, "banner", banner);
    let report = run_config(&path);
    assert!(report.outcome.is_pass(), "{report}");
    snapshot("pass", dir.path(), &report.to_string());
}

#[test]
fn report_of_a_guest_panic() {
    let dir = tempfile::tempdir().unwrap();
    let rest = "[timeouts]\ntotal = \"60s\"\n";
    let path = selftest_config(dir.path(), "panic", Arch::Aarch64, "panic 2", rest);
    let report = run_config(&path);
    assert_eq!(report.outcome.label(), "FAIL", "{report}");
    snapshot("fail-guest", dir.path(), &report.to_string());
}

#[test]
fn report_of_a_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let rest = "[console]\nsuccess = \"never printed\"\n[timeouts]\ntotal = \"3s\"\n";
    let path = selftest_config(dir.path(), "timeout", Arch::Aarch64, "hang", rest);
    let report = run_config(&path);
    assert_eq!(report.outcome.label(), "TIMEOUT", "{report}");
    snapshot("timeout", dir.path(), &report.to_string());
}

#[test]
fn report_of_a_config_mistake() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing-kernel.toml");
    std::fs::write(
        &path,
        "arch = \"aarch64\"\naccel = \"tcg\"\n[qemu]\nkernel = \"build/kernel.elf\"\n",
    )
    .unwrap();
    let report = run_config(&path);
    assert_eq!(report.outcome.label(), "FAIL", "{report}");
    snapshot("fail-definition", dir.path(), &report.to_string());
}

/// A misspelled artifact name is the test definition's mistake, with the catalog's suggestion
/// as the cause.
#[test]
fn report_of_a_misspelled_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo.toml");
    std::fs::write(
        &path,
        "arch = \"aarch64\"\naccel = \"tcg\"\n[qemu]\nkernel = \"artifact:selftest-aarch65/selftest.elf\"\n",
    )
    .unwrap();
    let report = run_config(&path);
    assert_eq!(report.outcome.label(), "FAIL", "{report}");
    snapshot("fail-artifact-typo", dir.path(), &report.to_string());
}

#[test]
fn report_of_an_infrastructure_failure() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-qemu.toml");
    std::fs::write(
        &path,
        "arch = \"aarch64\"\naccel = \"tcg\"\n[qemu]\nbinary = \"/nonexistent/qemu-system-aarch64\"\n",
    )
    .unwrap();
    let report = run_config(&path);
    assert_eq!(report.outcome.label(), "INFRA", "{report}");
    snapshot("infra", dir.path(), &report.to_string());
}

#[test]
fn report_of_an_unavailable_input() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("unset.toml");
    std::fs::write(
        &path,
        "arch = \"aarch64\"\naccel = \"tcg\"\n[qemu]\nkernel = \"env:VMHARNESS_TEST_NEVER_SET_KERNEL\"\n",
    )
    .unwrap();
    // As on a developer's machine: CI's VMHARNESS_REQUIRE_ARTIFACTS=1 would make it INFRA.
    let mut settings = support::settings();
    settings.require_artifacts = false;
    let report = support::run_config_with(&path, settings);
    assert_eq!(report.outcome.label(), "UNAVAILABLE", "{report}");
    snapshot("unavailable", dir.path(), &report.to_string());
}

#[test]
fn report_of_an_ignored_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("later.toml");
    std::fs::write(
        &path,
        "arch = \"riscv64\"\nignore = \"waiting for a riscv64 image\"\n",
    )
    .unwrap();
    let report = run_config(&path);
    assert_eq!(report.outcome.label(), "SKIPPED", "{report}");
    snapshot("skipped", dir.path(), &report.to_string());
}

/// The report of guest-reported sub-results: counts in the verdict, the failing cases first
/// with their console lines, recorded values. The "guest" is a script printing KTAP.
#[test]
fn report_of_failing_sub_results() {
    let dir = tempfile::tempdir().unwrap();
    let path = support::fake_qemu_config(
        dir.path(),
        "ktap",
        "printf 'boot took 1234 ms\\nKTAP version 1\\n1..4\\nok 1 alpha\\n# beta: expected 1, got 2\\nnot ok 2 beta\\nok 3 gamma # SKIP no disk\\n# delta starts\\n'",
        "[results]\nktap = true\nrecord = ['boot took (?P<boot_ms>\\d+) ms']\n",
    );
    let script = dir.path().join("fake-qemu");
    let report = run_config(&path);
    assert_eq!(report.outcome.label(), "FAIL", "{report}");
    let text = report.to_string();
    let script_path = script.display().to_string();
    snapshot(
        "sub-results",
        dir.path(),
        &text.replace(&script_path, "[tmp]/fake-qemu"),
    );
}

#[test]
fn report_of_a_pass_then_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let rest = "[console]\nbanner = [\"vmharness selftest aarch64\"]\n[timeouts]\ntotal = \"2s\"\n";
    let path = selftest_config(dir.path(), "no-exit", Arch::Aarch64, "hang", rest);
    let report = run_config(&path);
    assert_eq!(report.outcome.label(), "TIMEOUT", "{report}");
    snapshot("pass-then-hang", dir.path(), &report.to_string());
}

/// A case that fails after starting from the state saved at `[ready]`: the report says where
/// it started, and the failure is the case's own.
#[test]
fn report_of_a_failing_case_from_a_saved_state() {
    let dir = tempfile::tempdir().unwrap();
    let rest = r#"[console]
banner = ["vmharness selftest aarch64"]
[ready]
expect = "^echo: ready$"
probe = "{token}"
answer = "^echo: {token}$"
[[case]]
name = "wrong"
steps = [{ send_line = "four" }, { expect = "^echo: five$", timeout = "1s" }]
"#;
    let path = selftest_config(dir.path(), "echo", Arch::Aarch64, "echo", rest);
    let mut settings = support::settings();
    settings.target_dir = dir.path().join("target");
    let loaded = vmharness::config::load(&path).unwrap();
    let options = vmharness::run::RunOptions {
        settings: Some(settings.clone()),
        log_dir: Some(dir.path().join("logs").join("wrong")),
        ..Default::default()
    };
    let resolver = vmharness::run::Resolver::from_settings(&settings);
    let report = vmharness::run::run_case(&loaded, "wrong", &resolver, options);
    assert_eq!(report.outcome.label(), "TIMEOUT", "{report}");
    snapshot("case-from-saved-state", dir.path(), &report.to_string());
}

/// A guest printing twenty thousand KTAP results with long names full of characters XML
/// escapes: every result is counted, and the verdict, the report, `result.toml` and
/// `junit.xml` stay bounded (the first failures kept, the rest counted).
#[test]
fn sub_results_by_the_thousand_stay_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let awk = r##"awk 'BEGIN {
  printf "KTAP version 1\n1..20000\n"
  long = ""; for (i = 0; i < 100; i++) long = long "\"&<>"
  for (i = 1; i <= 20000; i++) {
    printf "# diagnostic %d %s\n", i, long
    printf "%s %d case_%d_%s\n", (i % 10 == 0 ? "not ok" : "ok"), i, i, long
  }
}'"##;
    let path = support::fake_qemu_config(dir.path(), "many", awk, "[results]\nktap = true\n");
    let report = run_config(&path);
    assert_eq!(report.outcome.label(), "FAIL", "{}", report.outcome);
    let verdict = report.outcome.detail();
    assert!(
        verdict.len() < 8 * 1024,
        "verdict of {} bytes",
        verdict.len()
    );
    assert!(
        verdict.starts_with("2000 of 20000 sub-results failed"),
        "{verdict}"
    );
    let text = report.to_string();
    assert!(text.len() < 128 * 1024, "report of {} bytes", text.len());

    let loaded = vmharness::config::load(&path).unwrap();
    vmharness::suite::write_result(&report, &loaded).unwrap();
    let run_dir = report.log_path.parent().unwrap();
    let record_path = run_dir.join("result.toml");
    let record = vmharness::suite::ResultRecord::read(&record_path).unwrap();
    let counts = record.sub_result_counts.as_ref().expect("counts recorded");
    assert_eq!((counts.passed, counts.failed), (18_000, 2_000));
    assert!(
        record.sub_results.len() <= 11_000,
        "{}",
        record.sub_results.len()
    );
    let size = |name: &str| std::fs::metadata(run_dir.join(name)).unwrap().len();
    assert!(
        size("result.toml") <= 16 << 20,
        "result.toml of {} bytes",
        size("result.toml")
    );
    let junit = std::fs::read_to_string(run_dir.join("junit.xml")).unwrap();
    assert!(
        junit.len() as u64 <= vmharness::suite::record::JUNIT_MAX_BYTES,
        "junit.xml of {} bytes",
        junit.len()
    );
    assert!(junit.contains("not kept"), "{}", &junit[..2000]);
}

/// A guest hanging in assembly after a label without `.type`/`.size` (built here with clang
/// and ld.lld): the timeout report names the label and says the name is the nearest preceding
/// symbol, where it used to show a bare address.
#[test]
fn report_of_a_hang_after_an_untyped_assembly_label() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("hang.S");
    // Prints one line on the PL011 at 0x09000000, then spins at `spin+0x8`.
    std::fs::write(
        &source,
        "\t.text\n\t.globl _start\n\t.type _start, @function\n_start:\n\tldr x0, =0x09000000\n\tadr x1, msg\n1:\tldrb w2, [x1], #1\n\tcbz w2, spin\n\tstrb w2, [x0]\n\tb 1b\n\t.size _start, .-_start\n\
         spin:\n\tnop\n\tnop\n2:\tb 2b\n\t.ltorg\nmsg:\t.asciz \"asm guest up\\n\"\n",
    )
    .unwrap();
    let object = dir.path().join("hang.o");
    let elf = dir.path().join("hang.elf");
    let run = |program: &str, args: &[&std::ffi::OsStr]| {
        let status = std::process::Command::new(program)
            .args(args)
            .status()
            .expect("clang and ld.lld run (cargo xtask setup installs them)");
        assert!(status.success(), "{program} {args:?}: {status}");
    };
    run(
        "clang",
        &[
            "--target=aarch64-unknown-none-elf".as_ref(),
            "-c".as_ref(),
            source.as_os_str(),
            "-o".as_ref(),
            object.as_os_str(),
        ],
    );
    run(
        "ld.lld",
        &[
            "-Ttext=0x40080000".as_ref(),
            "-e".as_ref(),
            "_start".as_ref(),
            object.as_os_str(),
            "-o".as_ref(),
            elf.as_os_str(),
        ],
    );
    let path = dir.path().join("asm-hang.toml");
    std::fs::write(
        &path,
        format!(
            "arch = \"aarch64\"\naccel = \"tcg\"\n[qemu]\nkernel = {:?}\n[console]\nsuccess = \"never printed\"\n[timeouts]\ntotal = \"3s\"\n",
            elf.display().to_string()
        ),
    )
    .unwrap();
    let report = run_config(&path);
    assert_eq!(report.outcome.label(), "TIMEOUT", "{report}");
    snapshot("asm_label_hang", dir.path(), &report.to_string());
}
