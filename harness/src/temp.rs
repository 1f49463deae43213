//! Private temp dirs that do not outlive their run: owner-only, named after the owning
//! process so that a later run sweeps what a SIGKILLed one left, and removed on SIGTERM,
//! SIGINT and SIGHUP before the signal's default action ends the process.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once};

/// Temp dirs of runs (and states being made) in this process, removed when a termination
/// signal arrives.
static ACTIVE: Mutex<BTreeMap<u64, PathBuf>> = Mutex::new(BTreeMap::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// The prefix of every temp dir vmharness makes: `vmh<pid>-`.
fn owner_prefix(pid: u32) -> String {
    format!("vmh{pid}-")
}

/// The longest path a unix socket address holds (`sun_path` is 108 bytes with its NUL).
const SOCKET_PATH_MAX: usize = 107;

/// A directory removed if the process is told to terminate (SIGTERM, SIGINT, SIGHUP) while
/// this guard lives; dropping the guard only forgets it.
#[derive(Debug)]
pub(crate) struct RemovedOnSignal {
    id: u64,
}

impl RemovedOnSignal {
    /// Registers `dir` for removal on a termination signal.
    pub(crate) fn new(dir: &Path) -> RemovedOnSignal {
        install_signal_cleanup();
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut active) = ACTIVE.lock() {
            active.insert(id, dir.to_path_buf());
        }
        RemovedOnSignal { id }
    }
}

impl Drop for RemovedOnSignal {
    fn drop(&mut self) {
        if let Ok(mut active) = ACTIVE.lock() {
            active.remove(&self.id);
        }
    }
}

/// A run's private temp dir (mode 0700), removed when dropped or when the process is told to
/// terminate.
#[derive(Debug)]
pub struct RunTemp {
    dir: tempfile::TempDir,
    _on_signal: RemovedOnSignal,
    /// An open handle on `dir`, for socket paths too long to name it directly.
    handle: Option<std::fs::File>,
}

