//! What a resolution returns: the verified files ([`Resolved`]), where they came from
//! ([`Origin`]) and what the lock said ([`LockStatus`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::lock::LockEntry;
use super::package::ResolvedPackage;

/// A resolved artifact: verified files on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Artifact name.
    pub name: String,
    /// The directory holding the outputs (the materialized cache dir; for path recipes, the
    /// directory of the source file).
    pub dir: PathBuf,
    /// Output name -> verified file.
    pub files: BTreeMap<String, PathBuf>,
    /// What the lock should pin for this artifact (what was observed).
    pub entry: LockEntry,
    /// Whether the lock pinned these bytes.
    pub status: LockStatus,
    /// Where the bytes came from this time.
    pub origin: Origin,
    /// The Debian packages the artifact was built from (command recipes with `packages`).
    pub packages: Vec<ResolvedPackage>,
}

/// Whether `guests.lock` pinned the resolved bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockStatus {
    /// Every output matched its pinned sha256.
    Locked,
    /// A command recipe whose key the lock has not recorded (its inputs moved): built and used;
    /// `guests lock` records it.
    NewKey {
        /// The key the lock recorded, if any.
        previous_key: Option<String>,
        /// What moved, one line each (`package kernel: A -> B`); empty without a lock entry.
        changes: Vec<String>,
    },
    /// Not pinned (missing entry or a different recipe key); verified only against the cache's
    /// own checksums.
    Unlocked {
        /// Why the lock did not apply.
        reason: String,
    },
    /// `guests.lock` had no entry: it was recorded there now, on first use
    /// ([`LockMode::FirstUse`](crate::LockMode::FirstUse)).
    Recorded {
        /// The lock file it was recorded in.
        lock_file: PathBuf,
    },
    /// The release of a `url` artifact was unavailable and the local build imported with
    /// `guests import --local-build` stood in for it. Never pinned; see [`super::LocalBuild`].
    LocalBuild {
        /// sha256 of the imported file.
        sha256: String,
        /// Where it was imported from.
        from: PathBuf,
    },
}

impl LockStatus {
    /// One line for people: `locked`, `new key (package kernel: A -> B)`, `not locked (why)`,
    /// `local build, not the release (sha256 0c4157d0690b…, imported from /x/a.zip)`.
    pub fn describe(&self) -> String {
        match self {
            LockStatus::Locked => "locked".into(),
            LockStatus::NewKey { changes, .. } if changes.is_empty() => {
                "new key, not in guests.lock".into()
            }
            LockStatus::NewKey { changes, .. } => {
                format!("new key, inputs moved: {}", changes.join("; "))
            }
            LockStatus::Unlocked { reason } => format!("not locked ({reason})"),
            LockStatus::Recorded { lock_file } => {
                format!("recorded in {} on first use", lock_file.display())
            }
            LockStatus::LocalBuild { sha256, from } => format!(
                "local build, not the release (sha256 {}…, imported from {})",
                sha256.get(..12).unwrap_or(sha256),
                from.display()
            ),
        }
    }
}

/// Where the resolved bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Already materialized in the cache.
    Cached,
    /// Downloaded (or unpacked from a cached download or local build) just now.
    Fetched,
    /// Built by the recipe's command just now.
    Built,
    /// A file on this machine (`kind = "path"`).
    Local,
}
