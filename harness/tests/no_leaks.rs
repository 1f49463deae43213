//! No QEMU outlives its runner, even when the runner is SIGKILLed mid-boot.
//!
//! The test re-runs this binary in "child" mode: the child boots a guest that hangs forever,
//! the parent finds the child's QEMU in the process table, SIGKILLs the child and checks that
//! QEMU is gone (PR_SET_PDEATHSIG, set on the process-lifetime spawner thread).

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vmharness::arch::Arch;

const CHILD_ENV: &str = "VMHARNESS_NO_LEAKS_CHILD_DIR";

#[test]
fn child_mode_boots_a_hanging_guest() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return; // only does something when started by the test below
    };
    let path = support::selftest_config(
        std::path::Path::new(&dir),
        "hang-forever",
        Arch::X86_64,
        "hang",
        "[console]\nsuccess = \"never\"\n[timeouts]\ntotal = \"1h\"\nno_output = \"1h\"\n",
    );
    support::run_config(&path);
}

const SAVE_CHILD_ENV: &str = "VMHARNESS_NO_LEAKS_SAVE_CHILD_DIR";

/// A case whose boot to `[ready]` (to save the state there) never ends.
#[test]
fn child_mode_saves_a_state_that_never_gets_ready() {
    let Some(dir) = std::env::var_os(SAVE_CHILD_ENV) else {
        return; // only does something when started by the test below
    };
    let path = never_ready(std::path::Path::new(&dir));
    let loaded = vmharness::config::load(&path).unwrap();
    let settings = support::settings();
    let options = vmharness::run::RunOptions {
        settings: Some(settings.clone()),
        ..Default::default()
    };
    let resolver = vmharness::run::Resolver::from_settings(&settings);
    vmharness::run::run_case(&loaded, "one", &resolver, options);
}

/// An echo config whose `[ready]` line never comes (unless `ready` is given).
fn never_ready(dir: &std::path::Path) -> std::path::PathBuf {
    support::selftest_config(
        dir,
        "never-ready",
        Arch::X86_64,
        "echo",
        "[console]\nbanner = [\"vmharness selftest\"]\n[ready]\nexpect = \"^never$\"\n\
         [[case]]\nname = \"one\"\nsteps = [{ send_line = \"one\" }, { expect = \"^echo: one$\" }]\n\
         [timeouts]\ntotal = \"1h\"\nno_output = \"1h\"\nstep = \"1h\"\n",
    )
}

/// (pid, parent pid, command name) of every process.
fn processes() -> Vec<(i32, i32, String)> {
    let mut list = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_string();
        let mut rest = stat[close + 2..].split(' ');
        let state = rest.next().unwrap_or("");
        let ppid = rest.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if state != "Z" {
            list.push((pid, ppid, comm));
        }
    }
    list
}

/// Starts the hanging child with its state under `target`; returns it and its QEMU's pid once
/// QEMU runs.
// The caller waits for the child it gets back.
#[allow(clippy::zombie_processes)]
fn hanging_child(dir: &std::path::Path, target: &std::path::Path) -> (std::process::Child, i32) {
    child_with_qemu("child_mode_boots_a_hanging_guest", CHILD_ENV, dir, target)
}

