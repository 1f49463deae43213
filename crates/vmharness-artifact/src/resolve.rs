//! Resolution: cache hit, else produce under the artifact's lock, verify, and commit atomically.
//!
//! The lock pins bytes per recipe key. Same key, other bytes: an error ([`ArtifactError::Mismatch`]).
//! A key the lock has never seen for a command recipe (its Debian packages moved, a tool was
//! upgraded): built, used and reported ([`LockStatus::NewKey`]), an error only in
//! [`LockMode::Strict`]. `url` and `path` artifacts stay strictly pinned in CI.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::build;
use super::cache::{Cache, CacheLock, Entry};
use super::debian::{self, AptRoot, Refresh};
use super::error::ArtifactError;
use super::key::{input_changes, recipe_key, sha256_file, KeyedInputs};
use super::lock::LockEntry;
use super::materialize::{
    check_cached, fetch_into, finish, offline, output_paths, verify_outputs, CacheCheck, Request,
};
use super::options::{LockMode, Network, ResolveOptions};
use super::package::ResolvedPackage;
use super::recipe::{PathRecipe, Recipe, Source};
use super::resolved::{LockStatus, Origin, Resolved};

/// Resolves the artifact; a `url` artifact whose release is unavailable may get the local build
/// recorded for it instead.
pub(super) fn resolve(request: &Request<'_>) -> Result<Resolved, ArtifactError> {
    match resolve_release(request) {
        Err(error) if error.is_unavailable() => super::local_build::stand_in(request, error),
        other => other,
    }
}

/// Resolves the artifact as its recipe and the lock define it (never a local build).
fn resolve_release(request: &Request<'_>) -> Result<Resolved, ArtifactError> {
    match resolve_with(request, Refresh::IfStale) {
        // A package the lists name may have vanished from the archive: refresh and retry once.
        Err(error)
            if error.is_unavailable()
                && has_packages(request.recipe)
                && request.options.network == Network::Online =>
        {
            resolve_with(request, Refresh::Force)
        }
        other => other,
    }
}

fn has_packages(recipe: &Recipe) -> bool {
    matches!(&recipe.source, Source::Command(c) if !c.packages.is_empty())
}

fn resolve_with(request: &Request<'_>, refresh: Refresh) -> Result<Resolved, ArtifactError> {
    let recipe = request.recipe;
    let options = request.options;
    let cache = Cache::new(&options.cache_dir);
    let packages = resolve_packages(request, &cache, refresh)?;
    let resolved_packages: Vec<ResolvedPackage> = packages.iter().map(|(p, _)| p.clone()).collect();
    let keyed = recipe_key(recipe, request.guests_dir, &resolved_packages)?;
    let (expected, status) = lock_policy(request, &keyed)?;
    if let Source::Path(path) = &recipe.source {
        return resolve_path(request, path, keyed, expected, status);
    }
    let done = |dir: PathBuf, files, origin| {
        finish(
            recipe,
            dir,
            files,
            &keyed,
            expected,
            status.clone(),
            origin,
            &resolved_packages,
        )
    };
    let target = cache.artifact_dir(&recipe.name, &keyed.key);
    if let CacheCheck::Valid(files) = check_cached(recipe, &target, expected, None)? {
        return Ok(done(target, files, Origin::Cached));
    }
    let lock = cache.lock(&recipe.name)?;
    // Another process may have produced it while we waited for the lock.
    let corrupt = match check_cached(recipe, &target, expected, Some(&cache))? {
        CacheCheck::Valid(files) => return Ok(done(target, files, Origin::Cached)),
        CacheCheck::Corrupt(corruption) => Some(corruption),
        CacheCheck::Absent if target.exists() => {
            std::fs::remove_dir_all(&target)
                .map_err(|e| ArtifactError::io("remove stale", &target, e))?;
            None
        }
        CacheCheck::Absent => None,
    };
    cache.remove_stale_staging(&recipe.name, &lock)?;
    let staging = cache.staging_dir(&recipe.name, &lock)?;
    let produced = produce(request, &cache, &lock, &packages, expected, staging.path());
    let origin = match produced {
        Ok(origin) => origin,
        // Quarantined now or by an earlier attempt: the corruption, not "not cached", is the
        // truth while it cannot be produced again.
        Err(error) if error.is_unavailable() => {
            let entry = Entry::Dir {
                name: &recipe.name,
                key: &keyed.key,
            };
            return Err(match corrupt.or_else(|| cache.quarantined(entry)) {
                Some(quarantined) => quarantined.into_error(error.to_string()),
                None => error,
            });
        }
        Err(error) => return Err(error),
    };
    let sums = verify_outputs(recipe, staging.path(), expected, &keyed)?;
    let target = cache.commit(staging, &recipe.name, &keyed.key, &sums)?;
    let files = output_paths(recipe, &target);
    drop(lock);
    Ok(done(target, files, origin))
}

