//! `guests/guests.lock`: the pinned sha256 of every artifact output, like `Cargo.lock`.
//!
//! ```toml
//! version = 1
//!
//! [[artifact]]
//! name = "nimbos-aarch64"
//! key = "<sha256 of the recipe>"
//! download = "<sha256 of the downloaded file>"   # url recipes only
//!
//! [artifact.inputs]                                 # what the key was computed from
//! "package kernel" = "linux-image-6.1.0-57-arm64 6.1.192-3 arm64 sha256:<hex>"
//!
//! [artifact.outputs]
//! "nimbos-aarch64.bin" = "<sha256>"
//! ```
//!
//! Entries are sorted by name and outputs by file name, so the file is stable under rewrites.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::ArtifactError;

/// The lock file format version this code reads and writes.
pub(crate) const LOCK_VERSION: u32 = 1;

/// What the lock pins for one artifact.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockEntry {
    /// The recipe key the outputs were produced from; a different key means the entry is stale.
    pub key: String,
    /// For url recipes: sha256 of the downloaded file (checked before unpacking).
    #[serde(default)]
    pub download: Option<String>,
    /// The inputs the key was computed from, readable (file hashes, tool versions, packages):
    /// when the key moves, the difference says what moved.
    #[serde(default)]
    pub inputs: BTreeMap<String, String>,
    /// Output file name -> sha256.
    pub outputs: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LockDocument {
    version: u32,
    #[serde(default)]
    artifact: Vec<NamedEntry>,
}

#[derive(Deserialize)]
struct NamedEntry {
    name: String,
    #[serde(flatten)]
    entry: LockEntry,
}

/// The parsed lock file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockFile {
    path: PathBuf,
    entries: BTreeMap<String, LockEntry>,
}

impl LockFile {
    /// Reads the lock file; a missing file is an empty lock.
    pub fn load(path: &Path) -> Result<LockFile, ArtifactError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(ArtifactError::io("read", path, e)),
        };
        let mut lock = LockFile {
            path: path.to_path_buf(),
            entries: BTreeMap::new(),
        };
        if text.trim().is_empty() {
            return Ok(lock);
        }
        let error = |message: String| ArtifactError::LockFile {
            file: path.to_path_buf(),
            message,
        };
        let document: LockDocument = toml::from_str(&text).map_err(|e| error(e.to_string()))?;
        if document.version != LOCK_VERSION {
            return Err(error(format!(
                "lock version {} is not supported (expected {LOCK_VERSION})",
                document.version
            )));
        }
        for named in document.artifact {
            if lock
                .entries
                .insert(named.name.clone(), named.entry)
                .is_some()
            {
                return Err(error(format!("artifact `{}` is locked twice", named.name)));
            }
        }
        Ok(lock)
    }

    /// Where this lock lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The entry for an artifact, if locked.
    pub fn get(&self, name: &str) -> Option<&LockEntry> {
        self.entries.get(name)
    }

    /// All entries, sorted by name.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &LockEntry)> {
        self.entries
            .iter()
            .map(|(name, entry)| (name.as_str(), entry))
    }

    /// Records (or replaces) an entry.
    pub fn insert(&mut self, name: &str, entry: LockEntry) {
        self.entries.insert(name.to_string(), entry);
    }

    /// Drops entries whose artifact no longer has a recipe; returns the dropped names.
    pub fn retain_names(&mut self, mut keep: impl FnMut(&str) -> bool) -> Vec<String> {
        let dropped: Vec<String> = self.entries.keys().filter(|n| !keep(n)).cloned().collect();
        for name in &dropped {
            self.entries.remove(name);
        }
        dropped
    }

    /// The canonical text of the lock file.
    pub(crate) fn to_toml_string(&self) -> String {
        let mut out = String::from(
            "# Pinned sha256 of every guest artifact. Written by vmharness (`guests lock`).\n",
        );
        let _ = writeln!(out, "version = {LOCK_VERSION}");
        for (name, entry) in &self.entries {
            let _ = writeln!(out, "\n[[artifact]]\nname = {}", quote(name));
            let _ = writeln!(out, "key = {}", quote(&entry.key));
            if let Some(download) = &entry.download {
                let _ = writeln!(out, "download = {}", quote(download));
            }
            if !entry.inputs.is_empty() {
                let _ = writeln!(out, "\n[artifact.inputs]");
                for (input, value) in &entry.inputs {
                    let _ = writeln!(out, "{} = {}", quote(input), quote(value));
                }
            }
            let _ = writeln!(out, "\n[artifact.outputs]");
            for (file, sha) in &entry.outputs {
                let _ = writeln!(out, "{} = {}", quote(file), quote(sha));
            }
        }
        out
    }

    /// Records `name`'s entry in the lock file at `path` unless it has one by now, and says
    /// whether it did. The file is re-read and replaced atomically under an exclusive `flock` of
    /// its directory, so concurrent first uses (one process per test) each add their entry and
    /// never lose another's; a missing file is created.
    pub(crate) fn record_first_use(
        path: &Path,
        name: &str,
        entry: &LockEntry,
    ) -> Result<bool, ArtifactError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let handle = std::fs::File::open(dir).map_err(|e| ArtifactError::io("open", dir, e))?;
        let _flock = nix::fcntl::Flock::lock(handle, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, errno)| ArtifactError::io("lock", dir, std::io::Error::from(errno)))?;
        let mut lock = LockFile::load(path)?;
        if lock.get(name).is_some() {
            return Ok(false);
        }
        lock.insert(name, entry.clone());
        lock.save()?;
        Ok(true)
    }

    /// Writes the lock file atomically (temp file + rename).
    pub fn save(&self) -> Result<(), ArtifactError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let mut temp = tempfile::NamedTempFile::new_in(dir)
            .map_err(|e| ArtifactError::io("create temp file in", dir, e))?;
        temp.write_all(self.to_toml_string().as_bytes())
            .map_err(|e| ArtifactError::io("write", temp.path().to_path_buf(), e))?;
        // A temp file is private (0600); the lock is a project file everyone reads.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(temp.path(), std::fs::Permissions::from_mode(0o644))
            .map_err(|e| ArtifactError::io("set permissions of", temp.path().to_path_buf(), e))?;
        temp.persist(&self.path)
            .map_err(|e| ArtifactError::io("replace", &self.path, e.error))?;
        Ok(())
    }
}

fn quote(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}
