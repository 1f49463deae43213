//! Spawning QEMU on a pty with process hygiene: its own session and process group, a
//! parent-death signal, and a group kill when the handle is dropped.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use rexpect::process::PtyProcess;

use super::argv::Argv;

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
    /// Opening the pty or forking failed.
    #[error("cannot start {} on a pty: {reason}", binary.display())]
    Pty {
        /// The QEMU binary.
        binary: PathBuf,
        /// The underlying error.
        reason: String,
    },
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
pub struct QemuProcess {
    pty: PtyProcess,
    exit: Option<ExitStatus>,
}

impl QemuProcess {
    /// Starts QEMU with its serial console on a new pty and stderr into `stderr_log`.
    ///
    /// The fork happens on a process-lifetime spawner thread, because `PR_SET_PDEATHSIG` fires
    /// when the *thread* that forked exits, and test threads come and go.
    pub fn spawn(command: &Argv, stderr_log: &Path) -> Result<QemuProcess, SpawnError> {
        let stderr = File::create(stderr_log).map_err(|source| SpawnError::StderrLog {
            path: stderr_log.to_path_buf(),
            source,
        })?;
        let mut std_command = command.to_command();
        let parent = nix::unistd::getpid();
        let stderr_fd = stderr.as_raw_fd();
        // SAFETY: the closure only makes async-signal-safe calls (prctl, getppid, raise, dup2).
        unsafe {
            std_command.pre_exec(move || {
                let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
                // The parent may have died between fork and prctl: then nobody would kill us.
                if nix::unistd::getppid() != parent {
                    let _ = nix::sys::signal::raise(Signal::SIGKILL);
                }
                if nix::libc::dup2(stderr_fd, 2) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let result = spawn_on_spawner_thread(std_command);
        drop(stderr);
        let pty = result.map_err(|reason| SpawnError::Pty {
            binary: command.program().to_path_buf(),
            reason,
        })?;
        Ok(QemuProcess { pty, exit: None })
    }

    /// QEMU's pid (also its process-group id).
    pub fn pid(&self) -> Pid {
        self.pty.child_pid
    }

    /// A new handle on the pty master, for reading the console and writing input.
    pub fn pty_file(&self) -> std::io::Result<File> {
        self.pty.get_file_handle().map_err(std::io::Error::other)
    }

    /// QEMU's exit status if it has exited (non-blocking).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
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
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
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
    pub fn kill(&mut self) -> Option<ExitStatus> {
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

type SpawnReply = Result<PtyProcess, String>;
type SpawnRequest = (std::process::Command, mpsc::Sender<SpawnReply>);

fn spawn_on_spawner_thread(command: std::process::Command) -> SpawnReply {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let sender = SPAWNER.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("vmharness-spawner".into())
            .spawn(move || {
                for (command, reply) in receiver {
                    let _ = reply.send(spawn_pty(command));
                }
            })
            .expect("cannot start the QEMU spawner thread");
        Mutex::new(sender)
    });
    let (reply_sender, reply) = mpsc::channel();
    sender
        .lock()
        .map_err(|_| "spawner thread lock poisoned".to_string())?
        .send((command, reply_sender))
        .map_err(|_| "spawner thread is gone".to_string())?;
    reply
        .recv()
        .map_err(|_| "spawner thread is gone".to_string())?
}

fn spawn_pty(command: std::process::Command) -> SpawnReply {
    let pid_before = nix::unistd::getpid();
    let result = PtyProcess::new(command);
    if nix::unistd::getpid() != pid_before {
        // rexpect returns in the forked child when exec fails: never let it run our code.
        // SAFETY: _exit is always safe to call; it ends this child process immediately.
        unsafe { nix::libc::_exit(127) };
    }
    result.map_err(|err| err.to_string())
}
