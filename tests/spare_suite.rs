//! The suite with one trial thread starts the next case's QEMU early (issue 21): a config's
//! later cases say so in their `result.toml`, and no QEMU of the suite outlives it.

use std::path::Path;
use std::process::Output;

mod support;

use vmharness::arch::Arch;
use vmharness::suite::ResultRecord;

/// Runs `cargo test --test boot -- <args>` over the configs of `root`, with the spare QEMU's
/// defaults (not under nextest, not turned off).
fn boot(root: &Path, args: &[&str]) -> Output {
    support::boot_suite(root, args)
        .env_remove("NEXTEST")
        .env_remove("NEXTEST_RUN_ID")
        .env_remove("VMHARNESS_SPARE_QEMU")
        .output()
        .expect("run cargo test --test boot")
}

/// Command lines of live processes that contain `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
        .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
        .filter(|line| line.contains(needle))
        .collect()
}

#[test]
fn one_trial_thread_restores_later_cases_in_a_qemu_started_early_and_leaves_none() {
    let root = tempfile::tempdir().unwrap();
    let configs = root.path().join("vm-configs");
    std::fs::create_dir(&configs).unwrap();
    // A name no other run shares: QEMU's `-name` finds this suite's processes.
    let name = format!("spare-suite-{}", std::process::id());
    let kernel = support::selftest_elf(Arch::Aarch64);
    let cases: String = ["one", "two", "three"]
        .iter()
        .map(|case| {
            format!(
                "[[case]]\nname = \"{case}\"\nsteps = [{{ send_line = \"{case}\" }}, {{ expect = \"^echo: {case}$\" }}]\n"
            )
        })
        .collect();
    std::fs::write(
        configs.join(format!("{name}.toml")),
        format!(
            "arch = \"aarch64\"\naccel = \"tcg\"\n[qemu]\nkernel = {kernel:?}\nexit_device = true\n\
             args = [\"-fw_cfg\", \"name=opt/vmharness/scenario,string=echo\", \"-name\", \"{name}\"]\n\
             [console]\nbanner = [\"vmharness selftest\"]\n\
             [ready]\nexpect = \"^echo: ready$\"\nprobe = \"{{token}}\"\nanswer = \"^echo: {{token}}$\"\n\
             {cases}[timeouts]\ntotal = \"30s\"\nstep = \"10s\"\n"
        ),
    )
    .unwrap();

    let output = boot(root.path(), &["--test-threads", "1"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    let left = processes_with(&name);
    assert!(left.is_empty(), "outlived the suite: {left:?}");
    // The spare was killed before the suite exited, not by the kernel after: its temp dir went.
    let temp = root.path().join("target/vmharness/tmp");
    let temp_left: Vec<_> = std::fs::read_dir(&temp)
        .map(|dir| dir.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        temp_left.is_empty(),
        "left in {}: {temp_left:?}",
        temp.display()
    );

    // A root named by hand keeps its logs and states in `<root>/target`.
    let logs = root.path().join("target").join("vmharness").join("logs");
    let mut early = 0;
    for case in ["one", "two", "three"] {
        let result = logs
            .join(format!("{name}::{case}"))
            .join("latest")
            .join(vmharness::suite::record::FILE_NAME);
        let record = ResultRecord::read(&result).unwrap_or_else(|err| panic!("{err}\n{text}"));
        let saved = record
            .notes
            .iter()
            .any(|note| note.starts_with("saved the guest's state at [ready]"));
        let started_early = record
            .notes
            .iter()
            .any(|note| note.contains("in a QEMU started while the case before ran"));
        assert!(saved || started_early, "{case}: {:?}", record.notes);
        early += usize::from(started_early);
    }
    assert_eq!(early, 2, "every case but the one that saved");
}
