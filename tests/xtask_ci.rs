//! `cargo xtask ci` against a temporary workspace root (`VMHARNESS_ROOT`) holding a passing,
//! a panicking and a misspelled selftest config: GitHub Actions groups, `::error` annotations,
//! the step summary, the arch filter, the accel override and the exit status.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod support;

use anyhow::{ensure, Context, Result};
use vmharness::arch::Arch;

/// The xtask binary and the absolute path of the aarch64 selftest kernel.
fn setup() -> (&'static PathBuf, PathBuf) {
    (support::xtask(), support::selftest_elf(Arch::Aarch64))
}

/// A temp workspace root with the given configs (name, TOML text) in `vm-configs/`.
fn workspace(configs: &[(&str, String)]) -> Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir(dir.path().join("vm-configs"))?;
    for (name, text) in configs {
        std::fs::write(
            dir.path().join("vm-configs").join(format!("{name}.toml")),
            text,
        )?;
    }
    Ok(dir)
}

fn selftest(kernel: &Path, extra: &str) -> String {
    format!(
        "arch = \"aarch64\"\n[qemu]\nkernel = {:?}\nexit_device = true\n{extra}[console]\nbanner = [\"vmharness selftest aarch64\", \"selftest: ok\"]\n",
        kernel.display().to_string()
    )
}

/// Runs `xtask ci ARGS` as a GitHub Actions job would; returns the output and the summary.
fn ci(root: &Path, args: &[&str]) -> Result<(Output, String, String)> {
    let (xtask, _) = &setup();
    let summary = root.join("summary.md");
    let output = Command::new(xtask)
        .arg("ci")
        .args(args)
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env("VMHARNESS_ROOT", root)
        .env_remove("GITHUB_WORKSPACE")
        .stdin(Stdio::null())
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let summary = std::fs::read_to_string(&summary).unwrap_or_default();
    Ok((output, stdout, summary))
}

