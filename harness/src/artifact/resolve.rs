//! Resolution: cache hit, else produce under the artifact's lock, verify, and commit atomically.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::cache::{read_sums, Cache, CacheLock};
use super::fetch::download;
use super::key::{recipe_key, sha256_file};
use super::recipe::{PathRecipe, Recipe, Source, UrlRecipe};
use super::unpack::resolves_beneath;
use super::{build, unpack, ArtifactError, LockEntry, LockMode, Network, ResolveOptions};

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
}

/// Whether `guests.lock` pinned the resolved bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockStatus {
    /// Every output matched its pinned sha256.
    Locked,
    /// Not pinned (missing entry or a different recipe key); verified only against the cache's
    /// own checksums.
    Unlocked {
        /// Why the lock did not apply.
        reason: String,
    },
}

/// Where the resolved bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Already materialized in the cache.
    Cached,
    /// Downloaded (or unpacked from a cached download) just now.
    Fetched,
    /// Built by the recipe's command just now.
    Built,
    /// A file on this machine (`kind = "path"`).
    Local,
}

/// Outcome of checking a materialized directory.
enum CacheCheck {
    Valid(BTreeMap<String, PathBuf>),
    /// Incomplete or disagreeing with the lock: produce again.
    Invalid,
}

pub(super) fn resolve(
    recipe: &Recipe,
    guests_dir: &Path,
    locked: Option<&LockEntry>,
    lock_file: &Path,
    options: &ResolveOptions,
) -> Result<Resolved, ArtifactError> {
    let key = recipe_key(recipe, guests_dir)?;
    let (expected, status) = match (options.lock_mode, locked) {
        (LockMode::Update, _) => (None, unlocked("updating the lock")),
        (_, Some(entry)) if entry.key == key => (Some(entry), LockStatus::Locked),
        (mode, entry) => {
            let reason = match entry {
                Some(_) => "the recipe changed since it was locked",
                None => "no entry",
            };
            if mode == LockMode::Locked {
                // First find out whether it can be obtained at all: on a machine without
                // network "unavailable" is the true (and more useful) answer.
                let probe = ResolveOptions {
                    lock_mode: LockMode::Record,
                    ..options.clone()
                };
                resolve(recipe, guests_dir, locked, lock_file, &probe)?;
                return Err(ArtifactError::NotLocked {
                    artifact: recipe.name.clone(),
                    lock_file: lock_file.to_path_buf(),
                    reason: reason.to_string(),
                });
            }
            if mode == LockMode::Lenient {
                eprintln!(
                    "warning: artifact `{}` is not locked ({reason}); run `cargo xtask guests lock`",
                    recipe.name
                );
            }
            (None, unlocked(reason))
        }
    };
    if let Source::Path(path) = &recipe.source {
        return resolve_path(recipe, path, guests_dir, key, expected, status);
    }
    let cache = Cache::new(&options.cache_dir);
    let target = cache.artifact_dir(&recipe.name, &key);
    if let CacheCheck::Valid(files) = check_cached(recipe, &target, expected)? {
        return Ok(finish(
            recipe,
            target,
            files,
            key,
            expected,
            status,
            Origin::Cached,
        ));
    }
    let lock = cache.lock(&recipe.name)?;
    // Another process may have produced it while we waited for the lock.
    match check_cached(recipe, &target, expected)? {
        CacheCheck::Valid(files) => {
            return Ok(finish(
                recipe,
                target,
                files,
                key,
                expected,
                status,
                Origin::Cached,
            ))
        }
        CacheCheck::Invalid if target.exists() => {
            std::fs::remove_dir_all(&target)
                .map_err(|e| ArtifactError::io("remove invalid", &target, e))?;
        }
        CacheCheck::Invalid => {}
    }
    cache.remove_stale_staging(&recipe.name, &lock)?;
    let staging = cache.staging_dir(&recipe.name, &lock)?;
    let origin = match &recipe.source {
        Source::Command(command) => {
            if command.network && options.network == Network::Offline {
                return Err(offline(&recipe.name));
            }
            build::run_command(&recipe.name, command, guests_dir, staging.path())?;
            Origin::Built
        }
        Source::Url(url) => {
            fetch_into(
                recipe,
                url,
                expected,
                staging.path(),
                &cache,
                &lock,
                options,
            )?;
            Origin::Fetched
        }
        Source::Path(_) => unreachable!("path recipes return above"),
    };
    let sums = verify_outputs(recipe, staging.path(), expected)?;
    let target = cache.commit(staging, &recipe.name, &key, &sums)?;
    let files = output_paths(recipe, &target);
    drop(lock);
    Ok(finish(recipe, target, files, key, expected, status, origin))
}

