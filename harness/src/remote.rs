//! Running QEMU on another machine (a remote KVM host) over OpenSSH.
//!
//! No agent of our own: [`stage`] makes a private temp dir on the host (`mktemp -d`), copies
//! every file the command names (`-kernel`, `-initrd`, `-bios`, `-drive file=`) into it over
//! ssh, and returns a command that runs `ssh -tt host 'exec sh -c "..."'` with the QEMU argv
//! rewritten to the remote paths. The console comes back over the ssh channel onto our local
//! pty, so the verdict logic is unchanged. Cleanup happens on every exit path: the remote
//! script traps `EXIT HUP INT TERM` and removes the dir; a lost connection hangs up the remote
//! pty, which sends SIGHUP to QEMU; and [`RemoteGuard`] removes the dir again on drop.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::accel::{Accel, Decision};
use crate::arch::Arch;
use crate::config::AccelChoice;
use crate::qemu::QemuCommand;

/// Environment variable: run every VM on this host, `user@host[:port]`.
pub const REMOTE_ENV: &str = "VMHARNESS_REMOTE";
/// Environment variable: extra `ssh -o` options for [`REMOTE_ENV`], shell-word separated
/// (e.g. `"StrictHostKeyChecking=accept-new ConnectTimeout=5"`).
pub const REMOTE_SSH_OPTIONS_ENV: &str = "VMHARNESS_REMOTE_SSH_OPTIONS";
/// Environment variable: the ssh identity file for [`REMOTE_ENV`].
pub const REMOTE_IDENTITY_ENV: &str = "VMHARNESS_REMOTE_IDENTITY";

/// QEMU options whose value is a file that must be copied to the host.
const FILE_OPTIONS: &[&str] = &["-kernel", "-initrd", "-bios"];

/// A host reached over OpenSSH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// `user@host` or `host` (or an alias from `~/.ssh/config`).
    pub destination: String,
    /// The ssh port, when not the default.
    pub port: Option<u16>,
    /// An identity file (`ssh -i`).
    pub identity: Option<PathBuf>,
    /// Extra `ssh -o` options, e.g. `UserKnownHostsFile=/path`.
    pub ssh_options: Vec<String>,
}

/// Why a remote run could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The `user@host[:port]` text does not parse.
    #[error("invalid remote `{spec}`: {reason} (expected user@host[:port])")]
    InvalidSpec {
        /// The text as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
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
    /// Parses `user@host[:port]`.
    pub fn parse(spec: &str) -> Result<Remote, RemoteError> {
        let invalid = |reason: &str| RemoteError::InvalidSpec {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        let (destination, port) = match spec.rsplit_once(':') {
            Some((host, port)) => {
                let port: u16 = port
                    .parse()
                    .map_err(|_| invalid("the port is not a number"))?;
                (host, Some(port))
            }
            None => (spec, None),
        };
        if destination.is_empty() || destination.ends_with('@') {
            return Err(invalid("no host"));
        }
        if destination.starts_with('-') || destination.chars().any(char::is_whitespace) {
            return Err(invalid("a host cannot start with `-` or contain spaces"));
        }
        Ok(Remote {
            destination: destination.to_string(),
            port,
            identity: None,
            ssh_options: Vec::new(),
        })
    }

    /// The remote named by `$VMHARNESS_REMOTE` (with its identity and options), if set.
    pub fn from_env() -> Result<Option<Remote>, RemoteError> {
        let Some(spec) = std::env::var(REMOTE_ENV).ok().filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        Remote::parse_with_env(&spec).map(Some)
    }

    /// Parses `user@host[:port]` and takes identity and ssh options from the environment
    /// ([`REMOTE_IDENTITY_ENV`], [`REMOTE_SSH_OPTIONS_ENV`]).
    pub fn parse_with_env(spec: &str) -> Result<Remote, RemoteError> {
        let mut remote = Remote::parse(spec)?;
        remote.identity = std::env::var_os(REMOTE_IDENTITY_ENV).map(PathBuf::from);
        if let Ok(options) = std::env::var(REMOTE_SSH_OPTIONS_ENV) {
            remote.ssh_options =
                shell_words::split(&options).map_err(|err| RemoteError::InvalidSpec {
                    spec: options.clone(),
                    reason: format!("{REMOTE_SSH_OPTIONS_ENV}: {err}"),
                })?;
        }
        Ok(remote)
    }

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
        let output = Command::new("ssh")
            .args(self.common_args())
            .arg("-T")
            .arg("--")
            .arg(&self.destination)
            .arg(script)
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
            &format!("cat > {}", shell_words::quote(remote_path)),
            Stdio::from(file),
            &format!("copying {}", local.display()),
        )?;
        Ok(())
    }
}

/// Removes the remote temp dir when dropped (best effort; the remote trap does it too).
#[derive(Debug)]
pub struct RemoteGuard {
    remote: Remote,
    dir: String,
}

impl RemoteGuard {
    /// The private temp dir on the host.
    pub fn dir(&self) -> &str {
        &self.dir
    }
}

impl Drop for RemoteGuard {
    fn drop(&mut self) {
        let script = format!("rm -rf -- {}", shell_words::quote(&self.dir));
        let _ = self.remote.run(&script, "removing the temp dir");
    }
}

