//! The state store: one directory per key, made under an flock and renamed into place whole,
//! checked against its metadata before every use.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use vmharness_digest::Sha256;

use super::template::RamMeta;
use super::{Method, StateError, StateKey};
use crate::temp::RemovedOnSignal;

const META: &str = "meta.toml";
const STATE: &str = "state";
const DISK: &str = "disk.img";
const RAM: &str = "ram";
const UNUSABLE: &str = "unusable";

/// The states under one directory.
#[derive(Debug, Clone)]
pub(crate) struct StateStore {
    dir: PathBuf,
}

/// Held while a state is looked up or made; other processes wait for it.
pub(crate) struct StateLock {
    _flock: Flock<File>,
}

/// A state being made: its private directory (see [`StateStore::begin`]).
#[derive(Debug)]
pub(crate) struct NewState {
    dir: PathBuf,
    _on_signal: RemovedOnSignal,
}

impl NewState {
    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.dir
    }
}

/// What `meta.toml` records about a state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StateMeta {
    /// The key.
    pub key: String,
    /// How it was written.
    pub method: Method,
    /// The migration stream's size in bytes.
    pub state_bytes: u64,
    /// The frozen disk's sha256, if the VM has a disk.
    pub disk_sha256: Option<String>,
    /// When it was saved (seconds since the epoch): the guest's wall clock lags by its age.
    pub saved_at: u64,
    /// How long booting to `[ready]` took, in seconds.
    pub boot_secs: f64,
    /// What the key covers.
    pub inputs: Vec<String>,
    /// The RAM file (`template` only).
    #[serde(default)]
    pub ram: Option<RamMeta>,
}

/// A state found in the store and checked.
#[derive(Debug, Clone)]
pub(crate) struct SavedState {
    /// Its directory.
    pub dir: PathBuf,
    /// Its metadata.
    pub meta: StateMeta,
    /// Why restoring it failed before, if it did: its cases boot cold.
    pub unusable: Option<String>,
}

impl SavedState {
    /// The migration stream.
    pub(crate) fn state(&self) -> PathBuf {
        self.dir.join(STATE)
    }

    /// The frozen disk, if the VM has one.
    pub(crate) fn disk(&self) -> Option<PathBuf> {
        self.meta.disk_sha256.as_ref().map(|_| self.dir.join(DISK))
    }

    /// The guest RAM file (`template`).
    pub(crate) fn ram(&self) -> PathBuf {
        self.dir.join(RAM)
    }
}

impl StateStore {
    /// The store in `dir`.
    pub(crate) fn new(dir: impl Into<PathBuf>) -> StateStore {
        StateStore { dir: dir.into() }
    }

