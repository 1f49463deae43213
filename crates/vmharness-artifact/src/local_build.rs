//! Local builds: guest images built from source by someone else that stand in for a `url`
//! artifact's release download when the release cannot be obtained here (no network, the host
//! unreachable).
//!
//! ```text
//! <cache>/local-builds/<name>.toml   sha256, the path imported from, when
//! <cache>/objects/<sha256>           the imported file, like a download
//! <cache>/<name>/<local key>/        unpacked like the release, under its own key
//! ```
//!
//! A local build is never the release: its bytes are never pinned in `guests.lock`, it is
//! materialized under a key of its own (the release key mixed with "local build" and its
//! sha256) so a later online run never mistakes it for the release, and every resolution that
//! uses it says so ([`super::LockStatus::LocalBuild`]). It is used only when the release is
//! unavailable; `VMHARNESS_LOCKED=strict` refuses it.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::cache::Cache;
use super::cache::{check_object, ObjectCheck};
use super::error::ArtifactError;
use super::key::{local_build_key, recipe_key, KeyedInputs};
use super::materialize::{
    check_cached, finish, materialize, output_paths, verify_outputs, CacheCheck, Request,
};
use super::options::LockMode;
use super::recipe::{Source, UrlRecipe};
use super::resolved::{LockStatus, Origin, Resolved};

/// What `guests import --local-build` recorded for one artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalBuild {
    /// sha256 of the imported file (its name in the object store).
    pub sha256: String,
    /// The path it was imported from (absolute where it could be made so).
    pub from: PathBuf,
    /// When it was imported (RFC 3339, UTC).
    pub imported: String,
}

impl LocalBuild {
    /// The record of `name` in this cache, if one was imported.
    pub fn load(cache: &Cache, name: &str) -> Result<Option<LocalBuild>, ArtifactError> {
        let path = cache.local_build_record(name);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ArtifactError::io("read", &path, e)),
        };
        let bad = |message: String| ArtifactError::LocalBuildRecord {
            file: path.clone(),
            message,
        };
        let record: LocalBuild = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        // The sha256 names a file in the object store: anything else could point outside it.
        let is_sha256 = record.sha256.len() == 64
            && record
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !is_sha256 {
            return Err(bad(format!(
                "`sha256 = {:?}` is not a lower-case hex sha256",
                record.sha256
            )));
        }
        Ok(Some(record))
    }

    /// Writes the record atomically (temp file + rename), replacing an earlier one.
    fn save(&self, cache: &Cache, name: &str) -> Result<PathBuf, ArtifactError> {
        let path = cache.local_build_record(name);
        let dir = path.parent().unwrap_or(cache.root());
        super::cache::create_dir_all(dir)?;
        let body = toml::to_string(self).map_err(|e| {
            ArtifactError::io("serialize the record for", &path, std::io::Error::other(e))
        })?;
        let text = format!(
            "# A local build standing in for the release download of `{name}` when the release\n\
             # cannot be obtained. Written by `guests import --local-build`; never\n\
             # pinned in guests.lock.\n{body}"
        );
        let mut temp = tempfile::NamedTempFile::new_in(dir)
            .map_err(|e| ArtifactError::io("create temp file in", dir, e))?;
        temp.write_all(text.as_bytes())
            .map_err(|e| ArtifactError::io("write", temp.path().to_path_buf(), e))?;
        temp.persist(&path)
            .map_err(|e| ArtifactError::io("replace", &path, e.error))?;
        Ok(path)
    }

    /// The readable input recorded for the materialized artifact.
    fn input(&self) -> String {
        format!("sha256:{} from {}", self.sha256, self.from.display())
    }
}

/// Records `file` (already stored in the object store under `sha256`) as the local build of
/// the artifact `request` names and materializes it once, so a bad archive is reported now.
pub(super) fn import(
    request: &Request<'_>,
    file: &Path,
    sha256: &str,
) -> Result<Resolved, ArtifactError> {
    let Source::Url(url) = &request.recipe.source else {
        return Err(not_url(request));
    };
    let record = LocalBuild {
        sha256: sha256.to_string(),
        from: std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf()),
        imported: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
    };
    let resolved = materialize_local(request, url, &record)?;
    record.save(&Cache::new(&request.options.cache_dir), request.name())?;
    Ok(resolved)
}

