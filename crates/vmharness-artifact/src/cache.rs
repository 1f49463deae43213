//! The on-disk cache: downloads by content, materialized artifacts by recipe key, and the
//! per-artifact locks that let concurrent processes share it.
//!
//! ```text
//! <cache>/objects/<sha256>          downloaded files, named by their content
//! <cache>/<name>/<key>/             a materialized artifact (outputs + .vmharness.sha256)
//! <cache>/<name>/.tmp-*             staging dirs; renamed into place only once verified
//! <cache>/locks/<name>.lock         flock(2) held while producing <name>
//! <cache>/local-builds/<name>.toml  a local build standing in for a release (see `local_build`)
//! <cache>/quarantine/<entry>-<time>  cache entries whose bytes changed, kept as evidence
//! <cache>/quarantine/notes/<entry>.toml  what was wrong, until the entry is produced again
//! ```
//!
//! The lock is an OS `flock`: it dies with its holder, so a killed process never leaves a lock
//! behind that someone has to guess about.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::error::{ArtifactError, CacheCorruption};

/// Name of the checksum file inside a materialized artifact directory (sha256sum format).
pub(crate) const SUMS_FILE: &str = ".vmharness.sha256";

const STAGING_PREFIX: &str = ".tmp-";

/// One entry of the cache, as quarantine labels and notes name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entry<'a> {
    /// `objects/<sha256>`.
    Object(&'a str),
    /// `<name>/<key>`, a materialized artifact.
    Dir {
        /// Artifact name.
        name: &'a str,
        /// Recipe key.
        key: &'a str,
    },
}

impl Entry<'_> {
    fn label(&self) -> String {
        match self {
            Entry::Object(sha256) => format!("object-{sha256}"),
            Entry::Dir { name, key } => format!("{name}-{key}"),
        }
    }
}

/// What was found wrong with a cache entry, before it is moved aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Corrupt {
    /// The artifact that found it.
    pub artifact: String,
    /// The file whose bytes changed.
    pub file: PathBuf,
    /// The sha256 it should have.
    pub expected: String,
    /// The sha256 it has.
    pub actual: String,
}

/// A cache entry moved aside to `<cache>/quarantine/` because its bytes changed. A note of it
/// stays until the entry is produced again, so a resolution that cannot produce it (offline,
/// on a retry, in a later process) reports the corruption instead of "not cached".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Quarantined {
    /// The artifact that found it.
    pub artifact: String,
    /// The file whose bytes changed.
    pub file: PathBuf,
    /// The sha256 it should have.
    pub expected: String,
    /// The sha256 it had.
    pub actual: String,
    /// Where it was moved.
    pub moved_to: PathBuf,
}

impl Quarantined {
    /// The error for a quarantined entry that cannot be produced again, saying why.
    pub(crate) fn into_error(self, reason: impl Into<String>) -> ArtifactError {
        ArtifactError::CorruptCache(Box::new(CacheCorruption {
            artifact: self.artifact,
            file: self.file,
            expected: self.expected,
            actual: self.actual,
            moved_to: self.moved_to,
            reason: reason.into(),
        }))
    }
}

/// A cache rooted at one directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cache {
    root: PathBuf,
}

/// An exclusive lock on one artifact's cache entries; released on drop or process death.
#[derive(Debug)]
pub struct CacheLock {
    _flock: Flock<File>,
}

