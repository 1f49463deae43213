//! Turning a plan's file inputs (`artifact:name/file`, `env:VAR`, paths) into host paths, and
//! building the config's disk from them.

use std::path::{Path, PathBuf};
#[cfg(feature = "artifacts")]
use std::sync::Arc;
use std::sync::Mutex;

#[cfg(feature = "artifacts")]
use crate::artifact::{ArtifactRef, Catalog, ResolveOptions};
use crate::disk::ResolveFailure;
use crate::fileref::FileRef;
use crate::outcome::{Provenance, ResolveError, RunError};
use crate::plan::{InputUse, Plan};
use crate::qemu::{regular_input, ExtraArg, PreflightError};
use crate::settings::Settings;

/// Maps a config's `artifact:` references to verified host paths (the seam tests and
/// benchmarks replace).
pub trait FileResolver: Sync {
    /// The host path of one artifact file.
    #[cfg(feature = "artifacts")]
    fn artifact(&self, reference: &ArtifactRef) -> Result<PathBuf, ResolveError>;

    /// What the artifacts resolved so far were (key, output sha256, package versions).
    fn booted(&self) -> Vec<Provenance> {
        Vec::new()
    }
}

/// Resolves `artifact:name/file` through the guest catalog, verified against `guests.lock`.
pub struct Resolver {
    #[cfg(feature = "artifacts")]
    catalog: Result<Catalog, Arc<crate::artifact::ArtifactError>>,
    #[cfg(feature = "artifacts")]
    options: ResolveOptions,
    booted: Mutex<Vec<Provenance>>,
}

impl Resolver {
    /// A resolver over the settings' `guests/` with their artifact options.
    pub fn from_settings(settings: &Settings) -> Self {
        #[cfg(not(feature = "artifacts"))]
        let _ = settings;
        Resolver {
            #[cfg(feature = "artifacts")]
            catalog: Catalog::load(&settings.guests_dir()).map_err(Arc::new),
            #[cfg(feature = "artifacts")]
            options: settings.artifacts.clone(),
            booted: Mutex::default(),
        }
    }

    /// A resolver from [`Settings::from_env`] (defaults for the workspace if the environment
    /// is unusable: the run itself reports that).
    pub fn from_env() -> Self {
        let settings = Settings::from_env()
            .unwrap_or_else(|_| Settings::defaults(crate::paths::workspace_root()));
        Resolver::from_settings(&settings)
    }

    /// A resolver over a given catalog.
    #[cfg(feature = "artifacts")]
    pub fn new(catalog: Catalog, options: ResolveOptions) -> Self {
        Resolver {
            catalog: Ok(catalog),
            options,
            booted: Mutex::default(),
        }
    }
}

impl FileResolver for Resolver {
    #[cfg(feature = "artifacts")]
    fn artifact(&self, reference: &ArtifactRef) -> Result<PathBuf, ResolveError> {
        let catalog = self
            .catalog
            .as_ref()
            .map_err(|err| ResolveError::Catalog(err.clone()))?;
        let (path, resolved) = catalog
            .resolve_ref_with_artifact(reference, &self.options)
            .map_err(|err| ResolveError::Artifact(Box::new(err)))?;
        let provenance = Provenance::from(&resolved);
        if let Ok(mut booted) = self.booted.lock() {
            if !booted.iter().any(|b| b.artifact == provenance.artifact) {
                booted.push(provenance);
            }
        }
        Ok(path)
    }

    fn booted(&self) -> Vec<Provenance> {
        self.booted.lock().map(|b| b.clone()).unwrap_or_default()
    }
}