impl RunTemp {
    /// Sweeps dirs of dead processes from `parent`, then creates `vmh<pid>-<label>-XXXXXX` in it.
    pub fn new(parent: &Path, label: &str) -> std::io::Result<RunTemp> {
        std::fs::create_dir_all(parent)?;
        sweep(parent);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{}{label}-", owner_prefix(std::process::id())))
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(parent)?;
        let on_signal = RemovedOnSignal::new(dir.path());
        Ok(RunTemp {
            dir,
            _on_signal: on_signal,
            handle: None,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A path for a unix socket `name` in this dir that fits a socket address: the plain path
    /// when it is short enough, else the dir reached through this process's open handle on it
    /// (`/proc/<pid>/fd/<n>/<name>`), which QEMU (a child of the same user) resolves too.
    /// The handle stays open as long as this `RunTemp`.
    pub(crate) fn socket_path(&mut self, name: &str) -> std::io::Result<PathBuf> {
        let plain = self.path().join(name);
        if plain.as_os_str().len() <= SOCKET_PATH_MAX {
            return Ok(plain);
        }
        let handle = match self.handle.take() {
            Some(handle) => handle,
            None => std::fs::File::open(self.dir.path())?,
        };
        let fd = std::os::fd::AsRawFd::as_raw_fd(&handle);
        self.handle = Some(handle);
        let through = PathBuf::from(format!("/proc/{}/fd/{fd}", std::process::id()));
        // The handle must lead to this very dir (/proc mounted, the fd still ours).
        let same = |a: &Path, b: &Path| -> std::io::Result<bool> {
            use std::os::unix::fs::MetadataExt;
            let (a, b) = (std::fs::metadata(a)?, std::fs::metadata(b)?);
            Ok(a.dev() == b.dev() && a.ino() == b.ino())
        };
        if !same(&through, self.dir.path())? {
            return Err(std::io::Error::other(format!(
                "{} does not lead to the run's temp dir",
                through.display()
            )));
        }
        let short = through.join(name);
        match short.as_os_str().len() <= SOCKET_PATH_MAX {
            true => Ok(short),
            false => Err(std::io::Error::other(format!(
                "{} is too long for a socket address",
                short.display()
            ))),
        }
    }
}

/// Removes the temp dirs in `parent` whose owning process no longer exists.
pub fn sweep(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(owner_of) else {
            continue;
        };
        if !alive(pid) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The pid in a `vmh<pid>-...` name.
fn owner_of(name: &str) -> Option<i32> {
    let rest = name.strip_prefix("vmh")?;
    let (pid, _) = rest.split_once('-')?;
    pid.parse().ok()
}

/// Whether process `pid` exists (EPERM: it does, owned by someone else).
pub(crate) fn alive(pid: i32) -> bool {
    use nix::errno::Errno;
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(Errno::ESRCH) => false,
        // EPERM: it exists, owned by someone else.
        Err(_) => true,
    }
}

/// Set by a frontend that handles termination signals itself (and calls
/// [`remove_active_temp_dirs`] there): two handlers would race to end the process.
static FRONTEND_HANDLES_SIGNALS: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Tells the library that this process's frontend handles SIGTERM/SIGINT/SIGHUP and calls
/// [`remove_active_temp_dirs`] before it exits. Call it before the first run.
pub fn frontend_handles_signals() {
    FRONTEND_HANDLES_SIGNALS.store(true, Ordering::SeqCst);
}

/// Removes the temp dirs of the runs in progress (for a frontend's own signal handler).
pub fn remove_active_temp_dirs() {
    if let Ok(active) = ACTIVE.lock() {
        for dir in active.values() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// On SIGTERM, SIGINT or SIGHUP: remove the active temp dirs, then let the signal do what it
/// would have done (QEMU follows its runner through its parent-death signal).
fn install_signal_cleanup() {
    if FRONTEND_HANDLES_SIGNALS.load(Ordering::SeqCst) {
        return;
    }
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]) else {
            return;
        };
        let _ = std::thread::Builder::new()
            .name("vmharness-signals".into())
            .spawn(move || {
                if let Some(signal) = signals.forever().next() {
                    remove_active_temp_dirs();
                    let _ = signal_hook::low_level::emulate_default_handler(signal);
                }
            });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_removes_only_dirs_of_dead_processes() {
        let parent = tempfile::tempdir().unwrap();
        let dead = parent.path().join("vmh999999999-x-abc");
        let mine = parent
            .path()
            .join(format!("vmh{}-x-abc", std::process::id()));
        let other = parent.path().join("not-ours");
        for dir in [&dead, &mine, &other] {
            std::fs::create_dir(dir).unwrap();
        }
        sweep(parent.path());
        assert!(!dead.exists() && mine.exists() && other.exists());
    }

    /// A temp dir too deep for a socket address still gets a socket path that binds there.
    #[test]
    fn socket_paths_fit_however_deep_the_dir() {
        let root = tempfile::tempdir().unwrap();
        for depth in [0, 1, 3] {
            let parent = (0..depth).fold(root.path().to_path_buf(), |p, i| {
                p.join(format!("{i}{}", "d".repeat(60)))
            });
            let mut temp = RunTemp::new(&parent, "a-rather-long-label").unwrap();
            let socket = temp.socket_path("qmp.sock").unwrap();
            assert!(socket.as_os_str().len() <= SOCKET_PATH_MAX, "{socket:?}");
            let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
            assert!(temp.path().join("qmp.sock").exists(), "{socket:?}");
            std::os::unix::net::UnixStream::connect(&socket).unwrap();
            drop(listener);
        }
    }

    #[test]
    fn run_temp_is_owner_only_and_removed_on_drop() {
        let parent = tempfile::tempdir().unwrap();
        let temp = RunTemp::new(parent.path(), "t").unwrap();
        let mode = std::fs::metadata(temp.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let path = temp.path().to_path_buf();
        drop(temp);
        assert!(!path.exists());
    }
}