impl Cache {
    /// A cache rooted at `root` (created on first use).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Cache { root: root.into() }
    }

    /// The cache root.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Directory of downloaded objects.
    pub(crate) fn objects_dir(&self) -> PathBuf {
        self.root.join("objects")
    }

    /// Path of the object with this sha256.
    pub fn object_path(&self, sha256: &str) -> PathBuf {
        self.objects_dir().join(sha256)
    }

    /// The record of the local build imported for `name`.
    pub fn local_build_record(&self, name: &str) -> PathBuf {
        self.root.join("local-builds").join(format!("{name}.toml"))
    }

    /// Copies `file`, whose sha256 the caller computed, into the object store (unless a good
    /// object of that sha256 is already there; a changed one is moved aside) and returns the
    /// object's path. The copy is hashed again, so a file that changed while it was copied is
    /// refused.
    pub(crate) fn store_copy(
        &self,
        artifact: &str,
        file: &Path,
        sha256: &str,
    ) -> Result<PathBuf, ArtifactError> {
        let objects = self.objects_dir();
        create_dir_all(&objects)?;
        let object = self.object_path(sha256);
        if object.is_file() {
            let actual = super::key::sha256_file(&object)?;
            if actual == sha256 {
                return Ok(object);
            }
            let found = Corrupt {
                artifact: artifact.to_string(),
                file: object.clone(),
                expected: sha256.to_string(),
                actual,
            };
            self.quarantine(&object, Entry::Object(sha256), found)?;
        }
        let temp = tempfile::Builder::new()
            .prefix(".tmp-import-")
            .tempfile_in(&objects)
            .map_err(|e| ArtifactError::io("create temp file in", &objects, e))?;
        std::fs::copy(file, temp.path()).map_err(|e| ArtifactError::io("copy", file, e))?;
        if super::key::sha256_file(temp.path())? != sha256 {
            return Err(ArtifactError::Io {
                action: "copy (it changed while being imported)",
                path: file.to_path_buf(),
                source: std::io::Error::other("content changed"),
            });
        }
        let path = temp
            .into_temp_path()
            .keep()
            .map_err(|e| ArtifactError::io("keep", &objects, e.error))?;
        self.store_object(&path, sha256)
    }

    /// Moves a verified file into the object store as `objects/<sha256>` by rename, makes it
    /// read-only and forgets an earlier corruption of that object. Returns the object's path.
    pub(crate) fn store_object(&self, from: &Path, sha256: &str) -> Result<PathBuf, ArtifactError> {
        let to = self.object_path(sha256);
        set_read_only(from)?;
        std::fs::rename(from, &to).map_err(|e| ArtifactError::io("store object as", &to, e))?;
        self.forget_quarantined(Entry::Object(sha256));
        Ok(to)
    }

    /// Directory holding all materializations of one artifact.
    pub(crate) fn artifact_root(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The materialized directory of one artifact at one recipe key.
    pub fn artifact_dir(&self, name: &str, key: &str) -> PathBuf {
        self.artifact_root(name).join(key)
    }

    /// Blocks until this process holds the exclusive lock for `name`.
    pub fn lock(&self, name: &str) -> Result<CacheLock, ArtifactError> {
        let dir = self.root.join("locks");
        create_dir_all(&dir)?;
        let path = dir.join(format!("{name}.lock"));
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| ArtifactError::io("open lock file", &path, e))?;
        let flock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| ArtifactError::io("lock", &path, errno.into()))?;
        Ok(CacheLock { _flock: flock })
    }

    /// Removes staging dirs left behind by killed processes. Call only while holding the lock.
    pub(crate) fn remove_stale_staging(
        &self,
        name: &str,
        _lock: &CacheLock,
    ) -> Result<(), ArtifactError> {
        let dir = self.artifact_root(name);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(STAGING_PREFIX)
            {
                let path = entry.path();
                std::fs::remove_dir_all(&path)
                    .map_err(|e| ArtifactError::io("remove stale", &path, e))?;
            }
        }
        Ok(())
    }

    /// A fresh, empty staging directory next to where `name` is materialized.
    pub(crate) fn staging_dir(
        &self,
        name: &str,
        _lock: &CacheLock,
    ) -> Result<tempfile::TempDir, ArtifactError> {
        let dir = self.artifact_root(name);
        create_dir_all(&dir)?;
        tempfile::Builder::new()
            .prefix(STAGING_PREFIX)
            .tempdir_in(&dir)
            .map_err(|e| ArtifactError::io("create staging dir in", &dir, e))
    }

    /// Writes the checksum file into `staging` and renames it to `<name>/<key>` atomically.
    pub(crate) fn commit(
        &self,
        staging: tempfile::TempDir,
        name: &str,
        key: &str,
        sums: &BTreeMap<String, String>,
    ) -> Result<PathBuf, ArtifactError> {
        let sums_path = staging.path().join(SUMS_FILE);
        let text: String = sums
            .iter()
            .map(|(file, sha)| format!("{sha}  {file}\n"))
            .collect();
        std::fs::write(&sums_path, text).map_err(|e| ArtifactError::io("write", &sums_path, e))?;
        make_read_only(staging.path())?;
        let target = self.artifact_dir(name, key);
        let staged = staging.keep();
        std::fs::rename(&staged, &target).map_err(|e| {
            let _ = std::fs::remove_dir_all(&staged);
            ArtifactError::io("rename staging dir to", &target, e)
        })?;
        self.forget_quarantined(Entry::Dir { name, key });
        Ok(target)
    }

    /// Moves a cache entry whose bytes no longer match aside, to `<cache>/quarantine/`, so the
    /// evidence is kept, and notes what was wrong until the entry is produced again.
    pub(crate) fn quarantine(
        &self,
        path: &Path,
        entry: Entry<'_>,
        found: Corrupt,
    ) -> Result<Quarantined, ArtifactError> {
        let dir = self.root.join("quarantine");
        create_dir_all(&dir)?;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let target = dir.join(format!("{}-{stamp}", entry.label()));
        std::fs::rename(path, &target)
            .map_err(|e| ArtifactError::io("move aside to", &target, e))?;
        let quarantined = Quarantined {
            artifact: found.artifact,
            file: found.file,
            expected: found.expected,
            actual: found.actual,
            moved_to: target,
        };
        self.write_note(entry, &quarantined)?;
        Ok(quarantined)
    }

    fn notes_dir(&self) -> PathBuf {
        self.root.join("quarantine").join("notes")
    }

    fn note_path(&self, entry: Entry<'_>) -> PathBuf {
        self.notes_dir().join(format!("{}.toml", entry.label()))
    }

    fn write_note(&self, entry: Entry<'_>, quarantined: &Quarantined) -> Result<(), ArtifactError> {
        let dir = self.notes_dir();
        create_dir_all(&dir)?;
        let path = self.note_path(entry);
        let text = toml::to_string(quarantined)
            .map_err(|e| ArtifactError::io("write", &path, std::io::Error::other(e)))?;
        let temp = tempfile::NamedTempFile::new_in(&dir)
            .map_err(|e| ArtifactError::io("create temp file in", &dir, e))?;
        std::fs::write(temp.path(), text)
            .map_err(|e| ArtifactError::io("write", temp.path(), e))?;
        temp.persist(&path)
            .map_err(|e| ArtifactError::io("write", &path, e.error))?;
        Ok(())
    }

    /// The note of an entry that was quarantined and not produced again since.
    pub(crate) fn quarantined(&self, entry: Entry<'_>) -> Option<Quarantined> {
        let text = std::fs::read_to_string(self.note_path(entry)).ok()?;
        toml::from_str(&text).ok()
    }

    /// Whether an entry `artifact` found corrupt is still quarantined (not produced again).
    pub fn has_quarantined(&self, artifact: &str) -> bool {
        let Ok(entries) = std::fs::read_dir(self.notes_dir()) else {
            return false;
        };
        entries.flatten().any(|entry| {
            std::fs::read_to_string(entry.path())
                .ok()
                .and_then(|text| toml::from_str::<Quarantined>(&text).ok())
                .is_some_and(|note| note.artifact == artifact)
        })
    }

    /// Drops the note of an entry that was produced again (best effort: a note left behind
    /// only matters while the entry is missing).
    fn forget_quarantined(&self, entry: Entry<'_>) {
        let _ = std::fs::remove_file(self.note_path(entry));
    }

    /// Removes partial downloads (`objects/.tmp*`) older than `age`: a download is bounded in
    /// time, so an older one belongs to a process that died.
    pub(crate) fn sweep_partial_objects(&self, age: std::time::Duration) {
        let Ok(entries) = std::fs::read_dir(self.objects_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|elapsed| elapsed > age);
            if stale && entry.file_name().to_string_lossy().starts_with(".tmp") {
                let path = entry.path();
                let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
            }
        }
    }
}