#[test]
fn github_job_for_one_arch_annotates_and_summarises() -> Result<()> {
    let (_, kernel) = &setup();
    let root = workspace(&[
        ("ci-good-aarch64", selftest(kernel, "")),
        (
            "ci-panics-aarch64",
            selftest(
                kernel,
                "args = [\"-fw_cfg\", \"name=opt/vmharness/scenario,string=panic 2\"]\n",
            ),
        ),
        (
            "ci-typo-aarch64",
            "arch = \"aarch64\"\n[qemu]\nkernal = \"x.elf\"\n".into(),
        ),
        (
            "ci-other-x86_64",
            "arch = \"x86_64\"\n[qemu]\nkernel = \"missing.elf\"\n".into(),
        ),
    ])?;
    let (output, stdout, summary) = ci(root.path(), &["--skip-gates", "--arch", "aarch64"])?;
    let context = || {
        format!(
            "stdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    };
    ensure!(
        output.status.code() == Some(1),
        "exit status {:?}\n{}",
        output.status,
        context()
    );
    for needle in [
        "::group::VM configs",
        "::group::VM tests",
        "::endgroup::",
        "::error file=vm-configs/ci-typo-aarch64.toml,line=3,col=1,title=invalid VM config::",
        "did you mean `kernel`?",
        "::error file=vm-configs/ci-panics-aarch64.toml,title=ci-panics-aarch64 FAIL::panic pattern",
        "ci: FAILED steps: VM configs, VM tests",
    ] {
        ensure!(stdout.contains(needle), "missing `{needle}`\n{}", context());
    }
    // The VM tests' output (guest consoles in failure reports) is fenced off from GitHub's
    // command parser by a random token; annotations come after the fence.
    let token = stdout
        .lines()
        .find_map(|l| l.strip_prefix("::stop-commands::"))
        .with_context(|| format!("no ::stop-commands::\n{}", context()))?;
    ensure!(token.len() == 32, "weak token `{token}`");
    let (stopped, resumed) = (
        stdout.find("::stop-commands::").unwrap_or(0),
        stdout.find(&format!("::{token}::")).unwrap_or(0),
    );
    let report = stdout.find("---- ci-panics-aarch64").unwrap_or(0);
    let annotation = stdout
        .find("::error file=vm-configs/ci-panics-aarch64.toml")
        .unwrap_or(0);
    ensure!(
        stopped < report && report < resumed && resumed < annotation,
        "fence at {stopped}..{resumed}, report at {report}, annotation at {annotation}\n{}",
        context()
    );
    ensure!(
        !stdout.contains("::group::fmt"),
        "--skip-gates ran the gates\n{}",
        context()
    );
    ensure!(
        !stdout.contains("ci-other-x86_64"),
        "--arch aarch64 ran an x86_64 config\n{}",
        context()
    );
    ensure!(
        !stdout.contains("file=vm-configs/ci-good-aarch64.toml"),
        "the passing test was annotated\n{}",
        context()
    );
    for row in [
        "| ci-good-aarch64 | aarch64 | tcg | PASS |",
        "| ci-panics-aarch64 | aarch64 | tcg | FAIL |",
        "| ci-typo-aarch64 | - | - | INVALID | - | ",
        "unknown field `kernal`",
        "| VM tests | **FAILED** |",
    ] {
        ensure!(summary.contains(row), "summary lacks `{row}`:\n{summary}");
    }
    let log = summary
        .lines()
        .find(|line| line.starts_with("| ci-good-aarch64 "))
        .and_then(|line| line.split('`').nth(1))
        .context("log path in the summary")?;
    let console = std::fs::read_to_string(log).with_context(|| format!("reading {log}"))?;
    ensure!(console.contains("selftest: ok"), "{console}");
    Ok(())
}

#[test]
fn all_ignored_run_says_so_and_passes() -> Result<()> {
    let (_, kernel) = &setup();
    let root = workspace(&[
        (
            "ci-ignored-aarch64",
            selftest(kernel, "").replacen("arch", "ignore = \"needs a board\"\narch", 1),
        ),
        (
            "ci-unset-aarch64",
            "arch = \"aarch64\"\n[qemu]\nkernel = \"env:VMHARNESS_TEST_UNSET_KERNEL\"\n".into(),
        ),
    ])?;
    let (output, stdout, summary) = ci(root.path(), &["--skip-gates", "--arch", "aarch64"])?;
    ensure!(
        output.status.success(),
        "exit status {:?}\n{stdout}",
        output.status
    );
    ensure!(
        stdout.contains("all 2 tests were ignored: ci-ignored-aarch64: ignored: needs a board; ci-unset-aarch64:")
            && stdout.contains("VMHARNESS_TEST_UNSET_KERNEL"),
        "{stdout}"
    );
    ensure!(
        stdout.contains("::warning title=nothing was tested::all 2 tests were ignored"),
        "{stdout}"
    );
    ensure!(
        summary.contains("| ci-ignored-aarch64 | aarch64 | - | SKIPPED |"),
        "{summary}"
    );
    Ok(())
}

#[test]
fn accel_override_reaches_every_test() -> Result<()> {
    let (_, kernel) = &setup();
    let root = workspace(&[("ci-kvm-aarch64", selftest(kernel, ""))])?;
    // An aarch64 guest cannot use KVM on this x86_64 host: forcing it is an infrastructure error.
    let (output, stdout, summary) = ci(
        root.path(),
        &["--skip-gates", "--arch", "aarch64", "--accel", "kvm"],
    )?;
    ensure!(
        output.status.code() == Some(1),
        "exit status {:?}\n{stdout}",
        output.status
    );
    ensure!(
        summary.contains("| ci-kvm-aarch64 | aarch64 | - | INFRA |"),
        "{summary}\n{stdout}"
    );
    ensure!(stdout.contains("title=ci-kvm-aarch64 INFRA::"), "{stdout}");
    Ok(())
}

/// `vmharness ci` in another cargo workspace (not this one, not where the binary was built):
/// the cargo steps run there, the library tests leave the VM test target out, and the VM tests
/// step runs exactly the `--test` targets named.
#[test]
fn ci_runs_in_the_workspace_around_the_current_directory() -> Result<()> {
    let bins = support::cli_bins();
    let dir = tempfile::tempdir()?;
    let write = |path: &str, text: &str| -> Result<()> {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().context("a parent")?)?;
        Ok(std::fs::write(path, text)?)
    };
    write(
        "Cargo.toml",
        "[package]\nname = \"elsewhere\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
    )?;
    write("src/lib.rs", "")?;
    write("vm-configs/.keep", "")?;
    // Each target leaves a mark in the workspace when it runs.
    let marking = |name: &str| {
        format!(
            "#[test]\nfn marks() {{\n    std::fs::write(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/ran-{name}\"), \"\").unwrap();\n}}\n"
        )
    };
    write("tests/vm.rs", &marking("vm"))?;
    write("tests/other.rs", &marking("other"))?;
    let output = Command::new(bins.join("vmharness"))
        .args(["ci", "--skip-gates", "--test", "vm"])
        .current_dir(dir.path())
        .env("CARGO_TARGET_DIR", dir.path().join("target"))
        .env_remove("VMHARNESS_ROOT")
        .env_remove("CARGO_MANIFEST_DIR")
        .env_remove("GITHUB_ACTIONS")
        .stdin(Stdio::null())
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let context = || {
        format!(
            "stdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    };
    ensure!(output.status.success(), "{}", context());
    for needle in [
        "$ cargo test --workspace --lib --bins",
        "$ cargo test --test vm",
        "ci: all steps passed",
    ] {
        ensure!(stdout.contains(needle), "missing `{needle}`\n{}", context());
    }
    ensure!(
        dir.path().join("ran-vm").exists(),
        "the named VM test target did not run there\n{}",
        context()
    );
    ensure!(
        !dir.path().join("ran-other").exists(),
        "a test target that was not named ran\n{}",
        context()
    );
    Ok(())
}
