//! Running QEMU on another machine (a remote KVM host) over OpenSSH.
//!
//! No agent of our own: `stage` makes a private temp dir on the host (`mktemp -d`), copies
//! every file the [`QemuSpec`] names into it over ssh, and returns a command that runs
//! `ssh -tt host 'exec sh -c "..."'` with the spec's argv built for the remote paths. The
//! console comes back over the ssh channel, so the verdict logic is unchanged. Cleanup happens on every exit path, SIGKILL included:
//! the dir belongs to a keeper ssh session that removes it when its connection or input ends;
//! every ssh process we start dies with us (parent-death signal), so a killed runner leaves no
//! copy running and its connections close; the QEMU script traps `EXIT HUP INT TERM`; a lost
//! connection hangs up the remote pty, which sends SIGHUP to QEMU; and `RemoteGuard` removes
//! the dir again on drop.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::accel::{Accel, Decision};
use crate::arch::AccelChoice;
use crate::arch::Arch;
use crate::qemu::{shell_quote, Argv, QemuSpec};

pub use crate::settings::{InvalidRemote, Remote};

/// Why a remote run could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// `ssh` could not be started.
    #[error("cannot run `{program}`: {source} (install openssh-client)")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A command on the host failed.
    #[error("on {destination}: {what} failed: {stderr}")]
    Command {
        /// The host.
        destination: String,
        /// What we tried.
        what: String,
        /// The command's stderr (trimmed).
        stderr: String,
    },
    /// The host has no QEMU binary for this guest.
    #[error("{destination} has no `{binary}` on PATH (install QEMU there)")]
    MissingQemu {
        /// The host.
        destination: String,
        /// The binary name.
        binary: String,
    },
    /// A file the command names does not exist locally.
    #[error("{option} {}: no such file to copy to the remote host", path.display())]
    MissingFile {
        /// The QEMU option.
        option: String,
        /// The local path.
        path: PathBuf,
    },
}

impl Remote {
    /// Options for every `ssh` call: never prompt, then port, identity and `-o` options.
    fn common_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["-o".into(), "BatchMode=yes".into()];
        if let Some(port) = self.port {
            args.push("-p".into());
            args.push(port.to_string().into());
        }
        if let Some(identity) = &self.identity {
            args.push("-i".into());
            args.push(identity.into());
            args.push("-o".into());
            args.push("IdentitiesOnly=yes".into());
        }
        for option in &self.ssh_options {
            args.push("-o".into());
            args.push(option.into());
        }
        args
    }

    /// Runs `script` on the host with the login shell and returns its stdout.
    fn run(&self, script: &str, what: &str) -> Result<String, RemoteError> {
        self.ssh(script, Stdio::null(), what)
    }

    /// Runs `script` on the host with `stdin`, returning its stdout; a non-zero exit is an error
    /// naming `what`.
    fn ssh(&self, script: &str, stdin: Stdio, what: &str) -> Result<String, RemoteError> {
        let output = self
            .ssh_command(script)
            .stdin(stdin)
            .output()
            .map_err(|source| RemoteError::Spawn {
                program: "ssh".into(),
                source,
            })?;
        if !output.status.success() {
            return Err(self.failed(what, &output.stderr));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `ssh -T host script`, killed when this process dies (so a SIGKILLed runner leaves no
    /// copy running and its connections close).
    fn ssh_command(&self, script: &str) -> Command {
        let mut command = Command::new("ssh");
        command
            .args(self.common_args())
            .arg("-T")
            .arg("--")
            .arg(&self.destination)
            .arg(script);
        // SAFETY: prctl is async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
                Ok(())
            });
        }
        command
    }

    fn failed(&self, what: &str, stderr: &[u8]) -> RemoteError {
        RemoteError::Command {
            destination: self.destination.clone(),
            what: what.to_string(),
            stderr: String::from_utf8_lossy(stderr).trim().to_string(),
        }
    }

    /// Streams `local` into `remote_path` over ssh (`cat >`): needs no sftp subsystem on the
    /// host, unlike modern `scp`.
    fn copy(&self, local: &Path, remote_path: &str) -> Result<(), RemoteError> {
        let file = std::fs::File::open(local).map_err(|_| RemoteError::MissingFile {
            option: "copy".into(),
            path: local.to_path_buf(),
        })?;
        self.ssh(
            &format!("cat > {}", shell_quote(remote_path)),
            Stdio::from(file),
            &format!("copying {}", local.display()),
        )?;
        Ok(())
    }
}

/// Owns the remote temp dir: a keeper session on the host holds it and removes it when its
/// connection ends, however this process ends (a SIGKILL closes the connection); dropping the
/// guard also removes it at once.
#[derive(Debug)]
pub(crate) struct RemoteGuard {
    remote: Remote,
    dir: String,
    keeper: std::process::Child,
}

impl RemoteGuard {
    /// The private temp dir on the host.
    pub(crate) fn dir(&self) -> &str {
        &self.dir
    }
}