/// One reference as a host path: artifacts through `resolver`, `env:` through the settings'
/// variables, paths relative to `base`.
pub fn resolve_ref(
    reference: &FileRef,
    base: &Path,
    resolver: &dyn FileResolver,
    settings: &Settings,
) -> Result<PathBuf, ResolveError> {
    // Without the store no reference names an artifact, so the resolver has nothing to do.
    #[cfg(not(feature = "artifacts"))]
    let _ = resolver;
    match reference {
        #[cfg(feature = "artifacts")]
        FileRef::Artifact(artifact) => resolver.artifact(artifact),
        FileRef::Env(var) => settings
            .var(var)
            .map(|value| base.join(value))
            .ok_or_else(|| ResolveError::EnvUnset { var: var.clone() }),
        FileRef::Path(path) => Ok(base.join(path)),
    }
}

/// The plan's inputs as host paths.
pub(super) struct ResolvedInputs(Vec<(InputUse, FileRef, PathBuf)>);

impl ResolvedInputs {
    /// The path of the input used as `used`.
    pub(super) fn path(&self, used: &InputUse) -> Option<PathBuf> {
        self.0
            .iter()
            .find(|(u, _, _)| u == used)
            .map(|(_, _, p)| p.clone())
    }

    /// Checks that every input, and every file `qemu.args` names (`-kernel`, `-pflash`…; a
    /// `-drive` may be a block device), is a regular file; a disk entry's source may also be
    /// a directory. Found before the disk is built or QEMU opens anything, and located at
    /// the key that names the file.
    pub(super) fn check_regular(&self, plan: &Plan) -> Result<(), PreflightError> {
        for (used, _, path) in &self.0 {
            let directory_ok = matches!(used, InputUse::Disk(_));
            regular_input(used, || plan.input_location(used), path, directory_ok)?;
        }
        for extra in ExtraArg::parse_all(&plan.qemu.extra) {
            if let ExtraArg::File { option, path } = extra {
                let location = || plan.loaded.locate(&["qemu", "args"]);
                regular_input(&option, location, &path, false)?;
            }
        }
        Ok(())
    }

    fn by_reference(&self, reference: &FileRef) -> Option<&Path> {
        self.0
            .iter()
            .find(|(_, r, _)| r == reference)
            .map(|(_, _, p)| p.as_path())
    }
}

/// Resolves every input of `plan`, in config order; the first failure ends it.
pub(super) fn inputs(
    plan: &Plan,
    resolver: &dyn FileResolver,
    settings: &Settings,
) -> Result<ResolvedInputs, RunError> {
    let base = plan.loaded.base_dir();
    let mut resolved = Vec::with_capacity(plan.inputs.len());
    for input in &plan.inputs {
        let path = resolve_ref(&input.reference, base, resolver, settings).map_err(|source| {
            RunError::Resolve {
                what: input.used_as.to_string(),
                reference: input.reference.clone(),
                source,
                required: settings.require_artifacts,
            }
        })?;
        resolved.push((input.used_as.clone(), input.reference.clone(), path));
    }
    Ok(ResolvedInputs(resolved))
}

/// Builds the plan's `[disk]` image in `temp` from resolved inputs; `None` without a disk.
pub(super) fn build_disk(
    plan: &Plan,
    files: &ResolvedInputs,
    settings: &Settings,
    temp: &Path,
) -> Result<Option<PathBuf>, RunError> {
    let Some(spec) = &plan.disk else {
        return Ok(None);
    };
    let image = temp.join("disk.img");
    // Every source was resolved above; a miss would be a bug, reported rather than hidden.
    let lookup = |reference: &FileRef| -> Result<PathBuf, ResolveFailure> {
        files
            .by_reference(reference)
            .map(Path::to_path_buf)
            .ok_or_else(|| format!("`{reference}` was not among the resolved inputs").into())
    };
    let mut builder = spec.builder(&lookup).map_err(RunError::Disk)?;
    if let Some(epoch) = settings.source_date_epoch {
        builder = builder.timestamp(epoch);
    }
    let built = builder
        .build(&image)
        .map_err(|error| RunError::Disk(error.into()))?;
    Ok(Some(built.path))
}
