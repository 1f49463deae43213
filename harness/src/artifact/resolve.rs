//! Resolution: cache hit, else produce under the artifact's lock, verify, and commit atomically.
//!
//! The lock pins bytes per recipe key. Same key, other bytes: an error ([`ArtifactError::Mismatch`]).
//! A key the lock has never seen for a command recipe (its Debian packages moved, a tool was
//! upgraded): built, used and reported ([`LockStatus::NewKey`]), an error only in
//! [`LockMode::Strict`]. `url` and `path` artifacts stay strictly pinned in CI.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::cache::{
    check_object, read_sums, Cache, CacheLock, Corrupt, Entry, ObjectCheck, Quarantined,
};
use super::debian::{self, AptRoot, Refresh};
use super::error::ArtifactError;
use super::fetch::{download, Trust};
use super::key::{input_changes, recipe_key, sha256_file, KeyedInputs};
use super::lock::LockEntry;
use super::options::{LockMode, Network, ResolveOptions};
use super::package::ResolvedPackage;
use super::recipe::{PathRecipe, Recipe, Source, UrlRecipe};
use super::unpack::resolves_beneath;
use super::{build, unpack};

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

/// Outcome of checking a materialized directory.
pub(super) enum CacheCheck {
    Valid(BTreeMap<String, PathBuf>),
    /// Nothing usable there (missing, incomplete, or recorded for other bytes than the lock's).
    Absent,
    /// A file's bytes no longer matched the checksum recorded when it was cached; moved aside.
    Corrupt(Quarantined),
}

/// One resolution's fixed inputs.
pub(super) struct Request<'a> {
    pub recipe: &'a Recipe,
    pub guests_dir: &'a Path,
    pub locked: Option<&'a LockEntry>,
    pub lock_file: &'a Path,
    pub options: &'a ResolveOptions,
    /// The sha256 of a download placed in the object store by `guests import`.
    pub imported: Option<&'a str>,
}

impl Request<'_> {
    pub(super) fn name(&self) -> &str {
        &self.recipe.name
    }
}

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
        });
    }
    if mode != LockMode::Record {
        warn_once(request.name(), &keyed.key, || {
            if command {
                format!(
                    "note: artifact `{}`: a recipe key guests.lock has not recorded ({reason}); it is built and used (not a failure), `cargo xtask guests lock` records it",
                    request.name()
                )
            } else {
                format!(
                    "warning: artifact `{}` is not locked ({reason}); run `cargo xtask guests lock`",
                    request.name()
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

pub(super) fn offline(artifact: &str) -> ArtifactError {
    ArtifactError::Unavailable {
        artifact: artifact.to_string(),
        reason: "offline (VMHARNESS_OFFLINE=1) and not cached".to_string(),
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn finish(
    recipe: &Recipe,
    dir: PathBuf,
    files: BTreeMap<String, PathBuf>,
    keyed: &KeyedInputs,
    expected: Option<&LockEntry>,
    status: LockStatus,
    origin: Origin,
    packages: &[ResolvedPackage],
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
            key: keyed.key.clone(),
            download,
            inputs: keyed.inputs.clone(),
            outputs,
        },
        status,
        origin,
        packages: packages.to_vec(),
    }
}

/// Inside a materialized url artifact: the sha256 of the download it came from.
const DOWNLOAD_NOTE: &str = ".vmharness.download";

pub(super) fn output_paths(recipe: &Recipe, dir: &Path) -> BTreeMap<String, PathBuf> {
    recipe
        .outputs()
        .into_iter()
        .map(|name| (name.clone(), dir.join(name)))
        .collect()
}

/// Re-hashes a materialized directory against its checksum file and the lock. With `cache`
/// (the caller holds the artifact's lock), a corrupt directory is moved aside and reported.
pub(super) fn check_cached(
    recipe: &Recipe,
    dir: &Path,
    expected: Option<&LockEntry>,
    cache: Option<&Cache>,
) -> Result<CacheCheck, ArtifactError> {
    let Some(sums) = read_sums(dir) else {
        return Ok(CacheCheck::Absent);
    };
    if expected.is_some_and(|entry| entry.outputs != sums) {
        return Ok(CacheCheck::Absent);
    }
    for name in recipe.outputs() {
        let path = dir.join(&name);
        let Some(recorded) = sums.get(&name) else {
            return Ok(CacheCheck::Absent);
        };
        let actual = sha256_file(&path).unwrap_or_else(|_| "(missing)".to_string());
        if &actual == recorded {
            continue;
        }
        let Some(cache) = cache else {
            return Ok(CacheCheck::Absent);
        };
        let key = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let found = Corrupt {
            artifact: recipe.name.clone(),
            file: path.clone(),
            expected: recorded.clone(),
            actual: actual.clone(),
        };
        let entry = Entry::Dir {
            name: &recipe.name,
            key: &key,
        };
        let quarantined = cache.quarantine(dir, entry, found)?;
        eprintln!(
            "warning: artifact `{}`: cached {} does not match its recorded sha256 (expected {recorded}, got {actual}); moved to {} and producing it again",
            recipe.name,
            path.display(),
            quarantined.moved_to.display()
        );
        return Ok(CacheCheck::Corrupt(quarantined));
    }
    Ok(CacheCheck::Valid(output_paths(recipe, dir)))
}

/// Hashes the produced outputs; with a lock entry, they must match it exactly.
pub(super) fn verify_outputs(
    recipe: &Recipe,
    dir: &Path,
    expected: Option<&LockEntry>,
    keyed: &KeyedInputs,
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
                    inputs: describe_inputs(keyed),
                });
            }
        }
        sums.insert(name, actual);
    }
    Ok(sums)
}