fn unlocked(reason: &str) -> LockStatus {
    LockStatus::Unlocked {
        reason: reason.to_string(),
    }
}

fn offline(artifact: &str) -> ArtifactError {
    ArtifactError::Unavailable {
        artifact: artifact.to_string(),
        reason: "offline (VMHARNESS_OFFLINE=1) and not cached".to_string(),
    }
}

#[allow(clippy::too_many_arguments)]
fn finish(
    recipe: &Recipe,
    dir: PathBuf,
    files: BTreeMap<String, PathBuf>,
    key: String,
    expected: Option<&LockEntry>,
    status: LockStatus,
    origin: Origin,
) -> Resolved {
    let outputs = read_sums(&dir).unwrap_or_default();
    let download = match (&recipe.source, expected) {
        (_, Some(entry)) => entry.download.clone(),
        (Source::Url(_), None) => std::fs::read_to_string(dir.join(DOWNLOAD_NOTE))
            .ok()
            .map(|s| s.trim().to_string()),
        _ => None,
    };
    Resolved {
        name: recipe.name.clone(),
        dir,
        files,
        entry: LockEntry {
            key,
            download,
            outputs,
        },
        status,
        origin,
    }
}

/// Inside a materialized url artifact: the sha256 of the download it came from.
const DOWNLOAD_NOTE: &str = ".vmharness.download";

fn output_paths(recipe: &Recipe, dir: &Path) -> BTreeMap<String, PathBuf> {
    recipe
        .outputs()
        .into_iter()
        .map(|name| (name.clone(), dir.join(name)))
        .collect()
}

/// Re-hashes a materialized directory against its checksum file and the lock.
fn check_cached(
    recipe: &Recipe,
    dir: &Path,
    expected: Option<&LockEntry>,
) -> Result<CacheCheck, ArtifactError> {
    let Some(sums) = read_sums(dir) else {
        return Ok(CacheCheck::Invalid);
    };
    if let Some(entry) = expected {
        if entry.outputs != sums {
            return Ok(CacheCheck::Invalid);
        }
    }
    for name in recipe.outputs() {
        let path = dir.join(&name);
        let Some(recorded) = sums.get(&name) else {
            return Ok(CacheCheck::Invalid);
        };
        match sha256_file(&path) {
            Ok(actual) if &actual == recorded => {}
            _ => return Ok(CacheCheck::Invalid),
        }
    }
    Ok(CacheCheck::Valid(output_paths(recipe, dir)))
}

/// Hashes the produced outputs; with a lock entry, they must match it exactly.
fn verify_outputs(
    recipe: &Recipe,
    dir: &Path,
    expected: Option<&LockEntry>,
) -> Result<BTreeMap<String, String>, ArtifactError> {
    let mut sums = BTreeMap::new();
    for name in recipe.outputs() {
        let actual = sha256_file(&dir.join(&name))?;
        if let Some(entry) = expected {
            let pinned = entry
                .outputs
                .get(&name)
                .cloned()
                .unwrap_or_else(|| "(not pinned)".into());
            if pinned != actual {
                return Err(ArtifactError::Mismatch {
                    artifact: recipe.name.clone(),
                    what: name,
                    expected: pinned,
                    actual,
                });
            }
        }
        sums.insert(name, actual);
    }
    Ok(sums)
}