impl Drop for RemoteGuard {
    fn drop(&mut self) {
        let script = format!("rm -rf -- {}", shell_quote(&self.dir));
        let _ = self.remote.run(&script, "removing the temp dir");
        // End of input ends the keeper, whose trap removes the dir too.
        drop(self.keeper.stdin.take());
        let _ = self.keeper.wait();
    }
}

/// The keeper's script: make the dir, say its name, hold it until the connection or input
/// ends, then remove it. Exit 3 if QEMU's binary is missing.
fn keeper_script(binary: &str) -> String {
    format!(
        "command -v {} >/dev/null || exit 3; \
         d=$(mktemp -d \"${{TMPDIR:-/tmp}}/vmharness.XXXXXXXX\") || exit 1; \
         trap 'rm -rf \"$d\"' EXIT; trap 'exit 129' HUP; trap 'exit 143' TERM; \
         echo \"$d\"; cat >/dev/null",
        shell_quote(binary)
    )
}

/// Starts the keeper session and reads the dir it made.
fn start_keeper(remote: &Remote, binary: &str) -> Result<RemoteGuard, RemoteError> {
    use std::io::BufRead;
    let mut keeper = remote
        .ssh_command(&keeper_script(binary))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| RemoteError::Spawn {
            program: "ssh".into(),
            source,
        })?;
    let mut line = String::new();
    if let Some(stdout) = keeper.stdout.take() {
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
    }
    let dir = line.trim().to_string();
    if dir.is_empty() {
        drop(keeper.stdin.take());
        let output = keeper.wait_with_output();
        let (code, stderr) = match output {
            Ok(output) => (output.status.code(), output.stderr),
            Err(_) => (None, Vec::new()),
        };
        return Err(match code {
            Some(3) => RemoteError::MissingQemu {
                destination: remote.destination.clone(),
                binary: binary.to_string(),
            },
            _ => remote.failed("creating a temp dir", &stderr),
        });
    }
    if !dir.starts_with('/') {
        drop(keeper.stdin.take());
        let _ = keeper.kill();
        let _ = keeper.wait();
        return Err(RemoteError::Command {
            destination: remote.destination.clone(),
            what: "mktemp -d".into(),
            stderr: format!("unexpected output `{dir}`"),
        });
    }
    Ok(RemoteGuard {
        remote: remote.clone(),
        dir,
        keeper,
    })
}

/// Picks the accelerator on the host: KVM when `/dev/kvm` there is read-writable and the
/// host's arch is the guest's (a cheaper check than the local probe guest).
pub(crate) fn choose_accel(
    remote: &Remote,
    choice: AccelChoice,
    arch: Arch,
) -> Result<Decision, RemoteError> {
    if choice == AccelChoice::Tcg {
        return Ok(Decision {
            accel: Accel::Tcg,
            fallback: None,
        });
    }
    let probe = "uname -m; if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then echo kvm; fi";
    let answer = remote.run(probe, "probing KVM")?;
    let mut lines = answer.lines();
    let host_arch = lines.next().unwrap_or("").trim().to_string();
    let kvm = lines.any(|l| l.trim() == "kvm");
    let reason = if host_arch != arch.name() {
        Some(format!(
            "the guest is {arch} and {} is {host_arch}",
            remote.destination
        ))
    } else if !kvm {
        Some(format!("/dev/kvm on {} is not usable", remote.destination))
    } else {
        None
    };
    match (reason, choice) {
        (None, _) => Ok(Decision {
            accel: Accel::Kvm,
            fallback: None,
        }),
        (Some(reason), AccelChoice::Kvm) => Err(RemoteError::Command {
            destination: remote.destination.clone(),
            what: "accel kvm".into(),
            stderr: reason,
        }),
        (Some(reason), _) => Ok(Decision {
            accel: Accel::Tcg,
            fallback: Some(reason),
        }),
    }
}

/// Copies every file the spec names ([`QemuSpec::files`]: firmware, kernel, initrd, pflash,
/// drives) to a private temp dir on `remote` and returns the `ssh -tt` command that runs QEMU
/// there with those copies, plus the guard that removes the dir.
pub(crate) fn stage(spec: &QemuSpec, remote: &Remote) -> Result<(Argv, RemoteGuard), RemoteError> {
    let binary = spec.binary.to_string_lossy().into_owned();
    if let Some(missing) = spec.files().into_iter().find(|f| !f.path.is_file()) {
        return Err(RemoteError::MissingFile {
            option: missing.option.to_string(),
            path: missing.path.to_path_buf(),
        });
    }
    let guard = start_keeper(remote, &binary)?;
    let mut copies: Vec<(PathBuf, PathBuf)> = Vec::new();
    let staged = spec.map_files(|_, local| {
        let remote_path = PathBuf::from(format!(
            "{}/{}-{}",
            guard.dir,
            copies.len(),
            safe_name(local)
        ));
        copies.push((local.to_path_buf(), remote_path.clone()));
        remote_path
    });
    for (local, remote_path) in &copies {
        remote.copy(local, &remote_path.to_string_lossy())?;
    }
    let mut ssh = Argv::new("ssh");
    ssh.extend(remote.common_args())
        // `-e none`: a `~.` typed or sent at the start of a line must reach the guest, not
        // end the connection.
        .extend(["-tt", "-q", "-e", "none", "--"])
        .arg(&remote.destination)
        .arg(remote_command(&guard.dir, &staged.argv()));
    Ok((ssh, guard))
}

