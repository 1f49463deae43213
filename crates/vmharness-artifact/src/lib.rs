//! Guest artifacts: recipes in `guests/*.toml`, sha256 pins in `guests/guests.lock`, and a
//! verified, content-addressed cache shared safely by concurrent test processes.
//!
//! ```no_run
//! use std::path::Path;
//! use vmharness_artifact::{ArtifactRef, Catalog, ResolveOptions};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let catalog = Catalog::load(Path::new("guests"))?;
//! let options = ResolveOptions::new("target/vmharness/cache");
//! let kernel: ArtifactRef = "artifact:nimbos-aarch64/nimbos-aarch64.bin".parse()?;
//! let path = catalog.resolve_ref(&kernel, &options)?;
//! # Ok(()) }
//! ```
//!
//! Resolution checks the cache first, then downloads or builds under a per-artifact `flock`,
//! verifies every byte against the lock and only then renames the result into place. When a
//! `url` artifact's release is unavailable, a recorded [`LocalBuild`] stands in for it.

mod build;
pub mod cache;
pub mod debian;
mod error;
pub mod fetch;
pub mod key;
pub mod local_build;
pub mod lock;
mod materialize;
mod offline;
mod options;
mod package;
pub mod recipe;
mod reference;
mod resolve;
mod resolved;
pub mod unpack;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use error::{ArtifactError, CacheCorruption};
pub use fetch::{DownloadLimits, Progress, RetryPolicy};
pub use local_build::LocalBuild;
pub use lock::{LockEntry, LockFile};
pub(crate) use options::LOCK_FILE;
pub use options::{LockMode, Network, ResolveOptions, DEFAULT_CLI};
pub use package::{DebianArchive, Keyring, PackageSpec, ResolvedPackage};
pub use recipe::{ArchiveFormat, Recipe, Source};
pub use reference::ArtifactRef;
pub use reference::PREFIX as ARTIFACT_PREFIX;
pub use resolved::{LockStatus, Origin, Resolved};
pub use unpack::UnpackLimits;

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
        self.resolve_with(name, options, None)
    }

    fn resolve_with(
        &self,
        name: &str,
        options: &ResolveOptions,
        imported: Option<&str>,
    ) -> Result<Resolved, ArtifactError> {
        let recipe = self.recipe(name)?;
        let request = self.request(recipe, options, imported);
        let resolved = resolve::resolve(&request)?;
        let first_use = options.lock_mode == LockMode::FirstUse
            && request.locked.is_none()
            && !matches!(resolved.status, LockStatus::LocalBuild { .. });
        Ok(if first_use {
            self.record_first_use(name, resolved, options)
        } else {
            resolved
        })
    }

    /// Pins a resolved artifact the lock had no entry for ([`LockMode::FirstUse`]), with a note;
    /// a lock that cannot be written is a warning naming the command that writes it.
    fn record_first_use(
        &self,
        name: &str,
        mut resolved: Resolved,
        options: &ResolveOptions,
    ) -> Resolved {
        let path = self.lock.path();
        match LockFile::record_first_use(path, name, &resolved.entry) {
            Ok(wrote) => {
                if wrote {
                    eprintln!(
                        "note: artifact `{name}` recorded in {} on first use; commit it (CI requires every `url`/`path` artifact to be pinned there)",
                        path.display()
                    );
                }
                resolved.status = LockStatus::Recorded {
                    lock_file: path.to_path_buf(),
                };
            }
            Err(error) => eprintln!(
                "warning: artifact `{name}` is not locked and recording it on first use failed ({error}); run `{} guests lock`",
                options.cli
            ),
        }
        resolved
    }

    /// The request for a file that stands in for `name`'s download: only `url` recipes have one.
    fn download_request<'a>(
        &'a self,
        name: &str,
        options: &'a ResolveOptions,
    ) -> Result<materialize::Request<'a>, ArtifactError> {
        let recipe = self.recipe(name)?;
        let request = self.request(recipe, options, None);
        match &recipe.source {
            Source::Url(_) => Ok(request),
            _ => Err(local_build::not_url(&request)),
        }
    }

    fn request<'a>(
        &'a self,
        recipe: &'a Recipe,
        options: &'a ResolveOptions,
        imported: Option<&'a str>,
    ) -> materialize::Request<'a> {
        materialize::Request {
            recipe,
            guests_dir: &self.guests_dir,
            locked: self.lock.get(&recipe.name),
            lock_file: self.lock.path(),
            options,
            imported,
        }
    }

    /// Records a file built from source elsewhere as the local build of a `url` artifact: a
    /// stand-in used only when the release download cannot be obtained, never pinned in
    /// `guests.lock` (see [`LocalBuild`]).
    ///
    /// The file is copied into the cache's object store, unpacked once like the release would
    /// be (so a wrong archive is reported now), and `<cache>/local-builds/<name>.toml` is
    /// written; an earlier record for the artifact is replaced.
    pub fn import_local_build(
        &self,
        name: &str,
        file: &Path,
        options: &ResolveOptions,
    ) -> Result<Resolved, ArtifactError> {
        let request = self.download_request(name, options)?;
        let sha256 = key::sha256_file(file)?;
        cache::Cache::new(&options.cache_dir).store_copy(name, file, &sha256)?;
        local_build::import(&request, file, &sha256)
    }

    /// Whether `name` can be produced from this machine and the options' cache alone, without
    /// the network and without producing anything now (materialized files, cached Debian
    /// packages to rebuild from, a cached pinned download or local build to unpack). An error
    /// means it cannot be told here (a missing input or tool); resolving reports the same.
    pub fn can_produce(&self, name: &str, options: &ResolveOptions) -> Result<bool, ArtifactError> {
        let recipe = self.recipe(name)?;
        offline::can_produce(recipe, &self.guests_dir, self.lock.get(name), options)
    }

    /// The local build recorded for `name` in the options' cache, if any.
    pub fn local_build(
        &self,
        name: &str,
        options: &ResolveOptions,
    ) -> Result<Option<LocalBuild>, ArtifactError> {
        LocalBuild::load(&cache::Cache::new(&options.cache_dir), name)
    }

    /// Puts a file obtained elsewhere (behind a firewall, from a mirror) into the cache as the
    /// download of a `url` artifact, then resolves the artifact from it without the network.
    ///
    /// The file must match the download sha256 the lock pins; without a lock entry it is
    /// accepted unless the mode is strict, and the returned entry is what `guests lock` records.
    pub fn import(
        &self,
        name: &str,
        file: &Path,
        options: &ResolveOptions,
    ) -> Result<Resolved, ArtifactError> {
        // Only a `url` artifact has a download to stand in for.
        self.download_request(name, options)?;
        let actual = key::sha256_file(file)?;
        match self.lock.get(name).and_then(|e| e.download.as_deref()) {
            Some(pinned) if pinned != actual => {
                return Err(ArtifactError::Mismatch {
                    artifact: name.to_string(),
                    what: format!("imported file {}", file.display()),
                    expected: pinned.to_string(),
                    actual,
                    inputs: String::new(),
                })
            }
            Some(_) => {}
            None if options.lock_mode.requires_pins() => {
                return Err(ArtifactError::NotLocked {
                    artifact: name.to_string(),
                    lock_file: self.lock.path().to_path_buf(),
                    reason: "no entry to check the imported file against".into(),
                    cli: options.cli.clone(),
                })
            }
            None => {}
        }
        cache::Cache::new(&options.cache_dir).store_copy(name, file, &actual)?;
        let import_options = ResolveOptions {
            network: Network::Offline,
            lock_mode: match options.lock_mode {
                LockMode::Update => LockMode::Update,
                _ if self.lock.get(name).is_some() => options.lock_mode,
                _ => LockMode::Record,
            },
            ..options.clone()
        };
        self.resolve_with(name, &import_options, Some(&actual))
    }

    /// Resolves the artifact a reference names and returns the path of the referenced file.
    pub fn resolve_ref(
        &self,
        reference: &ArtifactRef,
        options: &ResolveOptions,
    ) -> Result<PathBuf, ArtifactError> {
        self.resolve_ref_with_artifact(reference, options)
            .map(|(path, _)| path)
    }

    /// Like [`Catalog::resolve_ref`], also returning the whole artifact it resolved (its key,
    /// lock status and packages: what a report records as booted).
    pub fn resolve_ref_with_artifact(
        &self,
        reference: &ArtifactRef,
        options: &ResolveOptions,
    ) -> Result<(PathBuf, Resolved), ArtifactError> {
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
        let path = resolved
            .files
            .get(&reference.file)
            .cloned()
            .ok_or_else(|| unknown_file(resolved.files.keys().cloned().collect()))?;
        Ok((path, resolved))
    }
}
