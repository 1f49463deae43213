//! A spare QEMU (issue 21): while a `[[case]]` runs from a saved state, the next case's QEMU
//! starts and waits in `-incoming defer`, so that case's restore does not wait for QEMU's own
//! start.
//!
//! At most one spare per process, and only while a frontend that runs cases one after another
//! holds a [`SpareQemu`] scope (the suite with one trial thread on a machine with a CPU to
//! spare, `bench cases`); never under nextest (one trial per process: nobody would take it) or
//! with `VMHARNESS_SPARE_QEMU=off`. A case takes the spare only when it is for the same config
//! and state and its command line is the one the case would run, its own temp paths aside;
//! anything else, and a spare whose QEMU has exited, is killed and the case starts its own.
//! A spare never decides a verdict: a restore that fails in one is tried again in a QEMU of the
//! case's own (`case.rs`). Spares are spawned like every QEMU (parent-death signal, group kill
//! on drop) and killed when the last scope ends or their state is marked unusable or discarded.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::qemu::{Argv, QemuProcess, QemuSpec, Transport};
use crate::settings::Settings;
use crate::temp::RunTemp;

/// How long a case waits for a spare being started (a fork and exec; its QEMU need not be up).
const STARTING_WAIT: Duration = Duration::from_secs(1);
/// How long the end of the last scope waits for a spare being started to be killed.
const SCOPE_END_WAIT: Duration = Duration::from_secs(10);

/// While one lives, `[[case]]`s this process runs start the next case's QEMU early (see the
/// module docs); dropping the last one kills the spare.
#[must_use = "spares are allowed only while the scope lives"]
pub struct SpareQemu {
    counted: bool,
}

impl SpareQemu {
    /// Allows spares if `concurrent` trials running at a time leave a CPU free for one.
    pub fn allow(concurrent: usize) -> SpareQemu {
        let cpus = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        let counted = cpus > concurrent.max(1);
        if counted {
            slot().scopes += 1;
        }
        SpareQemu { counted }
    }

    /// Whether this scope lets spares start (a CPU is free for one).
    pub fn allowed(&self) -> bool {
        self.counted
    }
}

impl Drop for SpareQemu {
    fn drop(&mut self) {
        if !self.counted {
            return;
        }
        let spare = {
            let mut slot = slot();
            slot.scopes = slot.scopes.saturating_sub(1);
            if slot.scopes > 0 {
                return;
            }
            // A spare being started is killed by its own thread once it sees no scope: wait for
            // that, so that no spare outlives the scope.
            until_started(slot, SCOPE_END_WAIT).spare.take()
        };
        drop(spare);
    }
}

/// Which QEMU a spare can stand in for: the config and the saved state's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SpareKey {
    config: String,
    state: String,
}

impl SpareKey {
    /// The key of config `config` restoring the state whose key is `state` (hex).
    pub(crate) fn new(config: &str, state: &str) -> SpareKey {
        SpareKey {
            config: config.to_string(),
            state: state.to_string(),
        }
    }
}

/// A QEMU waiting for a state, with what it was started from.
struct Spare {
    // Dropped first: the group kill comes before the temp dir goes.
    process: QemuProcess,
    key: SpareKey,
    spec: QemuSpec,
    argv: Argv,
    temp: RunTemp,
    stderr: PathBuf,
}

/// A spare a case has taken over: its spec and temp dir replace the case's.
pub(crate) struct Adopted {
    /// The spec it was started from (the case's, with the spare's own temp paths).
    pub spec: QemuSpec,
    /// Its temp dir (QMP socket, disk overlay).
    pub temp: RunTemp,
    /// The running QEMU and where its stderr goes.
    pub running: Running,
}

/// A QEMU already running that `launch` takes instead of spawning one.
pub(crate) struct Running {
    /// The process.
    pub process: QemuProcess,
    /// The file its stderr goes to.
    pub stderr: PathBuf,
}

struct Slot {
    /// Live [`SpareQemu`] scopes that allow spares.
    scopes: usize,
    /// A spare is being started (at most one at a time, and then no other is alive).
    starting: bool,
    spare: Option<Spare>,
}

static SLOT: Mutex<Slot> = Mutex::new(Slot {
    scopes: 0,
    starting: false,
    spare: None,
});

/// Signalled when a spare has finished starting (`Slot::starting` went false).
static STARTED: Condvar = Condvar::new();

fn slot() -> MutexGuard<'static, Slot> {
    // A panic while holding it leaves nothing half-done worth refusing.
    SLOT.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `slot` once no spare is being started, or after `limit`.
