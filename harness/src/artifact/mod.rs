//! Guest artifacts: recipes in `guests/*.toml`, sha256 pins in `guests/guests.lock`, and a
//! verified, content-addressed cache shared safely by concurrent test processes.
//!
//! ```no_run
//! use vmharness::artifact::{ArtifactRef, Catalog, ResolveOptions};
//! # fn main() -> Result<(), vmharness::artifact::ArtifactError> {
//! let catalog = Catalog::load_default()?;
//! let kernel: ArtifactRef = "artifact:nimbos-aarch64/nimbos-aarch64.bin".parse()?;
//! let path = catalog.resolve_ref(&kernel, &ResolveOptions::from_env())?;
//! # Ok(()) }
//! ```
//!
//! Resolution checks the cache first, then downloads or builds under a per-artifact `flock`,
//! verifies every byte against the lock and only then renames the result into place.

mod build;
pub mod cache;
mod error;
pub mod fetch;
pub mod key;
pub mod lock;
pub mod recipe;
mod reference;
mod resolve;
pub mod unpack;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use error::ArtifactError;
pub use fetch::{Progress, RetryPolicy};
pub use lock::{LockEntry, LockFile};
pub use recipe::{ArchiveFormat, Recipe, Source};
pub use reference::ArtifactRef;
pub use resolve::{LockStatus, Origin, Resolved};
pub use unpack::UnpackLimits;

/// File name of the lock file inside the guests directory.
pub const LOCK_FILE: &str = "guests.lock";

/// How strictly resolution treats artifacts that `guests.lock` does not pin.
///
/// A pinned artifact whose bytes differ is an error in every mode except [`LockMode::Update`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// CI: a missing entry, or one recorded for a different recipe key, is an error.
    Locked,
    /// Local development: an unpinned artifact is used with a warning on stderr.
    Lenient,
    /// `guests lock`: like [`LockMode::Lenient`], but silent, since recording is the point.
    Record,
    /// `guests lock --update`: the lock is ignored; whatever is produced is reported for recording.
    Update,
}

impl LockMode {
    /// [`LockMode::Locked`] if `CI=true` or `VMHARNESS_LOCKED=1`, else [`LockMode::Lenient`].
    pub fn from_env() -> Self {
        if env_is("CI", "true") || env_is("VMHARNESS_LOCKED", "1") {
            LockMode::Locked
        } else {
            LockMode::Lenient
        }
    }
}

/// Whether resolution may use the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// Downloads and `network = true` commands may run.
    Online,
    /// Anything that needs the network is [`ArtifactError::Unavailable`] unless cached.
    Offline,
}

/// Knobs for [`Catalog::resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveOptions {
    /// The cache root.
    pub cache_dir: PathBuf,
    /// Treatment of unpinned artifacts.
    pub lock_mode: LockMode,
    /// Whether the network may be used.
    pub network: Network,
    /// Retries for transient download failures.
    pub retry: RetryPolicy,
    /// Caps for unpacking archives.
    pub unpack: UnpackLimits,
    /// Download progress display.
    pub progress: Progress,
}

impl ResolveOptions {
    /// Options for this cache dir with defaults: lenient lock, online, default retries and caps.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        ResolveOptions {
            cache_dir: cache_dir.into(),
            lock_mode: LockMode::Lenient,
            network: Network::Online,
            retry: RetryPolicy::default(),
            unpack: UnpackLimits::default(),
            progress: Progress::Auto,
        }
    }

    /// Options from the environment: cache from `$VMHARNESS_CACHE` (see [`crate::paths`]),
    /// lock mode from [`LockMode::from_env`], offline if `VMHARNESS_OFFLINE=1`.
    pub fn from_env() -> Self {
        let mut options =
            ResolveOptions::new(crate::paths::cache_dir(&crate::paths::workspace_root()));
        options.lock_mode = LockMode::from_env();
        if env_is("VMHARNESS_OFFLINE", "1") {
            options.network = Network::Offline;
        }
        options
    }
}