pub(super) fn not_url(request: &Request<'_>) -> ArtifactError {
    ArtifactError::Recipe {
        file: request.recipe.file.clone(),
        message: format!(
            "artifact `{}` is not a `url` artifact; only downloads can be imported",
            request.name()
        ),
    }
}

/// After the release of a `url` artifact turned out unavailable: the recorded local build in
/// its place, or `release_error` when there is none or the mode does not use one.
pub(super) fn stand_in(
    request: &Request<'_>,
    release_error: ArtifactError,
) -> Result<Resolved, ArtifactError> {
    let Source::Url(url) = &request.recipe.source else {
        return Err(release_error);
    };
    // Recording the lock and importing a release never take a local build.
    let mode = request.options.lock_mode;
    if request.imported.is_some() || matches!(mode, LockMode::Record | LockMode::Update) {
        return Err(release_error);
    }
    let cache = Cache::new(&request.options.cache_dir);
    let Some(record) = LocalBuild::load(&cache, request.name())? else {
        return Err(release_error);
    };
    if mode == LockMode::Strict {
        return Err(ArtifactError::LocalBuildRefused {
            artifact: request.name().to_string(),
            sha256: record.sha256,
            from: record.from,
            release: Box::new(release_error),
        });
    }
    materialize_local(request, url, &record)
}

/// The local build's files, unpacked like the release under the local-build key.
fn materialize_local(
    request: &Request<'_>,
    url: &UrlRecipe,
    record: &LocalBuild,
) -> Result<Resolved, ArtifactError> {
    let recipe = request.recipe;
    let cache = Cache::new(&request.options.cache_dir);
    let release = recipe_key(recipe, request.guests_dir, &[])?;
    let mut inputs: BTreeMap<String, String> = release.inputs.clone();
    inputs.insert("local build".into(), record.input());
    let keyed = KeyedInputs {
        key: local_build_key(&release.key, &record.sha256),
        inputs,
    };
    let status = LockStatus::LocalBuild {
        sha256: record.sha256.clone(),
        from: record.from.clone(),
    };
    let done = |dir: PathBuf, files, origin| {
        finish(
            recipe,
            dir,
            files,
            &keyed,
            None,
            status.clone(),
            origin,
            &[],
        )
    };
    let target = cache.artifact_dir(&recipe.name, &keyed.key);
    if let CacheCheck::Valid(files) = check_cached(recipe, &target, None, None)? {
        return Ok(done(target, files, Origin::Cached));
    }
    let lock = cache.lock(&recipe.name)?;
    match check_cached(recipe, &target, None, Some(&cache))? {
        CacheCheck::Valid(files) => return Ok(done(target, files, Origin::Cached)),
        // Moved aside; it is unpacked again from the object below.
        CacheCheck::Corrupt(_) => {}
        CacheCheck::Absent if target.exists() => {
            std::fs::remove_dir_all(&target)
                .map_err(|e| ArtifactError::io("remove stale", &target, e))?;
        }
        CacheCheck::Absent => {}
    }
    let object = verified_object(request, &cache, record)?;
    cache.remove_stale_staging(&recipe.name, &lock)?;
    let staging = cache.staging_dir(&recipe.name, &lock)?;
    materialize(
        request,
        url,
        &object,
        &record.sha256,
        staging.path(),
        &cache,
        &lock,
    )?;
    let sums = verify_outputs(recipe, staging.path(), None, &keyed)?;
    let target = cache.commit(staging, &recipe.name, &keyed.key, &sums)?;
    let files = output_paths(recipe, &target);
    drop(lock);
    Ok(done(target, files, Origin::Fetched))
}

/// The imported file in the object store, re-hashed; a changed one is moved aside and reported
/// (also on later attempts, until it is imported again).
fn verified_object(
    request: &Request<'_>,
    cache: &Cache,
    record: &LocalBuild,
) -> Result<PathBuf, ArtifactError> {
    let import_again = format!(
        "it is the local build imported from {}; import it again",
        record.from.display()
    );
    match check_object(cache, request.name(), &record.sha256, "not using it")? {
        ObjectCheck::Valid(object) => Ok(object),
        ObjectCheck::Corrupt(quarantined) => Err(quarantined.into_error(import_again)),
        ObjectCheck::Absent => Err(ArtifactError::Unavailable {
            artifact: request.name().to_string(),
            reason: format!(
                "the release cannot be obtained and the local build imported from {} is no longer in the cache ({}); import it again",
                record.from.display(),
                cache.object_path(&record.sha256).display()
            ),
        }),
    }
}
