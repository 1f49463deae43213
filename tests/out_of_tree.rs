//! The out-of-tree example (`examples/out-of-tree/`) is a repository of its own that uses
//! vmharness by path: a copy of it, far from this workspace, is built and run the ways its
//! users run it (`cargo test` from another directory, `cargo nextest run`, the test binary by
//! hand), with real QEMU: a guest its recipe builds, U-Boot cases from a saved state, and a
//! deliberately failing config whose report it checks. The README's quick start is its files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/out-of-tree");

/// The example copied into a temp dir (its path dependency made absolute), built and tested
/// once per process with `cargo test` run from another directory: (copy, its output).
fn tested() -> &'static (tempfile::TempDir, Output) {
    static TESTED: OnceLock<(tempfile::TempDir, Output)> = OnceLock::new();
    TESTED.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let repo = dir.path().join("repo");
        copy_tree(Path::new(EXAMPLE), &repo);
        let manifest = repo.join("Cargo.toml");
        let harness = Path::new(env!("CARGO_MANIFEST_DIR")).join("harness");
        let text = std::fs::read_to_string(&manifest).unwrap().replace(
            "path = \"../../harness\"",
            &format!("path = {:?}", harness.display().to_string()),
        );
        std::fs::write(&manifest, text).unwrap();
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let output = cargo(&elsewhere)
            .args(["test", "--manifest-path"])
            .arg(&manifest)
            .env_remove("CI")
            .output()
            .expect("run cargo test on the example");
        (dir, output)
    })
}

/// cargo without this test's cargo or vmharness variables, building into its own dir under
/// this workspace's target (kept between runs, so only the first build is slow).
fn cargo(cwd: &Path) -> Command {
    scrubbed(env!("CARGO"), cwd)
}

/// `program` in `cwd` without this test's cargo or vmharness variables, with the example's
/// target dir.
fn scrubbed(program: &str, cwd: &Path) -> Command {
    let mut command = Command::new(program);
    vmharness_cli::nested_cargo::scrub_cargo_run_env(&mut command);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("VMHARNESS_") {
            command.env_remove(&key);
        }
    }
    command
        .current_dir(cwd)
        .env("CARGO_TARGET_DIR", target_dir())
        .env_remove("NEXTEST_PROFILE");
    command
}

fn target_dir() -> PathBuf {
    let settings = vmharness::settings::Settings::from_env().expect("usable environment");
    settings.target_dir.join("out-of-tree")
}

/// The files under `from` (no build output, history or links), into `to`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "target" || name == ".git" {
            continue;
        }
        let path = entry.path();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            copy_tree(&path, &to.join(&name));
        } else if kind.is_file() {
            std::fs::copy(&path, to.join(&name)).unwrap();
        }
    }
}