/// The Debian packages a command recipe declares, resolved from the private apt lists.
fn resolve_packages(
    request: &Request<'_>,
    cache: &Cache,
    refresh: Refresh,
) -> Result<Vec<(ResolvedPackage, AptRoot)>, ArtifactError> {
    match &request.recipe.source {
        Source::Command(c) if !c.packages.is_empty() => debian::resolve_all(
            request.name(),
            &c.packages,
            cache,
            &request.options.debian,
            request.options.network,
            refresh,
        ),
        _ => Ok(Vec::new()),
    }
}

/// Decides what the lock expects for this key, or refuses to go on.
fn lock_policy<'a>(
    request: &Request<'a>,
    keyed: &KeyedInputs,
) -> Result<(Option<&'a LockEntry>, LockStatus), ArtifactError> {
    let mode = request.options.lock_mode;
    let entry = request.locked;
    match (mode, entry) {
        (LockMode::Update, _) => return Ok((None, unlocked("updating the lock"))),
        (_, Some(entry)) if entry.key == keyed.key => return Ok((Some(entry), LockStatus::Locked)),
        _ => {}
    }
    let changes = entry
        .map(|e| input_changes(&e.inputs, &keyed.inputs))
        .unwrap_or_default();
    let reason = match entry {
        None => "no entry".to_string(),
        Some(_) if changes.is_empty() => "the recipe changed since it was locked".to_string(),
        Some(_) => format!("inputs moved: {}", changes.join("; ")),
    };
    let command = matches!(request.recipe.source, Source::Command(_));
    let refuse = mode == LockMode::Strict || (mode.requires_pins() && !command);
    if refuse {
        // First find out whether it can be obtained at all: on a machine without network
        // "unavailable" is the true (and more useful) answer.
        let probe_options = ResolveOptions {
            lock_mode: LockMode::Record,
            ..request.options.clone()
        };
        resolve_release(&Request {
            options: &probe_options,
            ..*request
        })?;
        return Err(ArtifactError::NotLocked {
            artifact: request.name().to_string(),
            lock_file: request.lock_file.to_path_buf(),
            reason,
            cli: request.options.cli.clone(),
        });
    }
    // First use records a missing entry after resolving (and says so then).
    let recording = mode == LockMode::FirstUse && entry.is_none();
    if mode != LockMode::Record && !recording {
        warn_once(request.name(), &keyed.key, || {
            if command {
                format!(
                    "note: artifact `{}`: a recipe key guests.lock has not recorded ({reason}); it is built and used (not a failure), `{} guests lock` records it",
                    request.name(),
                    request.options.cli
                )
            } else {
                format!(
                    "warning: artifact `{}` is not locked ({reason}); run `{} guests lock`",
                    request.name(),
                    request.options.cli
                )
            }
        });
    }
    let status = if command {
        LockStatus::NewKey {
            previous_key: entry.map(|e| e.key.clone()),
            changes,
        }
    } else {
        unlocked(&reason)
    };
    Ok((None, status))
}

/// Prints a message once per process for this artifact and key.
fn warn_once(artifact: &str, key: &str, message: impl FnOnce() -> String) {
    static SEEN: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let first = SEEN
        .lock()
        .map(|mut seen| seen.insert(format!("{artifact}\0{key}")))
        .unwrap_or(true);
    if first {
        eprintln!("{}", message());
    }
}

/// Builds or fetches the artifact into `out`.
fn produce(
    request: &Request<'_>,
    cache: &Cache,
    lock: &CacheLock,
    packages: &[(ResolvedPackage, AptRoot)],
    expected: Option<&LockEntry>,
    out: &Path,
) -> Result<Origin, ArtifactError> {
    let recipe = request.recipe;
    let options = request.options;
    match &recipe.source {
        Source::Command(command) => {
            if command.network && options.network == Network::Offline {
                return Err(offline(&recipe.name));
            }
            let mut debs = BTreeMap::new();
            for (package, root) in packages {
                let deb = root.download(&recipe.name, package, cache, options.network)?;
                debs.insert(package.role.clone(), deb);
            }
            build::run_command(&recipe.name, command, request.guests_dir, out, &debs)?;
            Ok(Origin::Built)
        }
        Source::Url(url) => {
            fetch_into(request, url, expected, out, cache, lock)?;
            Ok(Origin::Fetched)
        }
        Source::Path(_) => unreachable!("path recipes are resolved without the cache"),
    }
}

fn unlocked(reason: &str) -> LockStatus {
    LockStatus::Unlocked {
        reason: reason.to_string(),
    }
}

fn resolve_path(
    request: &Request<'_>,
    path: &PathRecipe,
    keyed: KeyedInputs,
    expected: Option<&LockEntry>,
    status: LockStatus,
) -> Result<Resolved, ArtifactError> {
    let recipe = request.recipe;
    let source = request.guests_dir.join(&path.path);
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
                inputs: String::new(),
            });
        }
    }
    Ok(Resolved {
        name: recipe.name.clone(),
        dir: source.parent().map(Path::to_path_buf).unwrap_or_default(),
        files: BTreeMap::from([(name.clone(), source)]),
        entry: LockEntry {
            key: keyed.key,
            download: None,
            inputs: keyed.inputs,
            outputs: BTreeMap::from([(name, actual)]),
        },
        status,
        origin: Origin::Local,
        packages: Vec::new(),
    })
}
