//! Spawning QEMU with process hygiene: its own session and process group, a parent-death
//! signal, a group kill when the handle is dropped, and `execve` errors with their errno. The
//! console is a pipe pair for non-interactive runs and a pty for a person at a keyboard.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::argv::Argv;

/// How QEMU's serial console reaches us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// Pipes: nothing between QEMU's writes and our reads (non-interactive runs).
    Pipe,
    /// A pseudo-terminal, for a person at a keyboard (`cargo xtask qemu` attached).
    Pty,
}

/// Why QEMU could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The file for QEMU's stderr could not be created.
    #[error("cannot create QEMU stderr log {}: {source}", path.display())]
    StderrLog {
        /// The log path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Opening the pty failed.
    #[error("cannot open a pty for {}", binary.display())]
    Pty {
        /// The QEMU binary.
        binary: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The kernel refused to execute QEMU (`execve` failed): the errno says why.
    #[error("cannot execute {}: {}{}", binary.display(), source, exec_hint(source, *argv_bytes))]
    Exec {
        /// The QEMU binary.
        binary: PathBuf,
        /// `execve`'s error.
        #[source]
        source: std::io::Error,
        /// The size of the argument list (for E2BIG).
        argv_bytes: usize,
    },
    /// The spawner thread is gone (a panic elsewhere in the process).
    #[error("the QEMU spawner thread is gone")]
    Spawner,
}

impl SpawnError {
    /// Whether the command line itself is at fault (too long), not the machine.
    pub(crate) fn is_argv_mistake(&self) -> bool {
        matches!(self, SpawnError::Exec { source, .. } if source.raw_os_error() == Some(nix::libc::E2BIG))
    }
}

/// What to do about an `execve` errno.
fn exec_hint(source: &std::io::Error, argv_bytes: usize) -> String {
    match source.raw_os_error() {
        Some(nix::libc::E2BIG) => format!(
            " (the command line is {argv_bytes} bytes; Linux refuses any single argument over \
             128 KiB, such as a long `append`, and all of them together over `getconf ARG_MAX`)"
        ),
        Some(nix::libc::ENOENT) => {
            " (the binary is gone, or it is a script whose `#!` interpreter does not exist)".into()
        }
        Some(nix::libc::EACCES) => {
            " (not executable: `chmod +x` it, or it is on a `noexec` mount)".into()
        }
        _ => String::new(),
    }
}

/// How QEMU ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// QEMU exited with this status.
    Code(i32),
    /// QEMU was killed by this signal.
    Signal(i32),
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(code) => write!(f, "exit status {code}"),
            ExitStatus::Signal(signal) => write!(f, "killed by signal {signal}"),
        }
    }
}

/// A running QEMU. Dropping it kills QEMU's whole process group and reaps it.
pub(crate) struct QemuProcess {
    pid: Pid,
    reader: File,
    writer: File,
    exit: Option<ExitStatus>,
}

impl QemuProcess {
    /// Starts QEMU in its own session and process group, its serial console on `transport`
    /// and stderr into `stderr_log`. An `execve` failure is reported with its errno.
    ///
    /// The fork happens on a process-lifetime spawner thread, because `PR_SET_PDEATHSIG` fires
    /// when the *thread* that forked exits, and test threads come and go.
    pub(crate) fn spawn(
        command: &Argv,
        stderr_log: &Path,
        transport: Transport,
    ) -> Result<QemuProcess, SpawnError> {
        let stderr = File::create(stderr_log).map_err(|source| SpawnError::StderrLog {
            path: stderr_log.to_path_buf(),
            source,
        })?;
        let binary = command.program().to_path_buf();
        let mut std_command = command.to_command();
        std_command.stderr(stderr);
        let (reader, writer, pty) = match transport {
            Transport::Pipe => {
                std_command.stdin(Stdio::piped()).stdout(Stdio::piped());
                (None, None, false)
            }
            Transport::Pty => {
                let pty = nix::pty::openpty(None, None).map_err(|errno| SpawnError::Pty {
                    binary: binary.clone(),
                    source: errno.into(),
                })?;
                let slave = File::from(pty.slave);
                let slave_out = slave.try_clone().map_err(|source| SpawnError::Pty {
                    binary: binary.clone(),
                    source,
                })?;
                std_command.stdin(slave).stdout(slave_out);
                let master = File::from(pty.master);
                let writer = master.try_clone().map_err(|source| SpawnError::Pty {
                    binary: binary.clone(),
                    source,
                })?;
                (Some(master), Some(writer), true)
            }
        };
        let parent = nix::unistd::getpid();
        // SAFETY: the closure only makes async-signal-safe calls (setsid, ioctl, prctl,
        // getppid, raise).
        unsafe {
            std_command.pre_exec(move || {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                if pty && nix::libc::ioctl(0, nix::libc::TIOCSCTTY as _, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
                // The parent may have died between fork and prctl: then nobody would kill us.
                if nix::unistd::getppid() != parent {
                    let _ = nix::sys::signal::raise(Signal::SIGKILL);
                }
                Ok(())
            });
        }
        let argv_bytes = command.words().iter().map(|w| w.len() + 1).sum();
        let mut child =
            spawn_on_spawner_thread(std_command)?.map_err(|source| SpawnError::Exec {
                binary: binary.clone(),
                source,
                argv_bytes,
            })?;
        let pid = Pid::from_raw(child.id() as i32);
        let (reader, writer) = match (reader, writer) {
            (Some(reader), Some(writer)) => (reader, writer),
            _ => {
                let stdout = child
                    .stdout
                    .take()
                    .map(|o| File::from(std::os::fd::OwnedFd::from(o)));
                let stdin = child
                    .stdin
                    .take()
                    .map(|i| File::from(std::os::fd::OwnedFd::from(i)));
                match (stdout, stdin) {
                    (Some(reader), Some(writer)) => (reader, writer),
                    _ => unreachable!("stdin and stdout were piped"),
                }
            }
        };
        Ok(QemuProcess {
            pid,
            reader,
            writer,
            exit: None,
        })
    }

    /// QEMU's pid (also its process-group id).
    pub(crate) fn pid(&self) -> Pid {
        self.pid
    }

    /// A new handle on the console for reading.
    pub(crate) fn console_reader(&self) -> std::io::Result<File> {
        self.reader.try_clone()
    }

    /// A new handle on the console for writing (the guest's serial input).
    pub(crate) fn console_writer(&self) -> std::io::Result<File> {
        self.writer.try_clone()
    }

    /// QEMU's exit status if it has exited (non-blocking).
    pub(crate) fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = match waitpid(self.pid(), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => Some(ExitStatus::Code(code)),
                Ok(WaitStatus::Signaled(_, signal, _)) => Some(ExitStatus::Signal(signal as i32)),
                _ => None,
            };
        }
        self.exit
    }

    /// Waits up to `timeout` for QEMU to exit on its own.
    pub(crate) fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Kills QEMU's process group with SIGKILL and reaps QEMU. Returns its exit status.
    pub(crate) fn kill(&mut self) -> Option<ExitStatus> {
        if self.try_wait().is_none() {
            let _ = killpg(self.pid(), Signal::SIGKILL);
            if let Ok(status) = waitpid(self.pid(), None) {
                self.exit = match status {
                    WaitStatus::Exited(_, code) => Some(ExitStatus::Code(code)),
                    WaitStatus::Signaled(_, signal, _) => Some(ExitStatus::Signal(signal as i32)),
                    _ => None,
                };
            }
        } else {
            // QEMU itself is gone; helpers it may have left in its group go too.
            let _ = killpg(self.pid(), Signal::SIGKILL);
        }
        self.exit
    }
}

