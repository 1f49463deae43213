//! `cargo xtask qemu` driven for real: the built xtask binary on a pty (rexpect), the selftest
//! guests under TCG, keys typed into the guest, the escape key, exit codes, `--print-cmd`, `--gdb`.

use std::io::{Read, Write};

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod support;

use anyhow::{ensure, Context, Result};
use nix::sys::termios::{tcgetattr, LocalFlags};
use rexpect::session::{spawn_command, PtySession};

/// QEMU arguments that select a selftest scenario on x86_64/aarch64 (fw_cfg).
fn scenario(name: &str) -> [String; 4] {
    [
        "--qemu-arg".into(),
        "-fw_cfg".into(),
        "--qemu-arg".into(),
        format!("name=opt/vmharness/scenario,string={name}"),
    ]
}

/// A QEMU `-name` that lets the test find this run's QEMU in /proc.
fn marker_args(marker: &str) -> [String; 4] {
    [
        "--qemu-arg".into(),
        "-name".into(),
        "--qemu-arg".into(),
        marker.into(),
    ]
}

fn unique_marker(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("vmh-{test}-{}-{nanos}", std::process::id())
}

/// Pids of live processes whose program name contains `program` and whose command line
/// contains `marker`.
fn processes_with(program: &str, marker: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != std::process::id())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|cmdline| {
                    let cmdline = String::from_utf8_lossy(&cmdline);
                    let argv0 = cmdline.split('\0').next().unwrap_or_default();
                    argv0.contains(program) && cmdline.contains(marker)
                })
                .unwrap_or(false)
        })
        .filter(|pid| {
            // A zombie has exited already.
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|stat| !stat.contains(") Z "))
                .unwrap_or(false)
        })
        .collect()
}