/// Starts this binary's child-mode test `test` (`env` set to `dir`) with its state under
/// `target`; returns it and its QEMU's pid once QEMU runs.
#[allow(clippy::zombie_processes)]
fn child_with_qemu(
    test: &str,
    env: &str,
    dir: &std::path::Path,
    target: &std::path::Path,
) -> (std::process::Child, i32) {
    let settings = support::settings();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture"])
        .env(env, dir)
        .env("CARGO_TARGET_DIR", target)
        .env("VMHARNESS_CACHE", &settings.artifacts.cache_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let child_pid = child.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = processes()
            .into_iter()
            .find(|(_, ppid, comm)| *ppid == child_pid && comm.starts_with("qemu-system"));
        if let Some((pid, _, _)) = found {
            return (child, pid);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the child never started QEMU");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child runner killed when the test ends before signalling it (a failed assertion), so a
/// failing test leaves no runner and no QEMU behind.
struct Reaped(std::process::Child);

impl std::ops::Deref for Reaped {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The QEMU `parent` runs (waiting up to a minute for it to start).
fn qemu_child_of(parent: i32) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = processes()
            .into_iter()
            .find(|(_, ppid, comm)| *ppid == parent && comm.starts_with("qemu-system"));
        if let Some((pid, _, _)) = found {
            return pid;
        }
        assert!(Instant::now() < deadline, "{parent} never started QEMU");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn temp_dirs(target: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(target.join("vmharness/tmp"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn wait_gone(pid: i32, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while processes().iter().any(|(p, _, _)| *p == pid) {
        assert!(
            Instant::now() < deadline,
            "{what} (pid {pid}) is still running"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every termination signal removes the run's private temp dir and QEMU; after a SIGKILL,
/// which no handler sees, the next run sweeps the dir of the dead process.
#[test]
fn terminated_runners_leave_no_temp_dirs() {
    use nix::sys::signal::{kill, Signal};
    for signal in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGKILL,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        let (mut child, qemu) = hanging_child(dir.path(), &target);
        let owner = format!("vmh{}-", child.id());
        let mine: Vec<String> = temp_dirs(&target)
            .into_iter()
            .filter(|d| d.starts_with(&owner))
            .collect();
        assert_eq!(mine.len(), 1, "{signal}: {mine:?}");
        kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
        child.wait().unwrap();
        wait_gone(qemu, "QEMU");
        let left = temp_dirs(&target);
        if signal == Signal::SIGKILL {
            assert_eq!(left, mine, "{signal}");
            vmharness::run::sweep_temp_dirs(&target.join("vmharness/tmp"));
            assert!(
                temp_dirs(&target).is_empty(),
                "the sweep left {:?}",
                temp_dirs(&target)
            );
        } else {
            assert!(left.is_empty(), "{signal} left {left:?}");
        }
    }
}

#[test]
fn sigkilled_runner_leaves_no_qemu_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, qemu_pid) = hanging_child(dir.path(), &dir.path().join("target"));
    // Let the guest reach its hang.
    std::thread::sleep(Duration::from_millis(500));
    child.kill().unwrap(); // SIGKILL: no destructor in the child runs
    child.wait().unwrap();
    wait_gone(qemu_pid, "QEMU outliving its SIGKILLed runner");
}

/// The states being made (`.new-*`) under `target`.
fn half_made_states(target: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(target.join("vmharness/states"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with(".new-"))
                .collect()
        })
        .unwrap_or_default()
}

/// A runner told to terminate while it boots to `[ready]` to save a state removes the state it
/// was making; after a SIGKILL, the next case run's store sweeps it.
#[test]
fn terminated_saves_leave_no_half_made_states() {
    use nix::sys::signal::{kill, Signal};
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGKILL] {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        let (child, _) = child_with_qemu(
            "child_mode_saves_a_state_that_never_gets_ready",
            SAVE_CHILD_ENV,
            dir.path(),
            &target,
        );
        let mut child = Reaped(child);
        // The first QEMU may be the KVM probe's, started before the state is begun: wait for
        // the state being made, then take the QEMU that boots to save it.
        let deadline = Instant::now() + Duration::from_secs(60);
        while half_made_states(&target).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let made = half_made_states(&target);
        assert_eq!(made.len(), 1, "{signal}: {made:?}");
        let qemu = qemu_child_of(child.id() as i32);
        kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
        child.wait().unwrap();
        wait_gone(qemu, "QEMU");
        if signal == Signal::SIGKILL {
            assert_eq!(half_made_states(&target), made, "{signal}");
            // The next case run, here one that does get ready.
            let path = never_ready(dir.path());
            let text = std::fs::read_to_string(&path)
                .unwrap()
                .replace("^never$", "^echo: ready$");
            std::fs::write(&path, text).unwrap();
            let mut settings = support::settings();
            settings.target_dir = target.clone();
            let loaded = vmharness::config::load(&path).unwrap();
            let options = vmharness::run::RunOptions {
                settings: Some(settings.clone()),
                ..Default::default()
            };
            let resolver = vmharness::run::Resolver::from_settings(&settings);
            let report = vmharness::run::run_case(&loaded, "one", &resolver, options);
            assert!(report.outcome.is_pass(), "{report}");
        }
        let left = half_made_states(&target);
        assert!(left.is_empty(), "{signal} left {left:?}");
    }
}