/// Picks the accelerator on the host: KVM when `/dev/kvm` there is read-writable and the
/// host's arch is the guest's (a cheaper check than the local probe guest).
pub fn choose_accel(
    remote: &Remote,
    choice: AccelChoice,
    arch: Arch,
) -> Result<Decision, RemoteError> {
    if choice == AccelChoice::Tcg {
        return Ok(Decision {
            accel: Accel::Tcg,
            note: None,
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
            note: None,
        }),
        (Some(reason), AccelChoice::Kvm) => Err(RemoteError::Command {
            destination: remote.destination.clone(),
            what: "accel kvm".into(),
            stderr: reason,
        }),
        (Some(reason), _) => Ok(Decision {
            accel: Accel::Tcg,
            note: Some(format!("accel auto: using TCG because {reason}")),
        }),
    }
}

/// Copies the files `command` names to a private temp dir on `remote` and returns the
/// `ssh -tt` command that runs QEMU there, plus the guard that removes the dir.
pub fn stage(
    command: &QemuCommand,
    remote: &Remote,
) -> Result<(QemuCommand, RemoteGuard), RemoteError> {
    let binary = command.binary().to_string_lossy().into_owned();
    let files = local_files(command)?;
    let script = format!(
        "command -v {} >/dev/null || exit 3; mktemp -d \"${{TMPDIR:-/tmp}}/vmharness.XXXXXXXX\"",
        shell_words::quote(&binary)
    );
    let dir = match remote.run(&script, "creating a temp dir") {
        Ok(out) => out.trim().to_string(),
        Err(RemoteError::Command { .. }) if remote.run("exit 0", "connecting").is_ok() => {
            return Err(RemoteError::MissingQemu {
                destination: remote.destination.clone(),
                binary,
            })
        }
        Err(err) => return Err(err),
    };
    if !dir.starts_with('/') || dir.contains('\n') {
        return Err(RemoteError::Command {
            destination: remote.destination.clone(),
            what: "mktemp -d".into(),
            stderr: format!("unexpected output `{dir}`"),
        });
    }
    let guard = RemoteGuard {
        remote: remote.clone(),
        dir,
    };
    let mut argv: Vec<String> = Vec::with_capacity(command.get_args().len() + 1);
    argv.push(binary);
    argv.extend(
        command
            .get_args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned()),
    );
    for (index, file) in files.iter().enumerate() {
        let remote_path = format!("{}/{index}-{}", guard.dir, safe_name(&file.local));
        remote.copy(&file.local, &remote_path)?;
        // argv[0] is the binary: the option is at arg_index + 1, its value one further.
        let arg = &mut argv[file.arg_index + 2];
        *arg = match file.drive {
            false => remote_path,
            true => replace_drive_file(arg, &remote_path),
        };
    }
    let wrapper = wrapper_script(&guard.dir, &shell_words::join(&argv));
    let mut ssh = QemuCommand::raw("ssh");
    ssh.args(remote.common_args())
        .args(["-tt", "-q", "--"])
        .arg(&remote.destination)
        .arg(format!("exec sh -c {}", shell_words::quote(&wrapper)));
    Ok((ssh, guard))
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
        format!("d={}", shell_words::quote(dir)),
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

/// A local file named by an argument of the command.
struct LocalFile {
    /// Index of the option (its value is at `arg_index + 1`).
    arg_index: usize,
    local: PathBuf,
    /// The value is a `-drive` option list, not a bare path.
    drive: bool,
}

fn local_files(command: &QemuCommand) -> Result<Vec<LocalFile>, RemoteError> {
    let args = command.get_args();
    let mut files = Vec::new();
    for (index, pair) in args.windows(2).enumerate() {
        let option = pair[0].to_string_lossy();
        let (local, drive) = if FILE_OPTIONS.contains(&option.as_ref()) {
            (PathBuf::from(&pair[1]), false)
        } else if option == "-drive" {
            match drive_file(&pair[1].to_string_lossy()) {
                Some(file) => (PathBuf::from(file), true),
                None => continue,
            }
        } else {
            continue;
        };
        if !local.is_file() {
            return Err(RemoteError::MissingFile {
                option: option.into_owned(),
                path: local,
            });
        }
        files.push(LocalFile {
            arg_index: index,
            local,
            drive,
        });
    }
    Ok(files)
}

/// The `file=` value of a `-drive` option list (`,,` is an escaped comma).
fn drive_file(value: &str) -> Option<String> {
    split_options(value)
        .into_iter()
        .find_map(|part| part.strip_prefix("file=").map(str::to_string))
}

fn split_options(value: &str) -> Vec<String> {
    value
        .replace(",,", "\u{0}")
        .split(',')
        .map(|part| part.replace('\u{0}', ","))
        .collect()
}

fn replace_drive_file(value: &str, remote_path: &str) -> String {
    split_options(value)
        .into_iter()
        .map(|part| match part.strip_prefix("file=") {
            Some(_) => format!("file={remote_path}"),
            None => part,
        })
        .map(|part| part.replace(',', ",,"))
        .collect::<Vec<_>>()
        .join(",")
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

    #[test]
    fn drive_file_is_replaced_with_escaped_commas_kept() {
        let value = "if=none,file=/tmp/a,,b.img,format=raw,id=d0";
        assert_eq!(drive_file(value).unwrap(), "/tmp/a,b.img");
        assert_eq!(
            replace_drive_file(value, "/r/0-a_b.img"),
            "if=none,file=/r/0-a_b.img,format=raw,id=d0"
        );
        assert_eq!(replace_drive_file("file=/x,,y", "/r/a,b"), "file=/r/a,,b");
    }

    #[test]
    fn safe_names_have_no_shell_metacharacters() {
        assert_eq!(safe_name(Path::new("/x/it's a $file")), "it_s_a__file");
    }
}