    fn io<'p>(
        what: &'static str,
        path: &'p Path,
    ) -> impl FnOnce(std::io::Error) -> StateError + 'p {
        move |source| StateError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }

    /// Takes `key`'s lock, waiting while another process holds it; sweeps what dead processes
    /// left half made first.
    pub(crate) fn lock(&self, key: &StateKey) -> Result<StateLock, StateError> {
        std::fs::create_dir_all(&self.dir).map_err(Self::io("creating", &self.dir))?;
        self.sweep();
        let path = self.dir.join(format!("{}.lock", key.hex));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(Self::io("opening", &path))?;
        let flock =
            Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| StateError::Io {
                what: "locking",
                path: path.clone(),
                source: errno.into(),
            })?;
        Ok(StateLock { _flock: flock })
    }

    /// `key`'s state: `None` when there is none, an error when it is damaged (its files do
    /// not match its metadata; the caller discards it).
    pub(crate) fn open(&self, key: &StateKey) -> Result<Option<SavedState>, StateError> {
        let dir = self.dir.join(&key.hex);
        let meta_path = dir.join(META);
        let text = match std::fs::read_to_string(&meta_path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && !dir.exists() => {
                return Ok(None)
            }
            Err(err) => {
                return Err(StateError::Damaged {
                    dir,
                    why: format!("{META}: {err}"),
                })
            }
        };
        let damaged = |why: String| StateError::Damaged {
            dir: dir.clone(),
            why,
        };
        let meta: StateMeta =
            toml::from_str(&text).map_err(|err| damaged(format!("{META}: {err}")))?;
        if meta.key != key.hex {
            return Err(damaged(format!("{META} is for key {}", meta.key)));
        }
        let state = dir.join(STATE);
        let bytes = std::fs::metadata(&state).map(|m| m.len());
        if bytes.as_ref().ok() != Some(&meta.state_bytes) {
            return Err(damaged(format!(
                "{STATE} is {} bytes, {META} says {}",
                bytes.map_or_else(|e| e.to_string(), |b| b.to_string()),
                meta.state_bytes
            )));
        }
        if let Some(expected) = &meta.disk_sha256 {
            // A state restored onto other disk bytes reads stale data without any error.
            let disk = dir.join(DISK);
            let found =
                super::key::sha256_file(&disk).map_err(|err| damaged(format!("{DISK}: {err}")))?;
            if &found != expected {
                return Err(damaged(format!(
                    "{DISK} has sha256 {found}, the state was saved with {expected}"
                )));
            }
        }
        if meta.method == Method::Template && meta.ram.is_none() {
            return Err(damaged(format!("{META} records no {RAM} file")));
        }
        if let Some(saved) = &meta.ram {
            let found =
                RamMeta::of(&dir.join(RAM)).map_err(|err| damaged(format!("{RAM}: {err}")))?;
            if let Some(why) = saved.differs(&found) {
                return Err(damaged(format!("{RAM} {why}")));
            }
        }
        let unusable = std::fs::read_to_string(dir.join(UNUSABLE)).ok();
        // Its last use, for pruning: the least recently used states go first.
        let _ = File::open(&meta_path).and_then(|f| f.set_modified(std::time::SystemTime::now()));
        Ok(Some(SavedState {
            dir,
            meta,
            unusable,
        }))
    }

    /// A fresh private directory to make `key`'s state in (`.new-<key>-<pid>`), removed if the
    /// process is told to terminate before it is committed or dropped.
    pub(crate) fn begin(&self, key: &StateKey) -> Result<NewState, StateError> {
        let dir = self
            .dir
            .join(format!(".new-{}-{}", key.short(), std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(Self::io("creating", &dir))?;
        let on_signal = RemovedOnSignal::new(&dir);
        Ok(NewState {
            dir,
            _on_signal: on_signal,
        })
    }

    /// Removes what dead processes left half made (`.new-<key>-<pid>` of a pid that is gone:
    /// a SIGKILL, which no handler sees).
    pub(crate) fn sweep(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(".new-") else {
                continue;
            };
            let pid = rest.rsplit('-').next().and_then(|p| p.parse::<i32>().ok());
            if pid.is_some_and(|pid| !crate::temp::alive(pid)) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    /// Where a state being made in `new` keeps its stream.
    pub(crate) fn state_in(new: &Path) -> PathBuf {
        new.join(STATE)
    }

    /// Where a `template` state being made in `new` keeps its RAM file.
    pub(crate) fn ram_in(new: &Path) -> PathBuf {
        new.join(RAM)
    }

    /// Makes the RAM file of the state being made in `new` read-only once QEMU has exited, and
    /// records what it is.
    pub(crate) fn freeze_ram(new: &Path) -> Result<RamMeta, StateError> {
        let ram = new.join(RAM);
        std::fs::set_permissions(&ram, std::fs::Permissions::from_mode(0o400))
            .map_err(Self::io("protecting", &ram))?;
        RamMeta::of(&ram).map_err(Self::io("reading", &ram))
    }

    /// Copies the VM's (stopped) disk into the state being made in `new`, sparse and
    /// read-only; returns its sha256.
    pub(crate) fn freeze_disk(new: &Path, disk: &Path) -> Result<String, StateError> {
        let target = new.join(DISK);
        let hex = sparse_copy(disk, &target)?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o400))
            .map_err(Self::io("protecting", &target))?;
        Ok(hex)
    }

    /// Writes `meta` into `new` and renames it into place as `key`'s state.
    pub(crate) fn commit(&self, new: &Path, meta: StateMeta) -> Result<SavedState, StateError> {
        let meta_path = new.join(META);
        let text = toml::to_string(&meta).map_err(|err| StateError::Damaged {
            dir: new.to_path_buf(),
            why: format!("cannot write {META}: {err}"),
        })?;
        std::fs::write(&meta_path, text).map_err(Self::io("writing", &meta_path))?;
        let dir = self.dir.join(&meta.key);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(new, &dir).map_err(Self::io("renaming into place", &dir))?;
        Ok(SavedState {
            dir,
            meta,
            unusable: None,
        })
    }

    /// Removes all but the `keep` most recently used states, and what dead processes left
    /// half made. A state whose lock another process holds is left alone.
    pub(crate) fn prune(&self, keep: usize) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        self.sweep();
        let mut states: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".new-") {
                continue;
            } else if path.is_dir() {
                let used = std::fs::metadata(path.join(META))
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH);
                states.push((used, path));
            }
        }
        states.sort_by_key(|(used, _)| std::cmp::Reverse(*used));
        for (_, path) in states.into_iter().skip(keep) {
            let lock = path.with_extension("lock");
            let Ok(file) = OpenOptions::new().write(true).open(&lock) else {
                let _ = std::fs::remove_dir_all(&path);
                continue;
            };
            if let Ok(_held) = Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                let _ = std::fs::remove_dir_all(&path);
                let _ = std::fs::remove_file(&lock);
            }
        }
    }

    /// Removes `key`'s state (damaged, or made by a run that failed).
    pub(crate) fn discard(&self, key: &StateKey) {
        let _ = std::fs::remove_dir_all(self.dir.join(&key.hex));
    }

    /// Records that restoring `state` failed, so its cases boot cold from now on.
    pub(crate) fn mark_unusable(state: &SavedState, why: &str) {
        let _ = std::fs::write(state.dir.join(UNUSABLE), why);
    }
}