/// Gets the verified download (cached object or fresh), then copies or unpacks it into `out`.
fn fetch_into(
    recipe: &Recipe,
    url: &UrlRecipe,
    expected: Option<&LockEntry>,
    out: &Path,
    cache: &Cache,
    lock: &CacheLock,
    options: &ResolveOptions,
) -> Result<(), ArtifactError> {
    let object = obtain_download(recipe, url, expected, cache, options)?;
    let sha = object
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let note = out.join(DOWNLOAD_NOTE);
    std::fs::write(&note, format!("{sha}\n")).map_err(|e| ArtifactError::io("write", &note, e))?;
    let Some(format) = url.archive else {
        let target = out.join(url.output_name());
        return copy_file(&object, &target);
    };
    let unpacked = cache.staging_dir(&recipe.name, lock)?;
    unpack::unpack(&object, format, unpacked.path(), &options.unpack).map_err(|source| {
        ArtifactError::Unpack {
            artifact: recipe.name.clone(),
            archive: object.clone(),
            source,
        }
    })?;
    for (output, inner) in &url.files {
        let inner_path = Path::new(inner);
        let source = unpacked.path().join(inner_path);
        let missing = |detail: String| ArtifactError::MissingOutput {
            artifact: recipe.name.clone(),
            output: output.clone(),
            detail,
        };
        if !resolves_beneath(unpacked.path(), inner_path) || !source.is_file() {
            return Err(missing(format!(
                "no regular file `{inner}` in {url}",
                url = url.url
            )));
        }
        copy_file(&source, &out.join(output))?;
    }
    Ok(())
}

fn copy_file(from: &Path, to: &Path) -> Result<(), ArtifactError> {
    if let Some(parent) = to.parent() {
        super::cache::create_dir_all(parent)?;
    }
    std::fs::copy(from, to).map_err(|e| ArtifactError::io("copy to", to, e))?;
    Ok(())
}

/// The download as a verified object in the cache: reused if present, else fetched.
fn obtain_download(
    recipe: &Recipe,
    url: &UrlRecipe,
    expected: Option<&LockEntry>,
    cache: &Cache,
    options: &ResolveOptions,
) -> Result<PathBuf, ArtifactError> {
    let pinned = expected.and_then(|entry| entry.download.as_deref());
    if let Some(sha) = pinned {
        let object = cache.object_path(sha);
        if object.is_file() && sha256_file(&object)? == sha {
            return Ok(object);
        }
    }
    if options.network == Network::Offline {
        return Err(offline(&recipe.name));
    }
    let objects = cache.objects_dir();
    super::cache::create_dir_all(&objects)?;
    let fetched = download(
        &recipe.name,
        &url.url,
        &objects,
        &options.retry,
        options.progress,
    )?;
    if let Some(sha) = pinned {
        if sha != fetched.sha256 {
            return Err(ArtifactError::Mismatch {
                artifact: recipe.name.clone(),
                what: format!("download {}", url.url),
                expected: sha.to_string(),
                actual: fetched.sha256,
            });
        }
    }
    let object = cache.object_path(&fetched.sha256);
    fetched
        .file
        .persist(&object)
        .map_err(|e| ArtifactError::io("store download as", &object, e.error))?;
    Ok(object)
}

fn resolve_path(
    recipe: &Recipe,
    path: &PathRecipe,
    guests_dir: &Path,
    key: String,
    expected: Option<&LockEntry>,
    status: LockStatus,
) -> Result<Resolved, ArtifactError> {
    let source = guests_dir.join(&path.path);
    if !source.is_file() {
        return Err(ArtifactError::Unavailable {
            artifact: recipe.name.clone(),
            reason: format!("{} does not exist on this machine", source.display()),
        });
    }
    let name = path.output_name();
    let actual = sha256_file(&source)?;
    if let Some(pinned) = expected.and_then(|entry| entry.outputs.get(&name)) {
        if pinned != &actual {
            return Err(ArtifactError::Mismatch {
                artifact: recipe.name.clone(),
                what: format!("{name} ({})", source.display()),
                expected: pinned.clone(),
                actual,
            });
        }
    }
    Ok(Resolved {
        name: recipe.name.clone(),
        dir: source.parent().map(Path::to_path_buf).unwrap_or_default(),
        files: BTreeMap::from([(name.clone(), source)]),
        entry: LockEntry {
            key,
            download: None,
            outputs: BTreeMap::from([(name, actual)]),
        },
        status,
        origin: Origin::Local,
    })
}