fn set_read_only(path: &Path) -> Result<(), ArtifactError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444))
        .map_err(|e| ArtifactError::io("make read-only", path, e))
}

/// Makes every regular file below `dir` read-only (cache files are written once).
fn make_read_only(dir: &Path) -> Result<(), ArtifactError> {
    let entries = std::fs::read_dir(dir).map_err(|e| ArtifactError::io("list", dir, e))?;
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => make_read_only(&path)?,
            Ok(t) if t.is_file() => set_read_only(&path)?,
            _ => {}
        }
    }
    Ok(())
}

/// Reads the checksum file of a materialized directory, if it is complete.
pub(crate) fn read_sums(dir: &Path) -> Option<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(dir.join(SUMS_FILE)).ok()?;
    text.lines()
        .map(|line| {
            let (sha, file) = line.split_once("  ")?;
            Some((file.to_string(), sha.to_string()))
        })
        .collect()
}

pub(crate) fn create_dir_all(dir: &Path) -> Result<(), ArtifactError> {
    std::fs::create_dir_all(dir).map_err(|e| ArtifactError::io("create directory", dir, e))
}

/// What the object store holds for one sha256.
pub(super) enum ObjectCheck {
    /// The object, verified.
    Valid(PathBuf),
    /// Its bytes had changed: moved aside now, or by an earlier resolution and not stored again.
    Corrupt(Quarantined),
    /// Not there, and not known to have been corrupt.
    Absent,
}

/// Re-hashes the object of `sha256`; a changed one is quarantined (`then` says what happens
/// next, for the warning).
pub(super) fn check_object(
    cache: &Cache,
    artifact: &str,
    sha256: &str,
    then: &str,
) -> Result<ObjectCheck, ArtifactError> {
    let object = cache.object_path(sha256);
    if !object.is_file() {
        return Ok(match cache.quarantined(Entry::Object(sha256)) {
            Some(quarantined) => ObjectCheck::Corrupt(quarantined),
            None => ObjectCheck::Absent,
        });
    }
    let actual = super::key::sha256_file(&object)?;
    if actual == sha256 {
        return Ok(ObjectCheck::Valid(object));
    }
    let found = Corrupt {
        artifact: artifact.to_string(),
        file: object.clone(),
        expected: sha256.to_string(),
        actual: actual.clone(),
    };
    let quarantined = cache.quarantine(&object, Entry::Object(sha256), found)?;
    eprintln!(
        "warning: artifact `{artifact}`: cached file {} does not match its sha256 (got {actual}); moved to {} and {then}",
        object.display(),
        quarantined.moved_to.display()
    );
    Ok(ObjectCheck::Corrupt(quarantined))
}
