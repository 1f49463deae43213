//! Turning a recipe's inputs into verified files in the cache: the request being resolved,
//! checks of what is already there, and the atomic commit of a new directory. Used by the
//! resolution and by local builds alike.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::cache::{
    check_object, read_sums, Cache, CacheLock, Corrupt, Entry, ObjectCheck, Quarantined,
};
use super::error::ArtifactError;
use super::fetch::{download, Trust};
use super::key::{sha256_file, KeyedInputs};
use super::lock::LockEntry;
use super::options::{Network, ResolveOptions};
use super::package::ResolvedPackage;
use super::recipe::{Recipe, Source, UrlRecipe};
use super::resolved::{LockStatus, Origin, Resolved};
use super::unpack;
use super::unpack::resolves_beneath;

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
pub(super) fn fetch_into(
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
