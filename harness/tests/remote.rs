//! Remote runs against a real `sshd` started on 127.0.0.1 with throwaway keys: the verdicts
//! match local runs, and neither a QEMU process nor the remote temp dir survives a run, not
//! even when the runner is SIGKILLed mid-boot.

mod support;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vmharness::arch::Arch;
use vmharness::outcome::Report;
use vmharness::remote::Remote;
use vmharness::run::{self, Resolver, RunOptions};

const SSHD: &str = "/usr/sbin/sshd";
const CHILD_ENV: &str = "VMHARNESS_REMOTE_CHILD";

/// An sshd on a random local port; killed on drop.
struct Sshd {
    child: Child,
    remote: Remote,
    _dir: tempfile::TempDir,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen runs (apt-get install openssh-client)");
    assert!(status.success(), "ssh-keygen failed");
}

fn start_sshd() -> Sshd {
    assert!(
        Path::new(SSHD).is_file(),
        "{SSHD} is missing: apt-get install openssh-server (or cargo xtask setup)"
    );
    let dir = tempfile::tempdir().unwrap();
    let host_key = dir.path().join("host_key");
    let user_key = dir.path().join("user_key");
    keygen(&host_key);
    keygen(&user_key);
    let authorized = dir.path().join("authorized_keys");
    std::fs::copy(user_key.with_extension("pub"), &authorized).unwrap();
    let config = dir.path().join("sshd_config");
    std::fs::write(&config, "").unwrap();
    std::fs::create_dir_all("/run/sshd").unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let option = |text: String| ["-o".to_string(), text];
    let mut command = Command::new(SSHD);
    command.args(["-D", "-e", "-f"]).arg(&config);
    for (key, value) in [
        ("ListenAddress", "127.0.0.1".to_string()),
        ("Port", port.to_string()),
        ("HostKey", host_key.display().to_string()),
        ("AuthorizedKeysFile", authorized.display().to_string()),
        ("PidFile", dir.path().join("sshd.pid").display().to_string()),
        ("UsePAM", "no".into()),
        ("StrictModes", "no".into()),
        ("PermitRootLogin", "yes".into()),
        ("PasswordAuthentication", "no".into()),
    ] {
        command.args(option(format!("{key}={value}")));
    }
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sshd");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "sshd never listened on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let remote = Remote {
        destination: format!("{user}@127.0.0.1"),
        port: Some(port),
        identity: Some(user_key),
        ssh_options: vec![
            "StrictHostKeyChecking=no".into(),
            format!(
                "UserKnownHostsFile={}",
                dir.path().join("known_hosts").display()
            ),
            "LogLevel=ERROR".into(),
        ],
    };
    Sshd {
        child,
        remote,
        _dir: dir,
    }
}

fn run_with(path: &Path, remote: Option<Remote>) -> Report {
    let loaded = vmharness::config::load(path).expect("config loads");
    let logs = path.parent().unwrap().join("logs");
    let suffix = if remote.is_some() { "remote" } else { "local" };
    let options = RunOptions {
        log_dir: Some(logs.join(format!("{}-{suffix}", loaded.name))),
        remote,
        ..RunOptions::default()
    };
    run::run(&loaded, &Resolver::from_env(), options)
}