/// True if unavailable artifacts must fail rather than skip: `VMHARNESS_REQUIRE_ARTIFACTS=1`.
///
/// Not implied by `CI=true`: a CI machine without network access reports such trials as
/// ignored, with the reason, which is honest; a pipeline that must have them sets the variable.
pub fn require_artifacts() -> bool {
    env_is("VMHARNESS_REQUIRE_ARTIFACTS", "1")
}

fn env_is(name: &str, value: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == value)
}

/// All recipes from `guests/*.toml` plus `guests/guests.lock`.
#[derive(Debug, Clone)]
pub struct Catalog {
    guests_dir: PathBuf,
    recipes: BTreeMap<String, Recipe>,
    lock: LockFile,
}

impl Catalog {
    /// Loads every `*.toml` in `guests_dir` (sorted) and the lock file next to them.
    pub fn load(guests_dir: &Path) -> Result<Catalog, ArtifactError> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(guests_dir)
            .map_err(|e| ArtifactError::io("list", guests_dir, e))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "toml") && path.is_file())
            .collect();
        files.sort();
        let mut recipes: BTreeMap<String, Recipe> = BTreeMap::new();
        for file in files {
            for recipe in recipe::parse_file(&file)? {
                if let Some(first) = recipes.get(&recipe.name) {
                    return Err(ArtifactError::DuplicateArtifact {
                        artifact: recipe.name,
                        first: first.file.clone(),
                        second: file,
                    });
                }
                recipes.insert(recipe.name.clone(), recipe);
            }
        }
        let lock = LockFile::load(&guests_dir.join(LOCK_FILE))?;
        Ok(Catalog {
            guests_dir: guests_dir.to_path_buf(),
            recipes,
            lock,
        })
    }

    /// Loads `<workspace root>/guests`.
    pub fn load_default() -> Result<Catalog, ArtifactError> {
        Catalog::load(&crate::paths::workspace_root().join("guests"))
    }

    /// The guests directory recipes are relative to.
    pub fn guests_dir(&self) -> &Path {
        &self.guests_dir
    }

    /// Artifact names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.recipes.keys().map(String::as_str)
    }

    /// The recipe of one artifact.
    pub fn recipe(&self, name: &str) -> Result<&Recipe, ArtifactError> {
        self.recipes
            .get(name)
            .ok_or_else(|| ArtifactError::UnknownArtifact {
                artifact: name.to_string(),
                suggestion: self
                    .names()
                    .map(|known| (strsim::jaro_winkler(name, known), known))
                    .filter(|(score, _)| *score > 0.8)
                    .max_by(|a, b| a.0.total_cmp(&b.0))
                    .map(|(_, known)| known.to_string()),
            })
    }

    /// The lock file as loaded.
    pub fn lock(&self) -> &LockFile {
        &self.lock
    }

    /// Obtains an artifact (cache, else download/build), verified against the lock.
    pub fn resolve(&self, name: &str, options: &ResolveOptions) -> Result<Resolved, ArtifactError> {
        let recipe = self.recipe(name)?;
        resolve::resolve(
            recipe,
            &self.guests_dir,
            self.lock.get(name),
            self.lock.path(),
            options,
        )
    }

    /// Resolves the artifact a reference names and returns the path of the referenced file.
    pub fn resolve_ref(
        &self,
        reference: &ArtifactRef,
        options: &ResolveOptions,
    ) -> Result<PathBuf, ArtifactError> {
        let recipe = self.recipe(&reference.name)?;
        let unknown_file = |available: Vec<String>| ArtifactError::UnknownFile {
            artifact: reference.name.clone(),
            file: reference.file.clone(),
            available,
        };
        if !recipe.outputs().contains(&reference.file) {
            return Err(unknown_file(recipe.outputs()));
        }
        let resolved = self.resolve(&reference.name, options)?;
        resolved
            .files
            .get(&reference.file)
            .cloned()
            .ok_or_else(|| unknown_file(resolved.files.keys().cloned().collect()))
    }
}
