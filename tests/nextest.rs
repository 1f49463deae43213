//! The CI model works with the real cargo-nextest: `hash:1/2` and `hash:2/2` together select
//! every test exactly once, and an archived `boot` binary run with `--workspace-remap` reads
//! `vm-configs/` and `guests/` from the remapped copy and writes its logs there.
//!
//! The archive is built by an inner cargo in its own target dir (`target/inner`), so it never
//! waits on the lock of the build that runs this test.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use anyhow::{ensure, Context, Result};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn checked(mut command: Command, what: &str) -> Result<Output> {
    let output = command
        .output()
        .with_context(|| format!("starting {what}"))?;
    ensure!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(output)
}

/// A nextest invocation with no inherited vmharness or target-dir overrides.
fn nextest(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO"));
    command
        .current_dir(dir)
        .arg("nextest")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("VMHARNESS_ROOT")
        .env_remove("NEXTEST_PROFILE");
    command
}

/// The archive of this package's test binaries, built once per test process.
fn archive() -> Result<&'static Path> {
    static ARCHIVE: OnceLock<Result<(tempfile::TempDir, PathBuf), String>> = OnceLock::new();
    let built = ARCHIVE.get_or_init(|| {
        let build = || -> Result<(tempfile::TempDir, PathBuf)> {
            let dir = tempfile::tempdir()?;
            let file = dir.path().join("tests.tar.zst");
            let inner = settings().target_dir.join("inner");
            let mut command = nextest(&root());
            command
                .env("CARGO_TARGET_DIR", &inner)
                .args(["archive", "--package", "vmharness-tests", "--archive-file"])
                .arg(&file);
            checked(command, "cargo nextest archive")?;
            Ok((dir, file))
        };
        build().map_err(|err| format!("{err:#}"))
    });
    match built {
        Ok((_, file)) => Ok(file),
        Err(err) => anyhow::bail!("{err}"),
    }
}

/// `binary-id test-name` of every test `nextest list` selects from the archive.
fn listed(partition: Option<&str>) -> Result<BTreeSet<String>> {
    let mut command = nextest(&std::env::temp_dir());
    command
        // Trials ignored at listing time (e.g. NimbOS offline) are still trials.
        .args([
            "list",
            "--run-ignored",
            "all",
            "--message-format",
            "json",
            "--archive-file",
        ])
        .arg(archive()?)
        .arg("--workspace-remap")
        .arg(root());
    if let Some(partition) = partition {
        command.args(["--partition", partition]);
    }
    let output = checked(command, "cargo nextest list")?;
    let json: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("nextest list JSON")?;
    let suites = json["rust-suites"]
        .as_object()
        .context("no rust-suites in nextest list output")?;
    let mut tests = BTreeSet::new();
    for (binary, suite) in suites {
        let cases = suite["testcases"]
            .as_object()
            .with_context(|| format!("{binary}: no testcases"))?;
        for (name, case) in cases {
            if case["filter-match"]["status"] == "matches" {
                tests.insert(format!("{binary} {name}"));
            }
        }
    }
    Ok(tests)
}

