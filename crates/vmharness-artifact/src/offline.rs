//! What can be produced from this machine and the cache alone, answered cheaply: no network,
//! no download, no build. The listing-time availability check asks this, so a trial is only
//! ignored offline when resolution really could not obtain its artifact.

use std::path::Path;

use super::cache::{read_sums, Cache};
use super::debian::{self, Refresh};
use super::error::ArtifactError;
use super::key::recipe_key;
use super::local_build::LocalBuild;
use super::lock::LockEntry;
use super::options::{LockMode, Network, ResolveOptions};
use super::recipe::Recipe;
use super::recipe::Source;

/// Whether resolving `recipe` without the network would succeed as far as the cache can tell:
/// its materialized files are there; or a command's Debian packages are cached (no
/// `network = true`) so it can be rebuilt; or a url artifact's pinned download (or, outside
/// strict mode, a recorded local build) is cached and can be unpacked again; or a path
/// artifact's file exists. An error means the question cannot be answered here (a declared
/// input or tool is missing); the resolution itself reports it.
pub(super) fn can_produce(
    recipe: &Recipe,
    guests_dir: &Path,
    locked: Option<&LockEntry>,
    options: &ResolveOptions,
) -> Result<bool, ArtifactError> {
    let cache = Cache::new(&options.cache_dir);
    let packages = match &recipe.source {
        Source::Path(path) => return Ok(guests_dir.join(&path.path).is_file()),
        // The package lists at hand, never refreshed here.
        Source::Command(c) if !c.packages.is_empty() => match debian::resolve_all(
            &recipe.name,
            &c.packages,
            &cache,
            &options.debian,
            Network::Offline,
            Refresh::Never,
        ) {
            Ok(resolved) => resolved.into_iter().map(|(package, _)| package).collect(),
            Err(_) => return Ok(false),
        },
        _ => Vec::new(),
    };
    let keyed = recipe_key(recipe, guests_dir, &packages)?;
    let dir = cache.artifact_dir(&recipe.name, &keyed.key);
    let materialized =
        read_sums(&dir).is_some() && recipe.outputs().iter().all(|o| dir.join(o).is_file());
    if materialized {
        return Ok(true);
    }
    let cached = |sha256: &str| cache.object_path(sha256).is_file();
    Ok(match &recipe.source {
        Source::Command(c) => !c.network && packages.iter().all(|p| cached(&p.sha256)),
        Source::Url(_) => {
            let pinned = locked
                .filter(|entry| entry.key == keyed.key)
                .and_then(|entry| entry.download.as_deref());
            pinned.is_some_and(cached) || has_local_build(&cache, &recipe.name, options)
        }
        Source::Path(_) => unreachable!("answered above"),
    })
}

/// Whether a local build that may stand in for the release is recorded and cached (strict
/// mode refuses local builds, so there it does not count).
fn has_local_build(cache: &Cache, name: &str, options: &ResolveOptions) -> bool {
    options.lock_mode != LockMode::Strict
        && LocalBuild::load(cache, name)
            .ok()
            .flatten()
            .is_some_and(|local| cache.object_path(&local.sha256).is_file())
}
