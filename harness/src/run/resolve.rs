//! Turning the file references in a config (`artifact:name/file`, `env:VAR`, paths) into
//! host paths, and attaching the config's disk.

use std::path::{Path, PathBuf};

use std::sync::Mutex;

use crate::artifact::{ArtifactError, ArtifactRef, Catalog, Provenance, ResolveOptions};
use crate::config::LoadedConfig;
use crate::outcome::Outcome;
use crate::qemu::QemuCommand;

/// Environment variable: treat unavailable artifacts and inputs as failures, not skips.
pub const REQUIRE_ARTIFACTS_ENV: &str = "VMHARNESS_REQUIRE_ARTIFACTS";

/// Why a file reference could not be turned into a path.
#[derive(Debug, Clone)]
pub enum ResolveFailure {
    /// Not obtainable here (no network, an input variable unset): the test is skipped, or
    /// fails when artifacts are required.
    Unavailable(String),
    /// Obtainable in principle but broken (checksum mismatch, build failure, bad reference).
    Failed(String),
}

impl ResolveFailure {
    /// The outcome for a run that needed this file for `what` (e.g. `-kernel`).
    pub fn into_outcome(self, what: &str) -> Outcome {
        match self {
            ResolveFailure::Unavailable(reason) if artifacts_required() => Outcome::Infra {
                reason: format!(
                    "{what}: {reason} (artifacts are required: {REQUIRE_ARTIFACTS_ENV}=1)"
                ),
            },
            ResolveFailure::Unavailable(reason) => Outcome::Unavailable {
                reason: format!("{what}: {reason}"),
            },
            ResolveFailure::Failed(reason) => Outcome::Infra {
                reason: format!("{what}: {reason}"),
            },
        }
    }
}

/// Whether unavailable artifacts must fail the run (`VMHARNESS_REQUIRE_ARTIFACTS=1`).
pub fn artifacts_required() -> bool {
    crate::artifact::require_artifacts()
}

/// Maps a config's file reference to a host path.
pub trait FileResolver: Sync {
    /// Resolves `reference`; relative paths are relative to `base` (the config's directory).
    fn resolve(&self, reference: &str, base: &Path) -> Result<PathBuf, ResolveFailure>;

    /// What the artifacts resolved so far were (key, output sha256, package versions).
    fn booted(&self) -> Vec<Provenance> {
        Vec::new()
    }
}

/// Resolves `artifact:name/file` through the guest catalog (verified against `guests.lock`),
/// `env:VAR` (the variable holds a path) and plain paths.
pub struct Resolver {
    catalog: Result<Catalog, String>,
    options: ResolveOptions,
    booted: Mutex<Vec<Provenance>>,
}

impl Resolver {
    /// A resolver over `<workspace>/guests` with options from the environment.
    pub fn from_env() -> Self {
        Resolver {
            catalog: Catalog::load_default().map_err(|err| err.to_string()),
            options: ResolveOptions::from_env(),
            booted: Mutex::default(),
        }
    }

    /// A resolver over a given catalog.
    pub fn new(catalog: Catalog, options: ResolveOptions) -> Self {
        Resolver {
            catalog: Ok(catalog),
            options,
            booted: Mutex::default(),
        }
    }

    fn artifact(&self, reference: &str) -> Result<PathBuf, ResolveFailure> {
        let catalog = self.catalog.as_ref().map_err(|err| {
            ResolveFailure::Failed(format!("cannot load the guest catalog: {err}"))
        })?;
        let parsed: ArtifactRef = reference
            .parse()
            .map_err(|err: ArtifactError| ResolveFailure::Failed(err.to_string()))?;
        let (path, provenance) = catalog
            .resolve_ref_with_provenance(&parsed, &self.options)
            .map_err(|err| {
                if err.is_unavailable() {
                    ResolveFailure::Unavailable(err.to_string())
                } else {
                    ResolveFailure::Failed(err.to_string())
                }
            })?;
        if let Ok(mut booted) = self.booted.lock() {
            if !booted.iter().any(|b| b.artifact == provenance.artifact) {
                booted.push(provenance);
            }
        }
        Ok(path)
    }
}

impl FileResolver for Resolver {
    fn resolve(&self, reference: &str, base: &Path) -> Result<PathBuf, ResolveFailure> {
        if reference.starts_with("artifact:") {
            return self.artifact(reference);
        }
        if let Some(var) = reference.strip_prefix("env:") {
            return match std::env::var_os(var) {
                Some(value) if !value.is_empty() => Ok(base.join(PathBuf::from(value))),
                _ => Err(ResolveFailure::Unavailable(format!(
                    "environment variable {var} is not set (it names the file to use)"
                ))),
            };
        }
        Ok(base.join(reference))
    }

    fn booted(&self) -> Vec<Provenance> {
        self.booted.lock().map(|b| b.clone()).unwrap_or_default()
    }
}

/// Builds the config's `[disk]` image in `temp` and attaches it.
pub fn attach_disk(
    loaded: &LoadedConfig,
    resolver: &dyn FileResolver,
    temp: &Path,
    command: &mut QemuCommand,
) -> Result<(), Outcome> {
    let Some(spec) = &loaded.config.disk else {
        return Ok(());
    };
    let base = loaded.base_dir();
    // The first file that could not be resolved decides the outcome, as for -kernel.
    let unresolved = std::cell::RefCell::new(None);
    let resolve = |source: &str| -> Result<PathBuf, String> {
        resolver.resolve(source, base).map_err(|failure| {
            let text = match &failure {
                ResolveFailure::Unavailable(reason) | ResolveFailure::Failed(reason) => {
                    reason.clone()
                }
            };
            unresolved.borrow_mut().get_or_insert(failure);
            text
        })
    };
    let image = temp.join("disk.img");
    match spec.build(&resolve, &image) {
        Ok(built) => {
            command.args(spec.qemu_args(&built.path));
            Ok(())
        }
        Err(err) => Err(match unresolved.into_inner() {
            Some(failure) => failure.into_outcome("[disk]"),
            // The config asks for an image that cannot be built: the test definition is wrong.
            None => Outcome::Fail {
                reason: format!(
                    "cannot build the [disk] image for {}: {err}",
                    loaded.path.display()
                ),
            },
        }),
    }
}