fn text(output: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn cargo_test_from_another_directory_passes_every_trial() {
    let (_, output) = tested();
    let all = text(output);
    assert!(output.status.success(), "{all}");
    for line in [
        "test hello-aarch64 ... ok",
        "test uboot-aarch64::fatls ... ok",
        "test uboot-aarch64::fatload ... ok",
        "test a_panic_line_fails_the_run_and_the_report_says_where ... ok",
    ] {
        let squeezed: String = all.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(squeezed.contains(line), "{line:?} not in\n{all}");
    }
    assert!(all.contains("3 passed; 0 failed"), "{all}");
}

#[test]
fn nextest_runs_the_example_with_one_process_per_trial() {
    let (dir, first) = tested();
    assert!(first.status.success(), "{}", text(first));
    let output = cargo(dir.path())
        .args(["nextest", "run", "--no-fail-fast", "--manifest-path"])
        .arg(dir.path().join("repo/Cargo.toml"))
        .output()
        .expect("run cargo nextest on the example");
    let all = text(&output);
    assert!(output.status.success(), "{all}");
    for trial in [
        "vm hello-aarch64",
        "vm uboot-aarch64::fatls",
        "vm uboot-aarch64::fatload",
    ] {
        assert!(
            all.lines()
                .any(|line| line.contains("PASS") && line.contains(trial)),
            "{trial} did not pass:\n{all}"
        );
    }
}

/// The trial binary run by hand from an unrelated directory, without cargo's variables. Its
/// target dir here is under this workspace (so the workspace found above it would be this
/// one): `VMHARNESS_ROOT` names the example's copy, as it would for an archived binary.
#[test]
fn the_test_binary_runs_from_another_directory() {
    let (dir, first) = tested();
    assert!(first.status.success(), "{}", text(first));
    let output = cargo(dir.path())
        .args(["test", "--no-run", "--test", "vm", "--message-format=json"])
        .arg("--manifest-path")
        .arg(dir.path().join("repo/Cargo.toml"))
        .output()
        .expect("find the vm test binary");
    assert!(output.status.success(), "{}", text(&output));
    let binary: PathBuf = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["target"]["name"] == "vm")
        .find_map(|message| message["executable"].as_str().map(Into::into))
        .expect("cargo names the vm executable");
    let output = Command::new(&binary)
        .args(["--exact", "hello-aarch64"])
        .current_dir(dir.path().join("elsewhere"))
        .env_remove("CARGO_MANIFEST_DIR")
        .env_remove("CARGO_TARGET_DIR")
        .env("VMHARNESS_ROOT", dir.path().join("repo"))
        .output()
        .expect("run the vm binary");
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("1 passed"),
        "{}",
        text(&output)
    );
}

/// The README's quick start shows the example's real files, byte for byte.
#[test]
fn the_readme_quick_start_is_the_example() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let mut shown = 0;
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        // A block headed by `<!-- examples/out-of-tree/<file> -->` is that file.
        let Some(file) = line
            .strip_prefix("<!-- examples/out-of-tree/")
            .and_then(|rest| rest.strip_suffix(" -->"))
        else {
            continue;
        };
        let fence = lines.next().expect("a code block after the file name");
        assert!(fence.starts_with("```"), "{file}: {fence}");
        let mut block = String::new();
        for line in lines.by_ref().take_while(|line| !line.starts_with("```")) {
            block.push_str(line);
            block.push('\n');
        }
        let real = std::fs::read_to_string(Path::new(EXAMPLE).join(file)).unwrap();
        assert_eq!(block, real, "README's {file} differs from the example's");
        shown += 1;
    }
    assert!(
        shown >= 3,
        "the README shows {shown} of the example's files"
    );
}