/// What ssh asks the host's login shell to run: `sh -c` with the [`wrapper_script`] running
/// `qemu` (whatever the login shell, and whether the host's `sh` is dash or bash).
fn remote_command(dir: &str, qemu: &Argv) -> String {
    let wrapper = wrapper_script(dir, &qemu.to_shell_line());
    format!("exec sh -c {}", shell_quote(&wrapper))
}

/// The remote `sh -c` script: runs QEMU with the console on the ssh pty and removes `dir` on
/// every exit.
///
/// QEMU runs as an asynchronous job that the shell `wait`s for, because a pty hangup signals
/// only the session leader (this shell): a foreground QEMU would keep the shell from running
/// its trap until QEMU exits, which it never does for a hanging guest. `wait` is interrupted
/// by the trapped signal, the shell exits, and its EXIT trap kills QEMU and removes `dir`.
/// (A non-interactive shell gives asynchronous jobs `/dev/null` as stdin, so the console is
/// passed explicitly through fd 3.)
fn wrapper_script(dir: &str, qemu: &str) -> String {
    [
        format!("d={}", shell_quote(dir)),
        "q=".to_string(),
        r#"trap 'if [ -n "$q" ]; then kill -TERM "$q" 2>/dev/null; fi; rm -rf "$d"' EXIT"#
            .to_string(),
        "trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM".to_string(),
        "exec 3<&0".to_string(),
        format!("{qemu} <&3 3<&- &"),
        "q=$!".to_string(),
        "exec 3<&-".to_string(),
        r#"wait "$q"; s=$?; q=; exit "$s""#.to_string(),
    ]
    .join("\n")
}

/// A file name safe in any shell word and scp path.
fn safe_name(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let safe: String = name
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '_' | '-' => c,
            _ => '_',
        })
        .collect();
    if safe.is_empty() {
        "file".into()
    } else {
        safe
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_destination_and_port() {
        let remote = Remote::parse("root@kvm-host:2222").unwrap();
        assert_eq!(remote.destination, "root@kvm-host");
        assert_eq!(remote.port, Some(2222));
        assert_eq!(Remote::parse("kvm-host").unwrap().port, None);
        for bad in ["", "user@", "host:port", "-oProxyCommand=x", "a b"] {
            assert!(Remote::parse(bad).is_err(), "{bad}");
        }
    }

    /// Every class of shell metacharacter reaches QEMU as the one word it was, whatever the
    /// host's login shell (sh, bash) and whether its `sh` is dash or bash (brace expansion).
    #[test]
    fn arguments_survive_the_remote_shells() {
        let words = [
            "plain",
            "",
            "two words",
            "tab\there",
            "new\nline",
            "it's",
            "say \"hi\"",
            "back\\slash",
            "$HOME",
            "${HOME}",
            "$(echo no)",
            "`echo no`",
            "a;b",
            "a&b",
            "a|b",
            "a<b>c",
            "(sub)",
            "{a,b}",
            "x{1..3}",
            "{}",
            "*",
            "?",
            "[ab]",
            "~",
            "~root",
            "#comment",
            "=cmd",
            "%1",
            "!!",
            "a^b",
            "-dash",
            "grün ☃",
            "a,b",
        ];
        let mut printf = Argv::new("printf");
        printf.arg("[%s]").extend(words);
        let expected: String = words.iter().map(|w| format!("[{w}]")).collect();
        // A host whose `sh` is bash: `sh` on PATH is bash.
        let bash_sh = tempfile::tempdir().unwrap();
        let bash = which("bash");
        std::os::unix::fs::symlink(&bash, bash_sh.path().join("sh")).unwrap();
        let path = std::env::var_os("PATH").unwrap_or_default();
        let with_bash_sh = std::env::join_paths(
            std::iter::once(bash_sh.path().to_path_buf()).chain(std::env::split_paths(&path)),
        )
        .unwrap();
        for login in ["sh", "bash"] {
            for (sh, path) in [("dash", &path), ("bash", &with_bash_sh)] {
                let scratch = tempfile::tempdir().unwrap();
                let dir = scratch.path().join("d").display().to_string();
                let output = Command::new(which(login))
                    .arg("-c")
                    .arg(remote_command(&dir, &printf))
                    .env("PATH", path)
                    .stdin(Stdio::null())
                    .output()
                    .unwrap();
                let printed = String::from_utf8_lossy(&output.stdout);
                assert_eq!(
                    printed, expected,
                    "login shell {login}, sh is {sh}: {output:?}"
                );
            }
        }
    }

    fn which(program: &str) -> PathBuf {
        ["/bin", "/usr/bin"]
            .iter()
            .map(|dir| Path::new(dir).join(program))
            .find(|path| path.is_file())
            .unwrap_or_else(|| panic!("no {program} in /bin or /usr/bin"))
    }

    #[test]
    fn safe_names_have_no_shell_metacharacters() {
        assert_eq!(safe_name(Path::new("/x/it's a $file")), "it_s_a__file");
    }
}