/// The remote temp dir named in the report's notes.
fn remote_dir(report: &Report) -> PathBuf {
    let note = report
        .notes
        .iter()
        .find_map(|n| match n {
            vmharness::run::Note::Remote { dir, .. } => Some(dir.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no remote note in {report}"));
    PathBuf::from(note)
}

/// Pids of QEMU processes whose command line contains `marker`.
fn qemu_with(marker: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline);
        let is_zombie = std::fs::read_to_string(entry.path().join("stat"))
            .map(|s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')))
            .unwrap_or(true);
        if cmdline.starts_with("qemu-system") && cmdline.contains(marker) && !is_zombie {
            found.push(pid);
        }
    }
    found
}

fn wait_until(what: &str, seconds: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn banner_passes_remotely_and_cleans_up() {
    let sshd = start_sshd();
    let dir = tempfile::tempdir().unwrap();
    let marker = format!("vmh-remote-banner-{}", std::process::id());
    let path = support::selftest_config(
        dir.path(),
        "remote-banner",
        Arch::X86_64,
        "banner",
        "[console]\nbanner = [\"vmharness selftest x86_64\", \"selftest: ok\"]\n\
         [timeouts]\ntotal = \"60s\"\nno_output = \"30s\"\n",
    );
    let mut text = std::fs::read_to_string(&path).unwrap();
    text = text.replace("args = [", &format!("args = [\"-name\", \"{marker}\", "));
    std::fs::write(&path, text).unwrap();
    let report = run_with(&path, Some(sshd.remote.clone()));
    assert!(report.outcome.is_pass(), "{report}");
    let remote_dir = remote_dir(&report);
    assert!(!remote_dir.exists(), "{} survived", remote_dir.display());
    wait_until("remote QEMU to exit", 10, || qemu_with(&marker).is_empty());
}

/// `~.` at the start of a line is ssh's disconnect escape unless the console runs `-e none`:
/// it must reach the guest like any other text.
#[test]
fn a_tilde_dot_line_reaches_the_remote_guest() {
    let sshd = start_sshd();
    let dir = tempfile::tempdir().unwrap();
    let steps = "[console]\nbanner = [\"echo: ready\"]\n\
        [[console.steps]]\nsend_line = \"first\"\n\
        [[console.steps]]\nexpect = \"echo: first\"\n\
        [[console.steps]]\nsend_line = \"~.\"\n\
        [[console.steps]]\nexpect = \"echo: ~\\\\.\"\n\
        [[console.steps]]\nsend_line = \"exit\"\n\
        [timeouts]\ntotal = \"60s\"\n";
    let path = support::selftest_config(dir.path(), "remote-tilde", Arch::X86_64, "echo", steps);
    let report = run_with(&path, Some(sshd.remote.clone()));
    assert!(report.outcome.is_pass(), "{report}");
}

#[test]
fn panic_fails_remotely_with_the_local_message() {
    let sshd = start_sshd();
    let dir = tempfile::tempdir().unwrap();
    let path = support::selftest_config(
        dir.path(),
        "remote-panic",
        Arch::X86_64,
        "panic 3",
        "[timeouts]\ntotal = \"60s\"\nno_output = \"30s\"\n",
    );
    let local = run_with(&path, None);
    let remote = run_with(&path, Some(sshd.remote.clone()));
    assert!(
        matches!(local.outcome, vmharness::outcome::Outcome::Fail { .. }),
        "{local}"
    );
    assert_eq!(
        remote.outcome.to_string(),
        local.outcome.to_string(),
        "remote:\n{remote}\nlocal:\n{local}"
    );
    assert!(!remote_dir(&remote).exists());
}

#[test]
fn child_mode_boots_a_hanging_guest_remotely() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return; // only does something when started by the test below
    };
    let (dir, remote) = child_remote(&spec);
    let dir = dir.as_str();
    let path = support::selftest_config(
        Path::new(dir),
        "remote-hang",
        Arch::X86_64,
        "hang",
        "[console]\nsuccess = \"never\"\n[timeouts]\ntotal = \"1h\"\nno_output = \"1h\"\n",
    );
    let marker = format!("vmh-remote-hang-{}", Path::new(dir).display());
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("args = [", &format!("args = [\"-name\", \"{marker}\", ")),
    )
    .unwrap();
    run_with(&path, Some(remote));
}

/// The child-mode environment for `dir` and this sshd (read back by [`child_remote`]).
fn child_spec(sshd: &Sshd, dir: &Path) -> String {
    let remote = &sshd.remote;
    let known = remote.ssh_options[1].trim_start_matches("UserKnownHostsFile=");
    [
        dir.display().to_string(),
        remote.port.unwrap().to_string(),
        remote.identity.as_ref().unwrap().display().to_string(),
        known.to_string(),
    ]
    .join("\u{1f}")
}

/// The remote described by the child-mode environment.
fn child_remote(spec: &str) -> (String, Remote) {
    let mut parts = spec.splitn(4, '\u{1f}');
    let (dir, port, identity, known) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let remote = Remote {
        destination: "root@127.0.0.1".into(),
        port: Some(port.parse().unwrap()),
        identity: Some(identity.into()),
        ssh_options: vec![
            "StrictHostKeyChecking=no".into(),
            format!("UserKnownHostsFile={known}"),
        ],
    };
    (dir.to_string(), remote)
}