/// Waits until no QEMU carries `marker`; returns the pids left after `limit`.
fn wait_until_qemu_gone(marker: &str, limit: Duration) -> Vec<u32> {
    let deadline = Instant::now() + limit;
    loop {
        let left = processes_with("qemu-system", marker);
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn shell_quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// Spawns `stty -g; xtask qemu ARGS; echo rc=$?; stty -g` in a shell on a fresh pty.
fn spawn_interactive(args: &[String]) -> Result<PtySession> {
    spawn_interactive_with(&[], args)
}

/// [`spawn_interactive`] with `env` set for xtask.
fn spawn_interactive_with(env: &[(&str, String)], args: &[String]) -> Result<PtySession> {
    let line = env
        .iter()
        .map(|(name, value)| format!("{name}={}", shell_quote(value)))
        .chain(std::iter::once(shell_quote(
            &support::xtask().display().to_string(),
        )))
        .chain(std::iter::once("qemu".to_string()))
        .chain(args.iter().map(|arg| shell_quote(arg)))
        .collect::<Vec<_>>()
        .join(" ");
    let script =
        format!("echo \"before=$(stty -g)\"; {line}; echo \"rc=$?\"; echo \"after=$(stty -g)\"");
    let mut command = Command::new("sh");
    command.args(["-c", &script]);
    Ok(spawn_command(command, Some(60_000))?)
}

fn expect_settings(session: &mut PtySession, which: &str) -> Result<String> {
    let (_, matched) = session.exp_regex(&format!("{which}=[0-9a-f:]+"))?;
    Ok(matched.trim_start_matches(&format!("{which}=")).to_string())
}

/// The terminal mode xtask left on the pty (the master reports the slave's settings).
fn pty_is_raw(session: &PtySession) -> Result<bool> {
    let master = session.process.get_file_handle()?;
    let settings = tcgetattr(&master).context("tcgetattr on the pty master")?;
    Ok(!settings
        .local_flags
        .intersects(LocalFlags::ICANON | LocalFlags::ISIG | LocalFlags::ECHO))
}

#[test]
fn interactive_echo_then_escape_after_verdict_passes_and_restores_the_terminal() -> Result<()> {
    let marker = unique_marker("interactive-pass");
    let mut args = vec!["x86_64".to_string(), "--accel".into(), "tcg".into()];
    args.extend(scenario("echo"));
    args.extend(marker_args(&marker));
    args.extend([
        "--set".into(),
        r#"console.banner=["vmharness selftest x86_64"]"#.into(),
        "--set".into(),
        r#"console.success="echo: ready""#.into(),
    ]);
    let mut session = spawn_interactive(&args)?;
    let before = expect_settings(&mut session, "before")?;
    session.exp_string("echo: ready")?;
    session.exp_string("[vmharness] verdict: PASS")?;
    ensure!(
        pty_is_raw(&session)?,
        "the terminal is not in raw mode during the session"
    );
    ensure!(
        !processes_with("qemu-system", &marker).is_empty(),
        "QEMU should run while the console is attached"
    );
    // Raw mode: Enter arrives as `\r`, and Ctrl-C goes to the guest instead of killing xtask.
    session.send("hello vmharness\r")?;
    session.flush()?;
    session.exp_string("echo: hello vmharness")?;
    session.send_control('c')?;
    session.send("\rstill here\r")?;
    session.flush()?;
    session.exp_string("echo: still here")?;
    session.send_control(']')?;
    session.exp_string("PASS selftest-x86_64")?;
    session.exp_string("rc=0")?;
    expect_restored_and_qemu_gone(&mut session, &before, &marker, "after the escape key")?;
    session.exp_eof()?;
    Ok(())
}

#[test]
fn escape_before_the_verdict_fails_and_kills_qemu() -> Result<()> {
    let marker = unique_marker("interactive-quit");
    let mut args = vec!["aarch64".to_string(), "--accel".into(), "tcg".into()];
    args.extend(scenario("echo"));
    args.extend(marker_args(&marker));
    let mut session = spawn_interactive(&args)?;
    let before = expect_settings(&mut session, "before")?;
    session.exp_string("echo: ready")?;
    session.send("typed line\r")?;
    session.flush()?;
    session.exp_string("echo: typed line")?;
    ensure!(
        !processes_with("qemu-system", &marker).is_empty(),
        "QEMU should be running"
    );
    session.send_control(']')?;
    session.exp_string("FAIL selftest-aarch64: the console was closed with the escape key")?;
    session.exp_string("rc=1")?;
    expect_restored_and_qemu_gone(&mut session, &before, &marker, "after the escape key")?;
    Ok(())
}

#[test]
fn sigterm_restores_the_terminal_and_stops_qemu() -> Result<()> {
    let marker = unique_marker("interactive-signal");
    let mut args = vec!["x86_64".to_string(), "--accel".into(), "tcg".into()];
    args.extend(scenario("echo"));
    args.extend(marker_args(&marker));
    let mut session = spawn_interactive(&args)?;
    let before = expect_settings(&mut session, "before")?;
    session.exp_string("echo: ready")?;
    ensure!(
        pty_is_raw(&session)?,
        "the terminal is not in raw mode during the session"
    );
    let qemu = processes_with("qemu-system", &marker);
    ensure!(!qemu.is_empty(), "QEMU should be running");
    let xtask_pid = processes_with(&support::xtask().display().to_string(), &marker);
    ensure!(
        xtask_pid.len() == 1,
        "expected one xtask process, found {xtask_pid:?}"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(xtask_pid[0] as i32),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    session.exp_string("caught signal 15")?;
    session.exp_string("rc=143")?;
    expect_restored_and_qemu_gone(&mut session, &before, &marker, "after xtask ended")?;
    Ok(())
}

/// The terminal settings printed after xtask ended equal `before`, and no QEMU tagged with
/// `marker` is left.
fn expect_restored_and_qemu_gone(
    session: &mut PtySession,
    before: &str,
    marker: &str,
    when: &str,
) -> Result<()> {
    let after = expect_settings(session, "after")?;
    ensure!(
        before == after,
        "terminal settings changed:\n before {before}\n after  {after}"
    );
    let left = wait_until_qemu_gone(marker, Duration::from_secs(5));
    ensure!(left.is_empty(), "QEMU still running {when}: pids {left:?}");
    Ok(())
}

fn check(args: &[&str]) -> Result<Output> {
    Ok(Command::new(support::xtask())
        .arg("qemu")
        .args(args)
        .stdin(Stdio::null())
        .output()?)
}

fn code_of(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

#[test]
fn check_exit_codes_follow_the_verdict() -> Result<()> {
    let cases: [(&[&str], i32, &str); 5] = [
        (
            &["aarch64", "--check", "--accel", "tcg"],
            0,
            "PASS selftest-aarch64",
        ),
        (
            &[
                "aarch64",
                "--check",
                "--qemu-arg",
                "-fw_cfg",
                "--qemu-arg",
                "name=opt/vmharness/scenario,string=panic 2",
            ],
            1,
            "FAIL selftest-aarch64",
        ),
        (
            &[
                "riscv64",
                "--check",
                "--append",
                "hang",
                "--set",
                "timeouts.total=\"2s\"",
            ],
            2,
            "TIMEOUT selftest-riscv64: total timeout",
        ),
        (
            &[
                "x86_64",
                "--check",
                "--set",
                "qemu.binary=\"/nonexistent/qemu-system-x86_64\"",
            ],
            3,
            "INFRA selftest-x86_64",
        ),
        (
            &["x86_64", "--check", "--set", "ignore=\"not on this host\""],
            4,
            "SKIPPED selftest-x86_64: not on this host",
        ),
    ];
    for (args, code, needle) in cases {
        let output = check(args)?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        ensure!(
            code_of(&output) == code && stderr.contains(needle),
            "xtask qemu {}: expected exit {code} and `{needle}`, got {}:\n{stderr}",
            args.join(" "),
            code_of(&output)
        );
    }
    // `--check` never touches stdin: the guest sees no input even when some is waiting.
    let mut child = Command::new(support::xtask())
        .args([
            "qemu",
            "x86_64",
            "--check",
            "--set",
            r#"console.banner=["echo: hi"]"#,
        ])
        .args(scenario("echo"))
        .args(["--set", "timeouts.total=\"3s\""])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().context("stdin")?.write_all(b"hi\r")?;
    let output = child.wait_with_output()?;
    ensure!(
        code_of(&output) == 2,
        "stdin reached the guest under --check: {output:?}"
    );
    Ok(())
}

#[test]
fn print_cmd_is_a_shell_line_that_boots_the_guest() -> Result<()> {
    let output = check(&["aarch64", "--print-cmd", "--accel", "tcg"])?;
    ensure!(output.status.success(), "{output:?}");
    let line = String::from_utf8(output.stdout)?.trim().to_string();
    ensure!(
        line.contains("qemu-system-aarch64") && line.contains("-kernel"),
        "{line}"
    );
    let mut child = Command::new("sh")
        .args(["-c", &line])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut console = String::new();
    child
        .stdout
        .take()
        .context("stdout")?
        .read_to_string(&mut console)?;
    let status = child.wait()?;
    ensure!(
        console.contains("vmharness selftest aarch64") && console.contains("selftest: ok"),
        "pasting the printed line did not boot the guest: {status}\n{console}"
    );
    Ok(())
}

#[test]
fn gdb_waits_for_the_debugger_and_prints_how_to_attach() -> Result<()> {
    let output = check(&["x86_64", "--print-cmd", "--gdb", "--accel", "tcg"])?;
    ensure!(output.status.success(), "{output:?}");
    let line = String::from_utf8(output.stdout)?;
    // Loopback only: `-s` would listen on every interface, and anyone who can reach the
    // machine could attach a debugger to the guest.
    ensure!(
        line.trim_end().ends_with("-gdb tcp:127.0.0.1:1234 -S"),
        "no loopback gdb stub in {line}"
    );
    ensure!(!line.contains(" -s "), "`-s` in {line}");
    let hint = String::from_utf8(output.stderr)?;
    ensure!(
        hint.contains("gdb-multiarch /") && hint.contains("selftest.elf -ex 'target remote :1234'"),
        "{hint}"
    );

    // For real: QEMU waits (timeouts are off) until a debugger says `continue`.
    let mut child = Command::new(support::xtask())
        .args(["qemu", "x86_64", "--check", "--gdb", "--accel", "tcg"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut stream = loop {
        if let Ok(stream) = std::net::TcpStream::connect("127.0.0.1:1234") {
            break stream;
        }
        ensure!(
            Instant::now() < deadline,
            "QEMU's gdb stub never listened on :1234"
        );
        ensure!(
            child.try_wait()?.is_none(),
            "xtask exited before gdb attached"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(500));
    ensure!(
        child.try_wait()?.is_none(),
        "QEMU did not wait for the debugger"
    );
    let listeners = gdb_listeners()?;
    ensure!(
        listeners == ["0100007F"],
        "the gdb stub listens on {listeners:?} (want 127.0.0.1 only)"
    );
    // The gdb remote protocol: `c` (continue), checksum 0x63.
    stream.write_all(b"$c#63")?;
    let output = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        code_of(&output) == 0 && stdout.contains("selftest: ok"),
        "{output:?}"
    );
    Ok(())
}

/// Local addresses (kernel hex form) of sockets listening on port 1234, IPv4 and IPv6.
fn gdb_listeners() -> Result<Vec<String>> {
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state)) = (fields.get(1), fields.get(3)) else {
                continue;
            };
            if let Some(address) = local.strip_suffix(":04D2") {
                if *state == "0A" {
                    found.push(address.to_string());
                }
            }
        }
    }
    Ok(found)
}

/// Huge durations and scales are mistakes reported before anything runs, with a documented
/// exit code, never a panic (exit 101): in the config (located), in `--set`, in the environment.
#[test]
fn huge_durations_and_scales_exit_with_a_message_not_a_panic() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("huge.toml");
    std::fs::write(&config, "arch = \"aarch64\"\n[timeouts]\ntotal = 1.8e19\n")?;
    let config = config.display().to_string();
    type Case<'a> = (&'a [&'a str], Option<(&'a str, &'a str)>, &'a str);
    let cases: [Case; 4] = [
        (&["--config", &config, "--check"], None, "huge.toml:3:9:"),
        (
            &["aarch64", "--check", "--set", "timeouts.tcg_scale=1e300"],
            None,
            "tcg_scale",
        ),
        (
            &["aarch64", "--check", "--set", "timeouts.step=1e20"],
            None,
            "365 days",
        ),
        (
            &["aarch64", "--check"],
            Some(("VMHARNESS_TIMEOUT_SCALE", "1e300")),
            "VMHARNESS_TIMEOUT_SCALE=`1e300`",
        ),
    ];
    for (args, env, expected) in cases {
        let mut command = Command::new(support::xtask());
        command.arg("qemu").args(args).stdin(Stdio::null());
        if let Some((key, value)) = env {
            command.env(key, value);
        }
        let output = command.output()?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        ensure!(
            code_of(&output) == 1,
            "{args:?}: exit {}\n{stderr}",
            code_of(&output)
        );
        ensure!(stderr.contains(expected), "{args:?}: {stderr}");
        ensure!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    Ok(())
}

/// `--case` runs one case from the saved state, then leaves the console to the user.
#[test]
fn a_case_runs_interactively_from_the_saved_state() -> Result<()> {
    let marker = unique_marker("interactive-case");
    let config = support::root().join("vm-configs/selftest-echo-x86_64.toml");
    let mut args = vec![
        "--config".to_string(),
        config.display().to_string(),
        "--case".into(),
        "hello".into(),
        "--accel".into(),
        "tcg".into(),
    ];
    args.extend(marker_args(&marker));
    let mut session = spawn_interactive(&args)?;
    let before = expect_settings(&mut session, "before")?;
    session.exp_string("echo: hello")?;
    session.exp_string("[vmharness] verdict: PASS")?;
    session.send("more\r")?;
    session.flush()?;
    session.exp_string("echo: more")?;
    session.send_control(']')?;
    session.exp_string("PASS selftest-echo-x86_64::hello")?;
    session.exp_string("started from the state saved at [ready]")?;
    session.exp_string("rc=0")?;
    expect_restored_and_qemu_gone(&mut session, &before, &marker, "after the escape key")?;
    session.exp_eof()?;

    let output = check(&[
        "--config",
        &config.display().to_string(),
        "--case",
        "nosuch",
        "--check",
    ])?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(code_of(&output) != 0, "{output:?}");
    ensure!(
        stderr.contains("no case `nosuch` (its cases: hello, two-lines, exit)"),
        "{stderr}"
    );
    Ok(())
}

/// Every `cargo xtask qemu` run writes its `result.toml` (and `junit.xml` with sub-results)
/// next to its console log, and `latest` points at a recorded run: `--check`, `--case`, and
/// an interactive session.
#[test]
fn every_run_is_recorded() -> Result<()> {
    let target = tempfile::tempdir()?;
    let cache = vmharness::settings::Settings::from_env()?
        .artifacts
        .cache_dir
        .display()
        .to_string();
    let env = [
        ("CARGO_TARGET_DIR", target.path().display().to_string()),
        ("VMHARNESS_CACHE", cache),
    ];
    let logs = target.path().join("vmharness").join("logs");
    let record = |test: &str| -> Result<vmharness::suite::ResultRecord> {
        let dir = vmharness::run::logs::latest_dir(&logs, test);
        vmharness::suite::ResultRecord::read(&dir.join("result.toml"))
            .with_context(|| format!("{test}: no record in {}", dir.display()))
    };
    let run = |args: &[&str]| -> Result<Output> {
        Ok(Command::new(support::xtask())
            .arg("qemu")
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .output()?)
    };

    // A pass.
    let output = run(&["aarch64", "--check", "--accel", "tcg"])?;
    ensure!(code_of(&output) == 0, "{output:?}");
    let passed = record("selftest-aarch64")?;
    ensure!(
        passed.outcome == vmharness::suite::Label::Pass,
        "{passed:?}"
    );
    ensure!(!passed.booted.is_empty(), "{passed:?}");

    // A guest reporting a failing KTAP case: its sub-results go to junit.xml too.
    let mut args = vec!["x86_64", "--check", "--accel", "tcg"];
    let ktap = scenario("ktap");
    args.extend(ktap.iter().map(String::as_str));
    args.extend([
        "--set",
        "results.ktap=true",
        "--set",
        r#"console.banner=["vmharness selftest x86_64"]"#,
        "--set",
        r##"console.success="# hang: started""##,
    ]);
    let output = run(&args)?;
    ensure!(code_of(&output) == 1, "{output:?}");
    let failed = record("selftest-x86_64")?;
    ensure!(
        failed.outcome == vmharness::suite::Label::Fail,
        "{failed:?}"
    );
    ensure!(!failed.sub_results.is_empty(), "{failed:?}");
    let junit = vmharness::run::logs::latest_dir(&logs, "selftest-x86_64").join("junit.xml");
    ensure!(junit.is_file(), "no {}", junit.display());

    // One case of a config, from its saved state.
    let config = support::root().join("vm-configs/selftest-echo-x86_64.toml");
    let config = config.display().to_string();
    let output = run(&["--config", &config, "--case", "hello", "--check"])?;
    ensure!(code_of(&output) == 0, "{output:?}");
    let case = record("selftest-echo-x86_64::hello")?;
    ensure!(case.outcome == vmharness::suite::Label::Pass, "{case:?}");
    ensure!(!case.booted.is_empty(), "{case:?}");

    // An interactive session ended with the escape key before the verdict.
    let marker = unique_marker("interactive-record");
    let mut args = vec!["aarch64".to_string(), "--accel".into(), "tcg".into()];
    args.extend(scenario("echo"));
    args.extend(marker_args(&marker));
    let mut session = spawn_interactive_with(&env, &args)?;
    let before = expect_settings(&mut session, "before")?;
    session.exp_string("echo: ready")?;
    session.send_control(']')?;
    session.exp_string("rc=1")?;
    expect_restored_and_qemu_gone(&mut session, &before, &marker, "after the escape key")?;
    let escaped = record("selftest-aarch64")?;
    ensure!(
        escaped.outcome == vmharness::suite::Label::Fail,
        "{escaped:?}"
    );
    ensure!(escaped.detail.contains("escape key"), "{escaped:?}");
    Ok(())
}
