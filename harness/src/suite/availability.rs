//! Listing-time check: which inputs of a config this machine lacks, found without running it.
//!
//! Cheap by design (no network, no download, no build): an `env:` reference whose variable is
//! unset, or an `artifact:` whose recipe needs the network (`kind = "url"`, a command with
//! `network = true` or with Debian `packages`) and that resolution could not produce from the
//! cache alone ([`Catalog::can_produce`]: materialized files, cached packages to rebuild from,
//! a cached pinned download or local build; package lists at hand, never refreshed here). One
//! found corrupt and quarantined is left to the run, which reports it. The run path still
//! verifies everything.

use crate::accel::{self, Accel, ProbeSpec};
use crate::arch::Arch;
#[cfg(feature = "artifacts")]
use crate::artifact::cache::Cache;
#[cfg(feature = "artifacts")]
use crate::artifact::{Catalog, Network, Source};
use crate::config::{AccelChoice, LoadedConfig};
use crate::fileref::FileRef;
use crate::plan::Plan;
use crate::settings::Settings;

pub use crate::run::MissingInput as Unavailable;

/// What the listing-time check knows about this process: the catalog, cache and mode.
pub struct Check {
    #[cfg(feature = "artifacts")]
    catalog: Option<Catalog>,
    settings: Settings,
}

impl Check {
    /// A check with the settings' artifact options, artifacts-required switch and nextest
    /// detection. Without a catalog ([`Check::with_catalog`]), artifacts are not checked (the
    /// run reports the error).
    pub fn new(settings: &Settings) -> Self {
        Check {
            #[cfg(feature = "artifacts")]
            catalog: None,
            settings: settings.clone(),
        }
    }

    /// The check with the catalog whose artifacts it checks against the cache.
    #[cfg(feature = "artifacts")]
    pub fn with_catalog(self, catalog: Catalog) -> Self {
        Check {
            catalog: Some(catalog),
            ..self
        }
    }

    /// Whether an ignored config carries the ignored flag in the listing (nextest), rather
    /// than being ignored when it runs (cargo test, which shows the reason inline).
    pub(crate) fn ignore_at_listing(&self) -> bool {
        self.settings.nextest
    }

    /// The inputs of `loaded` this machine lacks; empty when artifacts are required (the run
    /// then fails as an infrastructure problem instead of hiding behind an ignore).
    pub fn missing_inputs(&self, loaded: &LoadedConfig) -> Vec<Unavailable> {
        if self.settings.require_artifacts {
            return Vec::new();
        }
        let Ok(plan) = Plan::new(loaded, &self.settings) else {
            return Vec::new();
        };
        let no_kvm = self.no_kvm(&plan);
        plan.inputs
            .iter()
            .filter_map(|input| {
                let what = input.used_as.to_string();
                match &input.reference {
                    FileRef::Env(var) => {
                        self.settings
                            .var(var)
                            .is_none()
                            .then(|| Unavailable::EnvUnset {
                                what,
                                var: var.clone(),
                            })
                    }
                    #[cfg(feature = "artifacts")]
                    FileRef::Artifact(artifact) => {
                        self.needs_download(&artifact.name)
                            .then(|| Unavailable::NotCached {
                                what,
                                artifact: artifact.name.clone(),
                                cli: self.settings.artifacts.cli.clone(),
                            })
                    }
                    FileRef::Path(_) => None,
                }
            })
            .chain(no_kvm)
            .collect()
    }

    /// A config that `needs_kvm` on a run that would be TCG: decided without a probe boot when
    /// TCG is forced or the arches differ (local runs); under nextest (which must know at listing time) the
    /// accelerator probe answers, cached as for runs.
    fn no_kvm(&self, plan: &Plan) -> Option<Unavailable> {
        let why = plan.loaded.config.needs_kvm.clone()?;
        let reason = match plan.accel {
            AccelChoice::Tcg => format!("the accelerator is TCG ({})", plan.accel_source),
            // The remote host's own probe decides when the run starts.
            _ if self.settings.remote.is_some() => return None,
            _ if Arch::host() != Some(plan.arch) => {
                let host = Arch::host().map_or(std::env::consts::ARCH, Arch::name);
                format!("the guest is {} and the host is {host}", plan.arch)
            }
            _ if !self.settings.nextest => return None,
            _ => {
                let binary = crate::qemu::find_binary(&plan.qemu.binary).ok()?;
                let temp_dir = self.settings.state_dir().join("tmp");
                let probe = ProbeSpec {
                    qemu: &binary,
                    machine: &plan.qemu.machine,
                    cpu: &plan.cpu(Accel::Kvm),
                    cache_dir: &self.settings.state_dir().join("kvm-probe"),
                    temp_dir: &temp_dir,
                    timeout: self.settings.kvm_probe_timeout,
                };
                accel::kvm_usable(plan.arch, &probe).err()?
            }
        };
        Some(Unavailable::NoKvm { why, reason })
    }

    /// Whether `missing` makes the config ignored. An unset variable always does; an uncached
    /// download only where the run could not fetch it on demand: offline, or under nextest
    /// (where a runtime skip would look like a pass).
    pub fn ignores(&self, missing: &[Unavailable]) -> bool {
        #[cfg(feature = "artifacts")]
        let count_downloads =
            self.settings.nextest || self.settings.artifacts.network == Network::Offline;
        // No artifact store, so nothing is ever missing from its cache.
        #[cfg(not(feature = "artifacts"))]
        let count_downloads = self.settings.nextest;
        missing.iter().any(|reason| match reason {
            Unavailable::EnvUnset { .. } | Unavailable::NoKvm { .. } => true,
            Unavailable::NotCached { .. } => count_downloads,
        })
    }

    /// True if the artifact's recipe needs the network and resolution could not produce it
    /// from this machine and the cache alone.
    #[cfg(feature = "artifacts")]
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
        // Found corrupt and not produced again: the run reports that (INFRA), not a skip.
        let cache = Cache::new(&self.settings.artifacts.cache_dir);
        if cache.has_quarantined(name) {
            return false;
        }
        // An error (a missing input or tool) is the run's to report.
        catalog
            .can_produce(name, &self.settings.artifacts)
            .is_ok_and(|can| !can)
    }
}