#[test]
fn child_mode_stages_a_big_disk_remotely() {
    let Ok(spec) = std::env::var(STAGING_CHILD_ENV) else {
        return; // only does something when started by the test below
    };
    let (dir, remote) = child_remote(&spec);
    // A 4 GiB (sparse) image takes seconds to stream: the parent kills us meanwhile.
    let path = support::selftest_config(
        Path::new(&dir),
        "remote-staging",
        Arch::X86_64,
        "banner",
        "[disk]\nsize = \"4G\"\n[[disk.entries]]\ndest = \"/a.txt\"\ntext = \"a\"\n",
    );
    run_with(&path, Some(remote));
}

const STAGING_CHILD_ENV: &str = "VMHARNESS_REMOTE_STAGING_CHILD";

/// The remote dirs holding a disk image being staged.
fn staging_dirs() -> Vec<PathBuf> {
    let tmp = std::env::var_os("TMPDIR").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    std::fs::read_dir(tmp)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmharness."))
        })
        .filter(|p| {
            std::fs::read_dir(p)
                .into_iter()
                .flatten()
                .flatten()
                .any(|f| f.file_name().to_string_lossy().ends_with("disk.img"))
        })
        .collect()
}

/// A SIGKILL while files are being copied to the host leaves no copy running and no remote
/// temp dir: the copies die with the runner and the keeper session removes the dir when its
/// connection drops.
#[test]
fn sigkill_during_staging_leaves_no_copy_or_remote_dir() {
    let sshd = start_sshd();
    let dir = tempfile::tempdir().unwrap();
    let spec = child_spec(&sshd, dir.path());
    let before = staging_dirs();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["child_mode_stages_a_big_disk_remotely", "--exact"])
        .env(STAGING_CHILD_ENV, spec)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut staging = Vec::new();
    wait_until("the disk image to be staged", 60, || {
        staging = staging_dirs()
            .into_iter()
            .filter(|d| !before.contains(d))
            .collect();
        !staging.is_empty()
    });
    child.kill().unwrap(); // SIGKILL: no destructor in the child runs
    child.wait().unwrap();
    for remote_dir in &staging {
        let name = remote_dir.display().to_string();
        wait_until("the copy to stop", 20, || !process_mentions("ssh", &name));
        wait_until("the remote temp dir to go", 20, || !remote_dir.exists());
    }
}

/// Whether a process named `comm` has `text` in its command line.
fn process_mentions(comm: &str, text: &str) -> bool {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .any(|entry| {
            let name = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            name.trim() == comm && String::from_utf8_lossy(&cmdline).contains(text)
        })
}

#[test]
fn sigkilled_runner_leaves_no_remote_qemu_or_dir() {
    let sshd = start_sshd();
    let dir = tempfile::tempdir().unwrap();
    let spec = child_spec(&sshd, dir.path());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["child_mode_boots_a_hanging_guest_remotely", "--exact"])
        .env(CHILD_ENV, spec)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let marker = format!("vmh-remote-hang-{}", dir.path().display());
    wait_until("the remote QEMU to start", 60, || {
        !qemu_with(&marker).is_empty()
    });
    let qemu = qemu_with(&marker)[0];
    let cmdline = std::fs::read(format!("/proc/{qemu}/cmdline")).unwrap();
    let kernel = String::from_utf8_lossy(&cmdline)
        .split('\0')
        .skip_while(|a| *a != "-kernel")
        .nth(1)
        .map(PathBuf::from)
        .expect("remote QEMU has -kernel");
    let remote_dir = kernel.parent().unwrap().to_path_buf();
    assert!(
        remote_dir
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("vmharness."),
        "{}",
        remote_dir.display()
    );
    assert!(remote_dir.is_dir());
    std::thread::sleep(Duration::from_millis(500));
    child.kill().unwrap(); // SIGKILL: no destructor in the child runs
    child.wait().unwrap();
    wait_until("the remote QEMU to die", 20, || {
        qemu_with(&marker).is_empty()
    });
    wait_until("the remote temp dir to go", 20, || !remote_dir.exists());
}

#[test]
fn missing_remote_qemu_is_an_infrastructure_failure() {
    let sshd = start_sshd();
    let dir = tempfile::tempdir().unwrap();
    let path = support::selftest_config(dir.path(), "remote-noqemu", Arch::X86_64, "banner", "");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace(
            "kernel =",
            "binary = \"qemu-system-does-not-exist\"\nkernel =",
        ),
    )
    .unwrap();
    let report = run_with(&path, Some(sshd.remote.clone()));
    assert!(report.outcome.is_infra(), "expected INFRA, got {report}");
    let reason = report.outcome.explained();
    assert!(reason.contains("qemu-system-does-not-exist"), "{reason}");
}