/// The composite action's own `run:` steps, read from `.github/actions/vmharness/action.yml`
/// and run as GitHub runs them (`bash -eo pipefail`, the step's `env:` and
/// `working-directory`, `${{ }}` expressions substituted) against the example's copy: `cargo
/// install` of the tool from this checkout, `vmharness setup`, and `vmharness ci` on the
/// example's suite with `CI=true`. Skipped: the `uses:` steps (toolchain, log upload: GitHub's
/// own actions) and "Enable KVM" (udev rules for the runner's `/dev/kvm`; here KVM is probed
/// and falls back to TCG).
#[test]
fn the_composite_action_runs_the_example_suite() {
    use yaml_rust2::YamlLoader;
    let (dir, first) = tested();
    assert!(first.status.success(), "{}", text(first));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let action_dir = root.join(".github/actions/vmharness");
    let yaml = std::fs::read_to_string(action_dir.join("action.yml")).unwrap();
    let doc = YamlLoader::load_from_str(&yaml).unwrap().remove(0);
    let repo = dir.path().join("repo");
    let install_root = dir.path().join("cargo-install");
    let path = format!(
        "{}:{}",
        install_root.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let inputs: [(&str, String); 6] = [
        ("github.action_path", action_dir.display().to_string()),
        ("inputs.arch", "aarch64".into()),
        ("inputs.accel", "auto".into()),
        ("inputs.tests", "vm".into()),
        ("inputs.package", String::new()),
        ("inputs.working-directory", repo.display().to_string()),
    ];
    let expand = |text: &str| -> String {
        let mut text = text.to_string();
        for (name, value) in &inputs {
            text = text.replace(&format!("${{{{ {name} }}}}"), value);
        }
        assert!(!text.contains("${{"), "an expression left in {text:?}");
        text
    };
    let mut ran = Vec::new();
    let mut last = String::new();
    for step in doc["runs"]["steps"].as_vec().expect("runs.steps") {
        let (Some(name), Some(script)) = (step["name"].as_str(), step["run"].as_str()) else {
            continue;
        };
        if name == "Enable KVM" {
            continue;
        }
        let cwd = step["working-directory"]
            .as_str()
            .map_or(repo.clone(), |dir| PathBuf::from(expand(dir)));
        // GitHub runs a `bash` step as `bash --noprofile --norc -eo pipefail {0}`.
        let mut command = scrubbed("bash", &cwd);
        command
            .args(["--noprofile", "--norc", "-eo", "pipefail", "-c"])
            .arg(expand(script))
            .env("PATH", &path)
            .env("CARGO_INSTALL_ROOT", &install_root)
            .env_remove("CI");
        if let Some(env) = step["env"].as_hash() {
            for (key, value) in env {
                let value = match value {
                    yaml_rust2::Yaml::String(value) => expand(value),
                    other => panic!("step {name}: env value {other:?}"),
                };
                command.env(key.as_str().unwrap(), value);
            }
        }
        let output = command.output().expect("run the step with bash");
        last = text(&output);
        assert!(output.status.success(), "step {name:?} failed:\n{last}");
        ran.push(name.to_string());
    }
    assert_eq!(ran, ["The vmharness tool", "Host packages", "VM tests"]);
    assert!(install_root.join("bin/vmharness").is_file());
    let squeezed: String = last.split_whitespace().collect::<Vec<_>>().join(" ");
    for line in [
        "test hello-aarch64 ... ok",
        "test uboot-aarch64::fatls ... ok",
        "test uboot-aarch64::fatload ... ok",
    ] {
        assert!(squeezed.contains(line), "{line:?} not in\n{last}");
    }
}

/// A repository that depends on vmharness by git (a commit of this checkout's files, fetched
/// from a `file://` URL into cargo's git cache, far from both repositories) builds and boots the
/// example's guest: nothing in the library needs its own source tree at run time.
#[test]
fn a_git_dependency_builds_and_runs_the_example() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("vmharness");
    copy_tree(Path::new(env!("CARGO_MANIFEST_DIR")), &source);
    for args in [
        &["init", "-q"][..],
        &["add", "-A"],
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qm",
            "snapshot",
        ],
    ] {
        let status = Command::new("git")
            .args(args)
            .current_dir(&source)
            .status()
            .expect("run git");
        assert!(status.success(), "git {args:?}");
    }
    let repo = dir.path().join("repo");
    copy_tree(Path::new(EXAMPLE), &repo);
    let manifest = repo.join("Cargo.toml");
    let line = format!("git = \"file://{}\"", source.display());
    let toml = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("path = \"../../harness\"", &line);
    assert!(toml.contains(&line));
    std::fs::write(&manifest, toml).unwrap();
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let output = cargo(&elsewhere)
        .env("CARGO_TARGET_DIR", target_dir().join("git"))
        .args(["test", "--test", "vm", "--manifest-path"])
        .arg(&manifest)
        .args(["--", "--exact", "hello-aarch64"])
        .env_remove("CI")
        .output()
        .expect("run cargo test on the example");
    let all = text(&output);
    assert!(output.status.success(), "{all}");
    assert!(
        all.contains(&format!("(file://{}#", source.display())),
        "vmharness did not come from git:\n{all}"
    );
    let squeezed: String = all.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(squeezed.contains("test hello-aarch64 ... ok"), "{all}");
}
