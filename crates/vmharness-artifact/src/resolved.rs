//! What a resolution returns: the verified files ([`Resolved`]), where they came from
//! ([`Origin`], [`Provenance`]) and what the lock said ([`LockStatus`]).

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

/// What a run booted from one artifact: recorded in reports and `result.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    /// Artifact name.
    pub artifact: String,
    /// Its recipe key.
    pub key: String,
    /// Output name -> sha256.
    pub outputs: BTreeMap<String, String>,
    /// The Debian packages it was built from (`linux-image-6.1.0-57-arm64 6.1.192-3`).
    pub packages: Vec<String>,
    /// How the lock saw it ([`LockStatus::describe`]).
    pub lock: String,
    /// Whether the lock had not recorded this key (inputs moved).
    pub new_key: bool,
    /// Whether a local build stood in for the release ([`LockStatus::LocalBuild`]).
    pub local_build: bool,
}

impl Provenance {
    /// One line: `linux-aarch64 (key 52c1cad6abd3): linux-image-… 6.1.192-3, busybox-static …; locked`.
    pub fn summary(&self) -> String {
        let short = self.key.get(..12).unwrap_or(&self.key);
        let packages = if self.packages.is_empty() {
            String::new()
        } else {
            format!(": booted {}", self.packages.join(", "))
        };
        format!("{} (key {short}){packages}; {}", self.artifact, self.lock)
    }
}

impl Resolved {
    /// What a run that uses this artifact booted.
    pub fn provenance(&self) -> Provenance {
        Provenance {
            artifact: self.name.clone(),
            key: self.entry.key.clone(),
            outputs: self.entry.outputs.clone(),
            packages: self.packages.iter().map(ToString::to_string).collect(),
            lock: self.status.describe(),
            new_key: matches!(self.status, LockStatus::NewKey { .. }),
            local_build: matches!(self.status, LockStatus::LocalBuild { .. }),
        }
    }
}

/// Whether `guests.lock` pinned the resolved bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockStatus {
    /// Every output matched its pinned sha256.
    Locked,
    /// A command recipe whose key the lock has not recorded (its inputs moved): built and used;
    /// `cargo xtask guests lock` records it.
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