#[test]
fn hash_partitions_cover_every_test_exactly_once() -> Result<()> {
    let full = listed(None)?;
    let first = listed(Some("hash:1/2"))?;
    let second = listed(Some("hash:2/2"))?;
    // The full list really is the trial list: one boot trial per VM config, plus these tests.
    for config in vmharness::suite::config_files(&root().join("vm-configs"))? {
        // tests/nimbos.rs owns the nimbos-* configs, tests/boot.rs every other one; a config
        // with [[case]]s is one trial per case.
        for name in vmharness::suite::trial_names(&config) {
            let binary = if name.starts_with("nimbos-") {
                "nimbos"
            } else {
                "boot"
            };
            ensure!(
                full.contains(&format!("vmharness-tests::{binary} {name}")),
                "trial {name} is not listed: {full:?}"
            );
        }
    }
    ensure!(
        full.contains("vmharness-tests::nextest hash_partitions_cover_every_test_exactly_once"),
        "{full:?}"
    );
    let overlap: Vec<_> = first.intersection(&second).collect();
    ensure!(overlap.is_empty(), "in both partitions: {overlap:?}");
    let union: BTreeSet<String> = first.union(&second).cloned().collect();
    ensure!(
        union == full,
        "partitions miss {:?}",
        full.difference(&union).collect::<Vec<_>>()
    );
    ensure!(
        !first.is_empty() && !second.is_empty(),
        "a hash partition of {} tests came out empty: {first:?} / {second:?}",
        full.len()
    );
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("{}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

#[test]
fn archived_boot_binary_runs_from_a_remapped_workspace() -> Result<()> {
    let copy = tempfile::tempdir()?;
    let copy = copy.path();
    for file in ["Cargo.toml", "Cargo.lock"] {
        std::fs::copy(root().join(file), copy.join(file))?;
    }
    for dir in ["vm-configs", "guests", ".config"] {
        copy_tree(&root().join(dir), &copy.join(dir))?;
    }
    // A config only the copy has: its trial exists only if the binary reads the remapped root.
    let x86 = std::fs::read_to_string(root().join("vm-configs/selftest-x86_64.toml"))?;
    std::fs::write(copy.join("vm-configs/remapped-only.toml"), x86)?;
    let mut configs: BTreeSet<String> = BTreeSet::new();
    let mut with_states = 0;
    for config in vmharness::suite::config_files(&copy.join("vm-configs"))? {
        let name = vmharness::config::test_name(&config);
        // The NimbOS configs belong to the nimbos binary, not the boot binary run here.
        if name.starts_with("nimbos-") {
            continue;
        }
        let names = vmharness::suite::trial_names(&config);
        // Cases of the configs whose arch restores saved states work for share one state.
        if names[0].contains("::") && !vmharness::suite::arch_matches(&config, "riscv64") {
            with_states += 1;
        }
        configs.extend(names);
    }

    // Guest artifacts come from this checkout's cache, as CI points VMHARNESS_CACHE at them.
    let cache = settings().artifacts.cache_dir;
    let mut command = nextest(&std::env::temp_dir());
    command
        .env("VMHARNESS_CACHE", &cache)
        .args(["run", "--profile", "ci", "--archive-file"])
        .arg(archive()?)
        .arg("--workspace-remap")
        .arg(copy)
        .args(["-E", "binary(boot)"]);
    checked(command, "cargo nextest run from the archive")?;

    for name in &configs {
        let result = copy
            .join("target/vmharness/logs")
            .join(name)
            .join("latest/result.toml");
        let text = std::fs::read_to_string(&result)
            .with_context(|| format!("trial {name} wrote no {}", result.display()))?;
        ensure!(text.contains("outcome = \"PASS\""), "{name}: {text}");
        let config_line = text
            .lines()
            .find(|l| l.starts_with("config"))
            .with_context(|| format!("{name}: no config in {text}"))?;
        ensure!(
            config_line.contains(&*copy.to_string_lossy()),
            "{name} ran the original config, not the copy's: {config_line}"
        );
    }
    // One process per case, one saved state per config: the first case saved it under the
    // state's lock, every other process found it.
    let states: Vec<_> = std::fs::read_dir(copy.join("target/vmharness/states"))
        .context("no saved states under the remapped root")?
        .filter_map(Result::ok)
        .filter(|entry| entry.path().join("meta.toml").is_file())
        .collect();
    ensure!(
        states.len() == with_states,
        "{} saved states for {with_states} configs with cases: {states:?}",
        states.len()
    );
    let junit = std::fs::read_to_string(copy.join("target/nextest/ci/junit.xml"))
        .context("no JUnit report under the remapped root")?;
    for name in &configs {
        ensure!(
            junit.contains(&format!("name=\"{name}\"")),
            "{name} missing from JUnit"
        );
    }
    Ok(())
}

fn settings() -> vmharness::settings::Settings {
    vmharness::settings::Settings::from_env().expect("usable environment")
}