/// The key and its inputs, one per line, for error messages.
fn describe_inputs(keyed: &KeyedInputs) -> String {
    let mut text = format!("  key {}", keyed.key);
    for (name, value) in &keyed.inputs {
        text.push_str(&format!("\n  {name} = {value}"));
    }
    text
}

/// Gets the verified download (cached object or fresh), then copies or unpacks it into `out`.
fn fetch_into(
    request: &Request<'_>,
    url: &UrlRecipe,
    expected: Option<&LockEntry>,
    out: &Path,
    cache: &Cache,
    lock: &CacheLock,
) -> Result<(), ArtifactError> {
    let object = obtain_download(request, url, expected, cache)?;
    let sha = object
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    materialize(request, url, &object, &sha, out, cache, lock)
}

/// Copies or unpacks a verified download (or local build) `object` into `out` as the recipe's
/// outputs, noting its sha256.
pub(super) fn materialize(
    request: &Request<'_>,
    url: &UrlRecipe,
    object: &Path,
    sha: &str,
    out: &Path,
    cache: &Cache,
    lock: &CacheLock,
) -> Result<(), ArtifactError> {
    let recipe = request.recipe;
    let note = out.join(DOWNLOAD_NOTE);
    std::fs::write(&note, format!("{sha}\n")).map_err(|e| ArtifactError::io("write", &note, e))?;
    let Some(format) = url.archive else {
        let target = out.join(url.output_name());
        return copy_file(object, &target);
    };
    let unpacked = cache.staging_dir(&recipe.name, lock)?;
    unpack::unpack(object, format, unpacked.path(), &request.options.unpack).map_err(|source| {
        ArtifactError::Unpack {
            artifact: recipe.name.clone(),
            archive: object.to_path_buf(),
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

/// The URL a download is fetched from: the recipe's, or the same under the mirror prefix.
pub(super) fn effective_url(url: &str, mirror: Option<&str>) -> String {
    match (mirror, url.split_once("://")) {
        (Some(mirror), Some((_, rest))) => format!("{mirror}/{rest}"),
        _ => url.to_string(),
    }
}

/// The download as a verified object in the cache: reused if present, else fetched.
fn obtain_download(
    request: &Request<'_>,
    url: &UrlRecipe,
    expected: Option<&LockEntry>,
    cache: &Cache,
) -> Result<PathBuf, ArtifactError> {
    let recipe = request.recipe;
    let options = request.options;
    let pinned = expected.and_then(|entry| entry.download.as_deref());
    let mut corrupt = None;
    if let Some(sha) = pinned.or(request.imported) {
        match check_object(cache, &recipe.name, sha, "downloading it again")? {
            ObjectCheck::Valid(object) => return Ok(object),
            ObjectCheck::Corrupt(quarantined) => corrupt = Some(quarantined),
            ObjectCheck::Absent => {}
        }
    }
    // A corruption that cannot be repaired here is reported as such, not as "not cached".
    let unrepaired = |error: ArtifactError| match corrupt.clone() {
        Some(quarantined) if error.is_unavailable() => quarantined.into_error(error.to_string()),
        _ => error,
    };
    if options.network == Network::Offline {
        return Err(unrepaired(offline(&recipe.name)));
    }
    let objects = cache.objects_dir();
    super::cache::create_dir_all(&objects)?;
    cache.sweep_partial_objects(options.download.deadline.saturating_mul(2));
    let source = effective_url(&url.url, options.mirror.as_deref());
    let fetched = download(
        &recipe.name,
        &source,
        &objects,
        &options.retry,
        options.progress,
        &options.download,
        Trust {
            pinned: pinned.is_some(),
            redirect_hosts: &url.redirect_hosts,
        },
    )
    .map_err(unrepaired)?;
    if let Some(sha) = pinned {
        if sha != fetched.sha256 {
            return Err(ArtifactError::Mismatch {
                artifact: recipe.name.clone(),
                what: format!("download {source}"),
                expected: sha.to_string(),
                actual: fetched.sha256,
                inputs: String::new(),
            });
        }
    }
    let path = fetched
        .file
        .into_temp_path()
        .keep()
        .map_err(|e| ArtifactError::io("keep download in", &objects, e.error))?;
    cache.store_object(&path, &fetched.sha256)
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
