//! Listing-time check: which inputs of a config this machine lacks, found without running it.
//!
//! Cheap by design (no hashing, no network): an `env:` reference whose variable is unset, or an
//! `artifact:` whose recipe needs the network (`kind = "url"`, a command with `network = true`
//! or with Debian `packages`, resolved from the package lists at hand, never refreshed here) and
//! has no materialized cache entry. The run path still verifies everything.

use std::fmt;

use crate::artifact::cache::{read_sums, Cache};
use crate::artifact::debian::{self, Refresh};
use crate::artifact::key::recipe_key;
use crate::artifact::{ArtifactRef, Catalog, Network, ResolveOptions, Source};
use crate::config::LoadedConfig;

/// Environment variables nextest sets in every process it starts (listing and tests).
const NEXTEST_ENV: [&str; 2] = ["NEXTEST", "NEXTEST_RUN_ID"];

/// One input a config needs that this machine lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    /// An `env:VAR` reference whose variable is unset or empty.
    EnvUnset {
        /// Where the config uses it (`-kernel`, `[disk] /a.bin`).
        what: String,
        /// The variable.
        var: String,
    },
    /// An artifact that must come from the network and is not in the cache.
    NotCached {
        /// Where the config uses it.
        what: String,
        /// The artifact name.
        artifact: String,
    },
}

impl Unavailable {
    /// All reasons in one line, `; `-separated.
    pub fn join(reasons: &[Unavailable]) -> String {
        reasons
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::EnvUnset { what, var } => {
                write!(f, "{what}: environment variable {var} is not set")
            }
            Unavailable::NotCached { what, artifact } => write!(
                f,
                "{what}: artifact `{artifact}` needs the network and is not cached \
                 (`cargo xtask guests fetch {artifact}`)"
            ),
        }
    }
}

/// What the listing-time check knows about this process: the catalog, cache and mode.
pub struct Check {
    catalog: Option<Catalog>,
    options: ResolveOptions,
    required: bool,
    nextest: bool,
}

impl Check {
    /// A check with options, the artifacts-required switch and nextest detection from the
    /// environment. Without a catalog, artifacts are not checked (the run reports the error).
    pub fn from_env(catalog: Option<Catalog>) -> Self {
        Check {
            catalog,
            options: ResolveOptions::from_env(),
            required: crate::run::artifacts_required(),
            nextest: NEXTEST_ENV
                .iter()
                .any(|var| std::env::var_os(var).is_some()),
        }
    }

    /// A check with explicit settings (for tests and other frontends).
    pub fn new(
        catalog: Option<Catalog>,
        options: ResolveOptions,
        required: bool,
        nextest: bool,
    ) -> Self {
        Check {
            catalog,
            options,
            required,
            nextest,
        }
    }

    /// Whether an ignored config carries the ignored flag in the listing (nextest), rather
    /// than being ignored when it runs (cargo test, which shows the reason inline).
    pub fn ignore_at_listing(&self) -> bool {
        self.nextest
    }

    /// The inputs of `loaded` this machine lacks; empty when artifacts are required (the run
    /// then fails as an infrastructure problem instead of hiding behind an ignore).
    pub fn missing_inputs(&self, loaded: &LoadedConfig) -> Vec<Unavailable> {
        if self.required {
            return Vec::new();
        }
        references(loaded)
            .into_iter()
            .filter_map(|(what, reference)| {
                if let Some(var) = reference.strip_prefix("env:") {
                    let set = std::env::var_os(var).is_some_and(|v| !v.is_empty());
                    return (!set).then(|| Unavailable::EnvUnset {
                        what,
                        var: var.to_string(),
                    });
                }
                let parsed: ArtifactRef = reference.parse().ok()?;
                self.needs_download(&parsed.name)
                    .then_some(Unavailable::NotCached {
                        what,
                        artifact: parsed.name,
                    })
            })
            .collect()
    }

    /// Whether `missing` makes the config ignored. An unset variable always does; an uncached
    /// download only where the run could not fetch it on demand: offline, or under nextest
    /// (where a runtime skip would look like a pass).
    pub fn ignores(&self, missing: &[Unavailable]) -> bool {
        let count_downloads = self.nextest || self.options.network == Network::Offline;
        missing.iter().any(|reason| match reason {
            Unavailable::EnvUnset { .. } => true,
            Unavailable::NotCached { .. } => count_downloads,
        })
    }

    /// True if the artifact's recipe needs the network and its cache entry is missing.
    fn needs_download(&self, name: &str) -> bool {
        let Some(catalog) = &self.catalog else {
            return false;
        };
        let Ok(recipe) = catalog.recipe(name) else {
            return false;
        };
        let networked = match &recipe.source {
            Source::Url(_) => true,
            // Declared Debian packages come from the archive unless they are cached.
            Source::Command(command) => command.network || !command.packages.is_empty(),
            Source::Path(_) => false,
        };
        if !networked {
            return false;
        }
        let cache = Cache::new(&self.options.cache_dir);
        // The package lists at hand, never refreshed here: listing stays fast and offline.
        let packages = match &recipe.source {
            Source::Command(c) if !c.packages.is_empty() => match debian::resolve_all(
                name,
                &c.packages,
                &cache,
                &self.options.debian,
                self.options.network,
                Refresh::Never,
            ) {
                Ok(resolved) => resolved.into_iter().map(|(p, _)| p).collect(),
                Err(_) => return true,
            },
            _ => Vec::new(),
        };
        let Ok(keyed) = recipe_key(recipe, catalog.guests_dir(), &packages) else {
            return false;
        };
        let dir = cache.artifact_dir(name, &keyed.key);
        let cached = read_sums(&dir).is_some()
            && recipe
                .outputs()
                .iter()
                .all(|output| dir.join(output).is_file());
        !cached
    }
}

/// Every file reference in a config, with where it is used.
fn references(loaded: &LoadedConfig) -> Vec<(String, &str)> {
    let qemu = &loaded.config.qemu;
    let mut refs: Vec<(String, &str)> = [
        ("-bios", &qemu.bios),
        ("-kernel", &qemu.kernel),
        ("-initrd", &qemu.initrd),
    ]
    .into_iter()
    .filter_map(|(option, value)| value.as_deref().map(|v| (option.to_string(), v)))
    .collect();
    if let Some(disk) = &loaded.config.disk {
        refs.extend(disk.entries.iter().filter_map(|entry| {
            entry
                .source
                .as_deref()
                .map(|source| (format!("[disk] {}", entry.dest), source))
        }));
    }
    refs
}
