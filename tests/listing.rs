//! The cargo-test frontend meets the custom-harness contract: `--list --format terse`,
//! `--exact`, `--ignored`, and a broken config becoming one failing trial while the others
//! still list and run.

use std::path::Path;
use std::process::{Command, Output};

mod support;

use vmharness::arch::Arch;

/// A scratch workspace root with a good, a broken and an ignored config.
fn scratch_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let configs = root.path().join("vm-configs");
    std::fs::create_dir(&configs).unwrap();
    let kernel = support::selftest_elf(Arch::Aarch64);
    std::fs::write(
        configs.join("good.toml"),
        format!(
            "arch = \"aarch64\"\naccel = \"tcg\"\n[qemu]\nkernel = {:?}\nexit_device = true\n[console]\nbanner = [\"selftest: ok\"]\n",
            kernel.display().to_string()
        ),
    )
    .unwrap();
    std::fs::write(
        configs.join("broken.toml"),
        "arch = \"aarch64\"\n[console]\nbaner = [\"typo\"]\n",
    )
    .unwrap();
    std::fs::write(
        configs.join("later.toml"),
        "arch = \"riscv64\"\nignore = \"waiting for a riscv64 hypervisor image\"\n",
    )
    .unwrap();
    root
}

fn boot(root: &Path, args: &[&str]) -> Output {
    support::boot_suite(root, args)
        .output()
        .expect("run cargo test --test boot")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The result libtest printed for trial `name` (`ok`, `FAILED`, `ignored`), empty if none.
fn status(all: &str, name: &str) -> String {
    all.lines()
        .find_map(|line| {
            let rest = line.strip_prefix("test ")?;
            let (test, result) = rest.split_once(" ... ")?;
            (test.trim() == name).then(|| result.trim().to_string())
        })
        .unwrap_or_default()
}

#[test]
fn terse_list_names_every_config_including_broken_ones() {
    let root = scratch_root();
    let output = boot(root.path(), &["--list", "--format", "terse"]);
    assert!(output.status.success(), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        ["broken: test", "good: test", "later: test"],
        "{stdout}"
    );
    let output = boot(root.path(), &["--list", "--format", "terse", "--ignored"]);
    assert_eq!(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .collect::<Vec<_>>(),
        ["later: test"]
    );
}

#[test]
fn broken_config_fails_alone_with_location_and_suggestion() {
    let root = scratch_root();
    let output = boot(root.path(), &[]);
    let all = text(&output);
    assert!(!output.status.success(), "{all}");
    assert_eq!(status(&all, "good"), "ok", "{all}");
    assert_eq!(status(&all, "later"), "ignored", "{all}");
    assert_eq!(status(&all, "broken"), "FAILED", "{all}");
    assert!(
        all.contains("broken.toml:3:1: unknown field `baner`"),
        "{all}"
    );
    assert!(all.contains("did you mean `banner`?"), "{all}");
}

#[test]
fn exact_filter_runs_one_trial() {
    let root = scratch_root();
    let output = boot(root.path(), &["--exact", "good"]);
    let all = text(&output);
    assert!(output.status.success(), "{all}");
    assert!(
        all.contains("1 passed") && all.contains("2 filtered out"),
        "{all}"
    );
}

/// What `--list` and a broken config's failure look like, pinned (the scratch root redacted).
#[test]
fn list_and_broken_config_output_read_well() {
    let root = scratch_root();
    let list = boot(root.path(), &["--list"]);
    assert!(list.status.success(), "{}", text(&list));
    let broken = boot(root.path(), &["--exact", "broken"]);
    let stdout = String::from_utf8_lossy(&broken.stdout);
    let failure: String = stdout
        .lines()
        .skip_while(|line| !line.starts_with("---- broken"))
        .take_while(|line| !line.is_empty())
        .map(|line| format!("{line}\n"))
        .collect();
    let root_text = root.path().display().to_string();
    let out = format!("{}\n{failure}", String::from_utf8_lossy(&list.stdout))
        .replace(&root_text, "[root]");
    insta::assert_snapshot!(out);
}

/// A huge duration in one config used to panic the listing, taking every trial down.
#[test]
fn a_huge_duration_fails_its_own_trial_only() {
    let root = scratch_root();
    let configs = root.path().join("vm-configs");
    for (name, value) in [
        ("huge", "1e20"),
        ("infinite", "inf"),
        ("years", "\"1000000000 years\""),
    ] {
        std::fs::write(
            configs.join(format!("{name}.toml")),
            format!("arch = \"aarch64\"\n[timeouts]\ntotal = {value}\n"),
        )
        .unwrap();
    }
    let list = boot(root.path(), &["--list", "--format", "terse"]);
    assert!(list.status.success(), "{}", text(&list));
    let stdout = String::from_utf8_lossy(&list.stdout);
    for name in ["good", "huge", "infinite", "years"] {
        assert!(stdout.contains(&format!("{name}: test")), "{stdout}");
    }
    let run = boot(root.path(), &["huge"]);
    let all = text(&run);
    assert!(!run.status.success(), "{all}");
    assert!(all.contains("huge.toml:3:9:"), "{all}");
    assert!(!all.contains("panicked"), "{all}");
}

/// `ignore = "why"` is libtest's `#[ignore]`: `--ignored` boots only those trials and
/// `--include-ignored` all of them, for real (a guest that does not print the banner fails).
/// They used to end `ignored` again. `needs_kvm` on TCG is an environment condition, not an
/// ignore: never in `--ignored`, and `ignored (<reason>)` whenever it runs.
#[test]
fn ignored_and_include_ignored_boot_ignored_configs() {
    let root = tempfile::tempdir().unwrap();
    let configs = root.path().join("vm-configs");
    std::fs::create_dir(&configs).unwrap();
    let kernel = support::selftest_elf(Arch::Aarch64);
    let config = |ignore: &str, extra: &str, banner: &str| {
        format!(
            "arch = \"aarch64\"\naccel = \"tcg\"\n{ignore}{extra}[qemu]\nkernel = {:?}\nexit_device = true\n[console]\nbanner = [\"{banner}\"]\n",
            kernel.display().to_string()
        )
    };
    let waiting = "ignore = \"waiting for a fix\"\n";
    for (name, text) in [
        ("good", config("", "", "selftest: ok")),
        ("waiting", config(waiting, "", "selftest: ok")),
        ("waiting_wrong", config(waiting, "", "never printed")),
        (
            "kvm_only",
            config("", "needs_kvm = \"VMX\"\n", "selftest: ok"),
        ),
    ] {
        std::fs::write(configs.join(format!("{name}.toml")), text).unwrap();
    }
    let statuses = |args: &[&str]| {
        let output = boot(root.path(), args);
        let all = text(&output);
        let found: Vec<String> = ["good", "kvm_only", "waiting", "waiting_wrong"]
            .iter()
            .map(|name| format!("{name}: {}", status(&all, name)))
            .collect();
        (found, all)
    };
    const KVM_ONLY: &str = "kvm_only: ignored (needs KVM (VMX), and KVM is not usable here: the accelerator is TCG (accel))";
    let (plain, all) = statuses(&[]);
    assert_eq!(
        plain,
        [
            "good: ok",
            KVM_ONLY,
            "waiting: ignored",
            "waiting_wrong: ignored"
        ],
        "{all}"
    );
    let (ignored, all) = statuses(&["--ignored"]);
    assert_eq!(
        ignored,
        [
            "good: ",
            "kvm_only: ",
            "waiting: ok",
            "waiting_wrong: FAILED"
        ],
        "{all}"
    );
    assert!(
        all.contains("never printed"),
        "the failure names the banner: {all}"
    );
    let (included, all) = statuses(&["--include-ignored"]);
    assert_eq!(
        included,
        ["good: ok", KVM_ONLY, "waiting: ok", "waiting_wrong: FAILED"],
        "{all}"
    );
}

/// libtest takes several name filters (`cargo test --test boot -- selftest linux`); so do we.
#[test]
fn several_name_filters_select_the_union() {
    let root = scratch_root();
    let list = boot(root.path(), &["--list", "--format", "terse", "goo", "late"]);
    assert!(list.status.success(), "{}", text(&list));
    assert_eq!(
        String::from_utf8_lossy(&list.stdout)
            .lines()
            .collect::<Vec<_>>(),
        ["good: test", "later: test"]
    );
    let run = boot(root.path(), &["good", "broken"]);
    let all = text(&run);
    assert!(!run.status.success(), "{all}");
    assert!(
        all.contains("test good   ... ok") && all.contains("test broken ... FAILED"),
        "{all}"
    );
    assert!(!all.contains("test later"), "{all}");
}

/// A config with `[[case]]`s lists one trial per case (`<config>::<case>`) and none for
/// itself; a config without cases is one trial as before.
#[test]
fn the_suite_lists_one_trial_per_case() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    vmharness_cli::nested_cargo::scrub_cargo_run_env(&mut command);
    let output = command
        .args([
            "test", "-q", "--test", "boot", "--", "--list", "--format", "terse",
        ])
        .env_remove("VMHARNESS_ROOT")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo test --test boot -- --list");
    assert!(output.status.success(), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    for arch in ["x86_64", "aarch64", "riscv64"] {
        for case in [
            "fat-listing",
            "long-name",
            "run-script",
            "checksum",
            "write",
            "no-leak",
        ] {
            let trial = format!("linux-{arch}::{case}: test");
            assert!(lines.contains(&trial.as_str()), "{trial} not in {stdout}");
        }
        for case in ["fatls", "fatload", "crc32"] {
            let trial = format!("uboot-{arch}::{case}: test");
            assert!(lines.contains(&trial.as_str()), "{trial} not in {stdout}");
        }
        assert!(
            !lines.contains(&format!("linux-{arch}: test").as_str()),
            "{stdout}"
        );
    }
    assert!(lines.contains(&"uboot-mbr-riscv64: test"), "{stdout}");
}

/// A scratch root holding the selftest echo config (three `[[case]]`s) and a plain config.
fn scratch_root_with_cases() -> tempfile::TempDir {
    let root = scratch_root();
    let kernel = support::selftest_elf(Arch::Aarch64);
    let echo =
        std::fs::read_to_string(support::root().join("vm-configs/selftest-echo-aarch64.toml"))
            .unwrap()
            .replace(
                "\"artifact:selftest-aarch64/selftest.elf\"",
                &format!("{:?}", kernel.display().to_string()),
            );
    std::fs::write(root.path().join("vm-configs/echo.toml"), echo).unwrap();
    root
}

fn terse_names(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Several filters are a union over trial names, case trials included (`config::case`), with
/// `--exact` comparing each filter with the whole name, as libtest does.
#[test]
fn several_filters_select_case_trials() {
    let root = scratch_root_with_cases();
    let list = |args: &[&str]| {
        let output = boot(
            root.path(),
            &[&["--list", "--format", "terse"], args].concat(),
        );
        assert!(output.status.success(), "{}", text(&output));
        terse_names(&output)
    };
    let both = ["echo::hello: test", "echo::exit: test"];
    assert_eq!(list(&["--exact", "echo::hello", "echo::exit"]), both);
    assert_eq!(list(&["o::hello", "o::exit"]), both);
    assert_eq!(list(&["hello", "::exit"]), both);
    // A whole config and a case of another config.
    assert_eq!(
        list(&["--exact", "good", "echo::exit"]),
        ["echo::exit: test", "good: test"]
    );
    // --exact never takes a part of a name.
    assert!(list(&["--exact", "echo::hell", "echo"]).is_empty());

    let run = boot(root.path(), &["--exact", "echo::hello", "echo::exit"]);
    let all = text(&run);
    assert!(run.status.success(), "{all}");
    assert_eq!(status(&all, "echo::hello"), "ok", "{all}");
    assert_eq!(status(&all, "echo::exit"), "ok", "{all}");
    assert!(
        all.contains("2 passed") && all.contains("4 filtered out"),
        "{all}"
    );
}

/// `boot` with a guard against a hang: a frontend that blocks (on a FIFO, say) is killed
/// with its process group after `guard` and the test fails saying so, instead of hanging
/// the suite.
fn boot_guarded(
    root: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    guard: std::time::Duration,
) -> Output {
    use std::os::unix::process::CommandExt;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    vmharness_cli::nested_cargo::scrub_cargo_run_env(&mut command);
    let mut child = command
        .process_group(0)
        .args(["test", "-q", "--test", "boot", "--"])
        .args(args)
        .env("VMHARNESS_ROOT", root)
        .envs(env.iter().copied())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run cargo test --test boot");
    let started = std::time::Instant::now();
    while child.try_wait().expect("wait for cargo").is_none() {
        if started.elapsed() > guard {
            let group = format!("-{}", child.id());
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let output = child.wait_with_output().expect("collect output");
            panic!(
                "`boot {}` still running after {guard:?}: {}",
                args.join(" "),
                text(&output)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child.wait_with_output().expect("collect output")
}

/// Whether this process runs as root (device nodes can be made).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// A `vm-configs/*.toml` that is not a regular file (a FIFO used to hang `--list` and the
/// suite with no message) fails its own trial naming the file and what it is; the others
/// still list and run, and a symlink to a regular file is a config like any other.
#[test]
fn special_files_among_the_configs_fail_alone() {
    let root = scratch_root();
    let configs = root.path().join("vm-configs");
    let run = |program: &str, args: &[&str]| {
        let status = Command::new(program).args(args).status().unwrap();
        assert!(status.success(), "{program} {args:?}");
    };
    let fifo = root.path().join("fifo");
    run("mkfifo", &[fifo.to_str().unwrap()]);
    run("mkfifo", &[configs.join("fifo.toml").to_str().unwrap()]);
    std::fs::create_dir(configs.join("dir.toml")).unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(configs.join("socket.toml")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", configs.join("zero.toml")).unwrap();
    std::os::unix::fs::symlink(&fifo, configs.join("to-fifo.toml")).unwrap();
    std::os::unix::fs::symlink(configs.join("good.toml"), configs.join("link.toml")).unwrap();
    let mut special = vec![
        ("fifo", "a FIFO"),
        ("dir", "a directory"),
        ("socket", "a socket"),
        ("zero", "a character device"),
        ("to-fifo", "a FIFO"),
    ];
    if is_root() {
        let chr = configs.join("chr.toml");
        run("mknod", &[chr.to_str().unwrap(), "c", "1", "3"]);
        let blk = configs.join("blk.toml");
        run("mknod", &[blk.to_str().unwrap(), "b", "7", "0"]);
        special.extend([("chr", "a character device"), ("blk", "a block device")]);
    }
    let guard = std::time::Duration::from_secs(120);
    // VMHARNESS_ARCH reads each config's `arch` while listing: no read may block there either.
    for env in [&[][..], &[("VMHARNESS_ARCH", "aarch64")][..]] {
        let list = boot_guarded(root.path(), &["--list", "--format", "terse"], env, guard);
        assert!(list.status.success(), "{}", text(&list));
        let names = terse_names(&list);
        for name in special
            .iter()
            .map(|(name, _)| *name)
            .chain(["good", "link"])
        {
            assert!(
                names.contains(&format!("{name}: test")),
                "{name}: {names:?}"
            );
        }
    }
    let run = boot_guarded(root.path(), &[], &[], guard);
    let all = text(&run);
    assert!(!run.status.success(), "{all}");
    assert_eq!(status(&all, "good"), "ok", "{all}");
    assert_eq!(status(&all, "link"), "ok", "{all}");
    for (name, kind) in special {
        assert_eq!(status(&all, name), "FAILED", "{name}: {all}");
        let path = configs.join(format!("{name}.toml"));
        let message = format!("{}: {kind}, not a regular file", path.display());
        assert!(all.contains(&message), "{message}: {all}");
    }
}

/// The test binary run by hand from another directory, without cargo's variables, finds the
/// workspace above itself (it used to look in the current directory and list one failing
/// `vm-configs` trial); a copy of it far from any workspace says what it looked for and names
/// `VMHARNESS_ROOT`.
#[test]
fn a_test_binary_run_from_anywhere_finds_its_workspace() {
    let elsewhere = tempfile::tempdir().unwrap();
    let run = |binary: &Path| {
        Command::new(binary)
            .args(["--list", "--format", "terse"])
            .env_remove("VMHARNESS_ROOT")
            .env_remove("CARGO_MANIFEST_DIR")
            .env_remove("CARGO_TARGET_DIR")
            .current_dir(elsewhere.path())
            .output()
            .expect("run the boot binary")
    };
    let output = run(boot_binary());
    let names = terse_names(&output);
    assert!(
        names.iter().any(|name| name == "selftest-x86_64: test"),
        "{}",
        text(&output)
    );
    let copy = elsewhere.path().join("boot");
    std::fs::copy(boot_binary(), &copy).unwrap();
    let output = Command::new(&copy)
        .args(["--exact", "vm-configs"])
        .env_remove("VMHARNESS_ROOT")
        .env_remove("CARGO_MANIFEST_DIR")
        .current_dir(elsewhere.path())
        .output()
        .expect("run the copied boot binary");
    let all = text(&output);
    assert!(!output.status.success(), "{all}");
    assert!(
        all.contains("cannot list VM configs") && all.contains("set VMHARNESS_ROOT"),
        "{all}"
    );
}

/// The `boot` test binary itself, built once (run directly, the way nextest and an archived
/// binary run it).
fn boot_binary() -> &'static std::path::PathBuf {
    static BINARY: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BINARY.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut command = Command::new(cargo);
        vmharness_cli::nested_cargo::scrub_cargo_run_env(&mut command);
        let output = command
            .args([
                "test",
                "-q",
                "--no-run",
                "--test",
                "boot",
                "--message-format=json",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("build the boot test binary");
        assert!(output.status.success(), "{}", text(&output));
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|message| message["target"]["name"] == "boot")
            .find_map(|message| message["executable"].as_str().map(Into::into))
            .expect("cargo names the boot executable")
    })
}

/// A variable vmharness cannot use stops the suite before any trial, listing included: a
/// non-zero exit and a message naming the variable. It used to list and run nothing from
/// the wrong directory and pass (`running 0 tests ... ok`). One value of each kind of
/// variable: numbers, whole numbers, seconds, names, flags, durations, sizes, shell words,
/// a remote host, and text that is not UTF-8.
#[test]
fn a_bad_variable_fails_the_suite_whatever_the_entry_point() {
    use std::os::unix::ffi::OsStrExt;
    let root = scratch_root();
    let elsewhere = tempfile::tempdir().unwrap();
    let bad: &[(&str, &[u8])] = &[
        ("VMHARNESS_TIMEOUT_SCALE", b"-1"),
        ("VMHARNESS_TIMEOUT_SCALE", b"fast"),
        ("VMHARNESS_INFRA_RETRIES", b"-1"),
        ("VMHARNESS_INFRA_RETRIES", b"100000"),
        ("VMHARNESS_KVM_PROBE_TIMEOUT", b"0"),
        ("VMHARNESS_ACCEL", b"kmv"),
        ("VMHARNESS_ARCH", b"mips"),
        ("VMHARNESS_SAVED_STATES", b"sometimes"),
        ("VMHARNESS_LOCKED", b"maybe"),
        ("VMHARNESS_REQUIRE_ARTIFACTS", b"yes"),
        ("VMHARNESS_OFFLINE", b"2"),
        ("VMHARNESS_APT_MAX_AGE", b"soon"),
        ("VMHARNESS_DOWNLOAD_TIMEOUT", b"forever"),
        ("VMHARNESS_DOWNLOAD_MAX_BYTES", b"-5"),
        ("VMHARNESS_CONSOLE_LOG_LIMIT", b"1K"),
        ("VMHARNESS_REMOTE_SSH_OPTIONS", b"'unclosed"),
        ("VMHARNESS_REMOTE", b"@"),
        ("VMHARNESS_CACHE", b"\xffcache"),
        ("SOURCE_DATE_EPOCH", b"yesterday"),
    ];
    for (var, value) in bad {
        let value = std::ffi::OsStr::from_bytes(value);
        for args in [
            &["--list"][..],
            &["--list", "--format", "terse"],
            &[],
            &["good"],
        ] {
            let output = Command::new(boot_binary())
                .args(args)
                .env("VMHARNESS_ROOT", root.path())
                .env(var, value)
                .current_dir(elsewhere.path())
                .output()
                .unwrap();
            let all = text(&output);
            let case = format!("{var}={value:?} boot {}", args.join(" "));
            assert!(!output.status.success(), "{case}: {all}");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(stderr.contains(&format!("{var}=")), "{case}: {all}");
            assert!(!all.contains("test result: ok"), "{case}: {all}");
            assert!(!all.contains(": test"), "{case}: {all}");
        }
    }
    // Through cargo too (it runs from the checkout, whose own configs must not run instead).
    let output = boot(root.path(), &["--list"]);
    assert!(output.status.success(), "{}", text(&output));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    vmharness_cli::nested_cargo::scrub_cargo_run_env(&mut command);
    let output = command
        .args(["test", "-q", "--test", "boot", "--", "--list"])
        .env("VMHARNESS_ROOT", root.path())
        .env("VMHARNESS_TIMEOUT_SCALE", "-1")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let all = text(&output);
    assert!(!output.status.success(), "{all}");
    assert!(all.contains("VMHARNESS_TIMEOUT_SCALE=`-1`"), "{all}");
    assert!(!all.contains("selftest"), "{all}");
    // And through xtask, before it sets anything up or runs anything.
    for args in [
        &["qemu", "aarch64", "--check"][..],
        &["test", "--no-setup"],
        &["ci", "--skip-gates"],
        &["guests", "list"],
    ] {
        let output = Command::new(support::xtask())
            .args(args)
            .env("VMHARNESS_ROOT", root.path())
            .env("VMHARNESS_TIMEOUT_SCALE", "-1")
            .output()
            .unwrap();
        let all = text(&output);
        assert!(!output.status.success(), "xtask {args:?}: {all}");
        assert!(
            all.contains("VMHARNESS_TIMEOUT_SCALE=`-1`"),
            "xtask {args:?}: {all}"
        );
    }
}

/// A file name with a control character (a newline) cannot be a test name: its trial fails
/// with the reason, and `--list` shows it escaped on its one line, never as two.
#[test]
fn names_with_control_characters_list_on_one_line() {
    let root = scratch_root();
    let configs = root.path().join("vm-configs");
    for name in ["two\nlines", "tab\there", "esc\u{1b}[31mred", "cr\r"] {
        std::fs::write(configs.join(format!("{name}.toml")), "arch = \"aarch64\"\n").unwrap();
    }
    std::fs::write(
        configs.join("cases.toml"),
        "arch = \"aarch64\"\n[ready]\nexpect = \"# \"\n[[case]]\nname = \"a\\nb\"\nsteps = [{ expect = \"x\" }]\n",
    )
    .unwrap();
    let list = boot(root.path(), &["--list", "--format", "terse"]);
    assert!(list.status.success(), "{}", text(&list));
    let names = terse_names(&list);
    for line in &names {
        assert!(line.ends_with(": test"), "{line:?} in {names:?}");
        assert!(!line.chars().any(char::is_control), "{line:?}");
    }
    for escaped in [
        r"two\nlines",
        r"tab\there",
        r"esc\u{1b}[31mred",
        r"cr\r",
        "cases",
    ] {
        assert!(
            names.contains(&format!("{escaped}: test")),
            "{escaped} in {names:?}"
        );
    }
    let run = boot(root.path(), &["--exact", r"two\nlines", "cases"]);
    let all = text(&run);
    assert!(!run.status.success(), "{all}");
    assert_eq!(status(&all, r"two\nlines"), "FAILED", "{all}");
    assert_eq!(status(&all, "cases"), "FAILED", "{all}");
    assert!(all.contains(r"`two\nlines` cannot be a test name"), "{all}");
    assert!(all.contains(r"case name `a\nb` may only have"), "{all}");
}

/// `--list --verbose` shows what each trial boots with where the config leaves it to the arch
/// table: the CPU per accelerator and the exit device (aarch64 gets semihosting only when
/// asked), so a default is never a surprise.
#[test]
fn verbose_list_shows_cpu_and_exit_device_defaults() {
    let root = scratch_root();
    let configs = root.path().join("vm-configs");
    for (name, text) in [
        ("arm-plain", "arch = \"aarch64\"\n"),
        (
            "arm-cpu",
            "arch = \"aarch64\"\n[qemu]\ncpu = \"max\"\nmachine = \"virt,gic-version=3\"\n",
        ),
        (
            "x86-no-exit",
            "arch = \"x86_64\"\n[qemu]\nexit_device = false\nmemory = \"1G\"\n",
        ),
        ("rv-plain", "arch = \"riscv64\"\n"),
    ] {
        std::fs::write(configs.join(format!("{name}.toml")), text).unwrap();
    }
    let list = boot(root.path(), &["--list", "--verbose"]);
    assert!(list.status.success(), "{}", text(&list));
    let ignored = boot(root.path(), &["--list", "--verbose", "--ignored"]);
    assert!(ignored.status.success(), "{}", text(&ignored));
    let filtered = boot(root.path(), &["--list", "--verbose", "arm", "good"]);
    assert!(filtered.status.success(), "{}", text(&filtered));
    let out = format!(
        "$ --list --verbose\n{}\n$ --list --verbose --ignored\n{}\n$ --list --verbose arm good\n{}",
        String::from_utf8_lossy(&list.stdout),
        String::from_utf8_lossy(&ignored.stdout),
        String::from_utf8_lossy(&filtered.stdout),
    );
    insta::assert_snapshot!(out.replace(&root.path().display().to_string(), "[root]"));
}