impl Drop for QemuProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

type SpawnReply = std::io::Result<std::process::Child>;
type SpawnRequest = (std::process::Command, mpsc::Sender<SpawnReply>);

/// Spawns on the process-lifetime spawner thread; the outer error is a dead spawner.
fn spawn_on_spawner_thread(command: std::process::Command) -> Result<SpawnReply, SpawnError> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let sender = SPAWNER.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("vmharness-spawner".into())
            .spawn(move || {
                for (mut command, reply) in receiver {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("cannot start the QEMU spawner thread");
        Mutex::new(sender)
    });
    let (reply_sender, reply) = mpsc::channel();
    sender
        .lock()
        .map_err(|_| SpawnError::Spawner)?
        .send((command, reply_sender))
        .map_err(|_| SpawnError::Spawner)?;
    reply.recv().map_err(|_| SpawnError::Spawner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spawn(argv: &Argv) -> Result<QemuProcess, SpawnError> {
        let dir = tempfile::tempdir().unwrap();
        QemuProcess::spawn(argv, &dir.path().join("stderr"), Transport::Pipe)
    }

    /// Every way `execve` can refuse is reported with its errno and what to do, never as an
    /// abort in the forked child.
    #[test]
    fn exec_failures_are_reported_with_their_errno() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("qemu-script");
        std::fs::write(&script, "#!/nonexistent/interpreter\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let plain = dir.path().join("not-executable");
        std::fs::write(&plain, "data").unwrap();
        let mut long = Argv::new("/bin/true");
        long.arg("x".repeat(200 * 1024));
        let cases = [
            (Argv::new(&script), nix::libc::ENOENT, "interpreter"),
            (Argv::new(&plain), nix::libc::EACCES, "chmod +x"),
            (long, nix::libc::E2BIG, "128 KiB"),
        ];
        for (argv, errno, hint) in cases {
            let err = spawn(&argv).err().expect("exec must fail");
            let SpawnError::Exec { source, .. } = &err else {
                panic!("{err}");
            };
            assert_eq!(source.raw_os_error(), Some(errno), "{err}");
            assert!(err.to_string().contains(hint), "{err}");
            assert_eq!(err.is_argv_mistake(), errno == nix::libc::E2BIG);
        }
    }

    #[test]
    fn both_transports_carry_the_console() {
        for transport in [Transport::Pipe, Transport::Pty] {
            let dir = tempfile::tempdir().unwrap();
            let mut argv = Argv::new("/bin/sh");
            argv.extend(["-c", "read line; echo got:$line"]);
            let mut process =
                QemuProcess::spawn(&argv, &dir.path().join("stderr"), transport).unwrap();
            use std::io::{Read, Write};
            process
                .console_writer()
                .unwrap()
                .write_all(b"hi\n")
                .unwrap();
            let mut out = String::new();
            let mut reader = process.console_reader().unwrap();
            let mut buf = [0u8; 256];
            while !out.contains("got:hi") {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => out.push_str(&String::from_utf8_lossy(&buf[..n])),
                }
            }
            assert!(out.contains("got:hi"), "{transport:?}: {out:?}");
            assert_eq!(
                process.wait_timeout(Duration::from_secs(5)),
                Some(ExitStatus::Code(0))
            );
        }
    }
}