/// Copies `from` to `to` leaving holes where `from` has zeros; returns the sha256 of the bytes.
fn sparse_copy(from: &Path, to: &Path) -> Result<String, StateError> {
    let mut input = File::open(from).map_err(StateStore::io("opening", from))?;
    let mut output = File::create(to).map_err(StateStore::io("creating", to))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut length = 0u64;
    loop {
        let n = read_full(&mut input, &mut buf).map_err(StateStore::io("reading", from))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        length += n as u64;
        if buf[..n].iter().all(|b| *b == 0) {
            output
                .seek(SeekFrom::Current(n as i64))
                .map_err(StateStore::io("writing", to))?;
        } else {
            output
                .write_all(&buf[..n])
                .map_err(StateStore::io("writing", to))?;
        }
    }
    output
        .set_len(length)
        .map_err(StateStore::io("writing", to))?;
    output.sync_all().map_err(StateStore::io("writing", to))?;
    Ok(hasher.finish_hex())
}

fn read_full(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> StateKey {
        StateKey {
            hex: "ab".repeat(32),
            inputs: vec!["test".into()],
        }
    }

    fn made(store: &StateStore, disk: &[u8]) -> SavedState {
        let new = store.begin(&key()).unwrap();
        let new = new.path();
        std::fs::write(StateStore::state_in(new), b"stream").unwrap();
        let source = new.join("source.img");
        std::fs::write(&source, disk).unwrap();
        let disk_sha256 = StateStore::freeze_disk(new, &source).unwrap();
        std::fs::remove_file(&source).unwrap();
        let meta = StateMeta {
            key: key().hex,
            method: Method::Exec,
            state_bytes: 6,
            disk_sha256: Some(disk_sha256),
            saved_at: 0,
            boot_secs: 1.0,
            inputs: key().inputs,
            ram: None,
        };
        store.commit(new, meta).unwrap()
    }

    #[test]
    fn pruning_keeps_the_most_recently_used_states() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path());
        for (i, age) in [30u64, 10, 20].into_iter().enumerate() {
            let state = dir.path().join(format!("{i:064}"));
            std::fs::create_dir(&state).unwrap();
            let meta = File::create(state.join(META)).unwrap();
            let used = std::time::SystemTime::now() - std::time::Duration::from_secs(age);
            meta.set_modified(used).unwrap();
        }
        let dead = dir.path().join(".new-0123456789abcdef-999999999");
        std::fs::create_dir(&dead).unwrap();
        store.prune(2);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [format!("{:064}", 1), format!("{:064}", 2)]);
    }

    #[test]
    fn a_state_is_found_whole_and_any_damage_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path());
        assert!(store.open(&key()).unwrap().is_none());
        let mut disk = vec![0u8; 1 << 20];
        disk[300_000] = 7;
        let state = made(&store, &disk);
        let found = store.open(&key()).unwrap().unwrap();
        assert_eq!(std::fs::read(found.disk().unwrap()).unwrap(), disk);
        assert!(found.unusable.is_none());

        // Every way the files can disagree with the metadata is damage, never a state.
        let disk_path = state.disk().unwrap();
        std::fs::set_permissions(&disk_path, std::fs::Permissions::from_mode(0o600)).unwrap();
        type Damage<'a> = (&'a str, Box<dyn Fn() + 'a>);
        let damage: [Damage; 4] = [
            (
                "sha256",
                Box::new(|| std::fs::write(&disk_path, [1u8; 16]).unwrap()),
            ),
            (
                "bytes",
                Box::new(|| std::fs::write(state.state(), b"short").unwrap()),
            ),
            (
                "bytes",
                Box::new(|| std::fs::remove_file(state.state()).unwrap()),
            ),
            (
                META,
                Box::new(|| std::fs::write(state.dir.join(META), "key = 1").unwrap()),
            ),
        ];
        for (what, damage) in damage {
            made(&store, &disk);
            std::fs::set_permissions(&disk_path, std::fs::Permissions::from_mode(0o600)).unwrap();
            damage();
            let err = store.open(&key()).unwrap_err().to_string();
            assert!(
                err.contains("damaged") && err.contains(what),
                "{what}: {err}"
            );
        }
        made(&store, &disk);
        StateStore::mark_unusable(&state, "guard timed out");
        let found = store.open(&key()).unwrap().unwrap();
        assert_eq!(found.unusable.as_deref(), Some("guard timed out"));
    }
}