fn until_started(slot: MutexGuard<'static, Slot>, limit: Duration) -> MutexGuard<'static, Slot> {
    match STARTED.wait_timeout_while(slot, limit, |slot| slot.starting) {
        Ok((slot, _)) => slot,
        Err(poisoned) => poisoned.into_inner().0,
    }
}

/// Ends a start: the slot takes new starts again and waiters wake.
fn started() {
    slot().starting = false;
    STARTED.notify_all();
}

/// Whether cases run with `settings` may take and start spares now.
pub(crate) fn wanted(settings: &Settings) -> bool {
    settings.spare_qemu && !settings.nextest && slot().scopes > 0
}

/// Takes the spare if it stands in for `key` and would run `spec`'s command line (its own temp
/// paths aside) and its QEMU still runs; any other spare is killed.
pub(crate) fn take(key: &SpareKey, spec: &QemuSpec) -> Option<Adopted> {
    // One being started is a fork and exec away: cheaper to wait for than a QEMU of our own.
    let spare = until_started(slot(), STARTING_WAIT).spare.take();
    let mut spare = spare?;
    if spare.key != *key || spare.process.try_wait().is_some() {
        return None;
    }
    let mut candidate = spec.clone();
    candidate.qmp.clone_from(&spare.spec.qmp);
    if candidate.disk_overlay_dir.is_some() {
        candidate
            .disk_overlay_dir
            .clone_from(&spare.spec.disk_overlay_dir);
    }
    if candidate.argv() != spare.argv {
        return None;
    }
    let Spare {
        spec,
        temp,
        stderr,
        process,
        ..
    } = spare;
    Some(Adopted {
        spec,
        temp,
        running: Running { process, stderr },
    })
}

/// Kills the spare for the state whose key is `state` (hex), if there is one.
pub(crate) fn forget(state: &str) {
    let spare = {
        let mut slot = slot();
        match &slot.spare {
            Some(spare) if spare.key.state == state => slot.spare.take(),
            _ => None,
        }
    };
    drop(spare);
}

/// Starts a spare for `key` from `spec` (a case's restore spec, whose temp dir is `case_temp`)
/// on a thread of its own, replacing the spare there is; temp dirs go under `temp_parent`.
pub(crate) fn start(key: SpareKey, spec: QemuSpec, case_temp: PathBuf, temp_parent: PathBuf) {
    let older = {
        let mut slot = slot();
        if slot.starting || slot.scopes == 0 {
            return;
        }
        slot.starting = true;
        slot.spare.take()
    };
    let spawned = std::thread::Builder::new()
        .name("vmharness-spare".into())
        .spawn(move || {
            // The older spare goes first: never two at once.
            drop(older);
            let spare = spawn(key, spec, &case_temp, &temp_parent);
            let unwanted = {
                let mut slot = slot();
                match slot.scopes {
                    0 => spare,
                    _ => std::mem::replace(&mut slot.spare, spare),
                }
            };
            // Killed before the start ends: the last scope's end waits for this.
            drop(unwanted);
            started();
        });
    if spawned.is_err() {
        started();
    }
}

/// Spawns the spare: `spec` with a QMP socket and disk overlay dir of its own; `None` where
/// that cannot be made or the command line still names the case's temp dir.
fn spawn(key: SpareKey, mut spec: QemuSpec, case_temp: &Path, temp_parent: &Path) -> Option<Spare> {
    let mut temp = RunTemp::new(temp_parent, &key.config).ok()?;
    spec.qmp = Some(temp.socket_path("qmp.sock").ok()?);
    if spec.disk_overlay_dir.is_some() {
        spec.disk_overlay_dir = Some(temp.path().to_path_buf());
    }
    let argv = spec.argv();
    if argv
        .to_shell_line()
        .contains(&case_temp.display().to_string())
    {
        return None;
    }
    let stderr = temp.path().join("qemu-stderr.log");
    let process = QemuProcess::spawn(&argv, &stderr, Transport::Pipe).ok()?;
    Some(Spare {
        key,
        spec,
        argv,
        temp,
        stderr,
        process,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::arch::Accel;

    /// Live processes whose command line names `needle`.
    fn processes_naming(needle: &str) -> Vec<String> {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(Result::ok)
            .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
            .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
            .filter(|line| line.contains(needle))
            .collect()
    }

    /// The last scope ending while a spare is still being started (its thread forking) waits
    /// for that start and leaves no spare and no process behind; it used to return at once and
    /// leave the spare's thread to kill it later.
    #[test]
    fn a_scope_ending_while_a_spare_starts_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        // A "QEMU" that waits until killed.
        let fake = dir.path().join("fake-qemu-spare-test");
        std::fs::write(&fake, "#!/bin/sh\nwhile :; do sleep 1; done\n").unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let needle = fake.display().to_string();
        for round in 0..5 {
            let spares = SpareQemu::allow(1);
            assert!(spares.allowed(), "this test needs 2 CPUs");
            let spec = QemuSpec::new(&fake, "virt", Accel::Tcg, "max", "64M");
            start(
                SpareKey::new("config", "state"),
                spec,
                dir.path().join("case-temp"),
                dir.path().to_path_buf(),
            );
            drop(spares);
            {
                let slot = slot();
                assert!(!slot.starting, "round {round}: still starting");
                assert!(slot.spare.is_none(), "round {round}: a spare is left");
            }
            let left = processes_naming(&needle);
            assert!(left.is_empty(), "round {round}: still running: {left:?}");
        }
    }
}
