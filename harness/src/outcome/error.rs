//! Why a run could not reach a verdict of the guest's own: typed errors that keep their cause
//! (`#[source]`) and a [`ErrorClass`] that decides the label, the exit code and retries.

use std::path::PathBuf;
#[cfg(feature = "artifacts")]
use std::sync::Arc;

#[cfg(feature = "artifacts")]
use crate::artifact::ArtifactError;
use crate::disk::{DiskError, ImageError};
use crate::error::ErrorClass;
use crate::fileref::FileRef;
use crate::plan::PlanError;
use crate::qemu::{ExitStatus, PreflightError, SpawnError};
use crate::settings::SettingsError;

/// Why an `artifact:` reference could not be turned into a path.
#[derive(Debug, thiserror::Error)]
// Non-exhaustive: variants depend on the `artifacts` feature, and features must stay additive.
#[non_exhaustive]
pub enum ResolveError {
    /// `guests/` could not be loaded.
    #[cfg(feature = "artifacts")]
    #[error("cannot load the guest catalog")]
    Catalog(#[source] Arc<ArtifactError>),
    /// Resolving the artifact failed.
    #[cfg(feature = "artifacts")]
    #[error(transparent)]
    Artifact(Box<ArtifactError>),
    /// An `env:VAR` reference whose variable is not set.
    #[error("environment variable {var} is not set (it names the file to use)")]
    EnvUnset {
        /// The variable.
        var: String,
    },
}

impl ResolveError {
    /// Whether the config names something that does not exist (a misspelled artifact or file
    /// of an artifact), or a recipe file or `guests.lock` is malformed: the test definition's
    /// mistake.
    pub(crate) fn is_mistake(&self) -> bool {
        match self {
            #[cfg(feature = "artifacts")]
            ResolveError::Artifact(err) => artifact_mistake(err),
            #[cfg(feature = "artifacts")]
            ResolveError::Catalog(err) => artifact_mistake(err),
            ResolveError::EnvUnset { .. } => false,
        }
    }

    /// Whether the input cannot be obtained here (rather than being broken).
    pub fn is_unavailable(&self) -> bool {
        match self {
            #[cfg(feature = "artifacts")]
            ResolveError::Artifact(err) => err.is_unavailable(),
            ResolveError::EnvUnset { .. } => true,
            #[cfg(feature = "artifacts")]
            ResolveError::Catalog(_) => false,
        }
    }
}

/// Whether the store's error is the test definition's mistake (see [`ResolveError::is_mistake`]).
#[cfg(feature = "artifacts")]
fn artifact_mistake(err: &ArtifactError) -> bool {
    matches!(
        err,
        ArtifactError::UnknownArtifact { .. }
            | ArtifactError::UnknownFile { .. }
            | ArtifactError::BadReference { .. }
            | ArtifactError::Recipe { .. }
            | ArtifactError::DuplicateArtifact { .. }
            | ArtifactError::LockFile { .. }
    )
}

/// One input a config needs that this machine lacks, found at listing time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MissingInput {
    /// An `env:VAR` reference whose variable is unset or empty.
    #[error("{what}: environment variable {var} is not set")]
    EnvUnset {
        /// Where the config uses it (`-kernel`, `[disk] /a.bin`).
        what: String,
        /// The variable.
        var: String,
    },
    /// An artifact that must come from the network and is not in the cache.
    #[error(
        "{what}: artifact `{artifact}` needs the network and is not cached (`{cli} guests fetch {artifact}`)"
    )]
    NotCached {
        /// Where the config uses it.
        what: String,
        /// The artifact name.
        artifact: String,
        /// The command that fetches it, less `guests fetch`: the frontend in use
        /// ([`Settings`](crate::settings::Settings)' `artifacts.cli`).
        cli: String,
    },
    /// The config needs KVM (`needs_kvm`) and this run would be TCG.
    #[error("needs KVM ({why}), and KVM is not usable here: {reason}")]
    NoKvm {
        /// The config's reason for needing KVM.
        why: String,
        /// Why this run cannot have it.
        reason: String,
    },
}

/// Everything that ends a run before the guest could be judged, or that the run observed
/// about the host rather than the guest.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The environment has unusable values.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The config cannot run as written.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A file the config names could not be resolved.
    #[error("{what} `{reference}` cannot be resolved{}", required_note(*.required))]
    Resolve {
        /// Where the config uses it (`-kernel`, `[disk] /a.bin`).
        what: String,
        /// The reference as written.
        reference: FileRef,
        /// Why.
        #[source]
        source: ResolveError,
        /// Unavailable inputs are required (`VMHARNESS_REQUIRE_ARTIFACTS=1`).
        required: bool,
    },
    /// Inputs this machine lacks, found before the run (listing time).
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    MissingInputs(Vec<MissingInput>),
    /// The `[disk]` image could not be built.
    #[error("cannot build the [disk] image")]
    Disk(#[source] DiskError),
    /// `accel = "kvm"` on a host where KVM does not work.
    #[error(transparent)]
    Accel(#[from] crate::accel::KvmUnusable),
    /// The remote host could not be used.
    #[error("remote run")]
    Remote(#[from] crate::remote::RemoteError),
    /// A check before boot failed (binary missing, a named file missing).
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    /// A directory or file of the run could not be created.
    #[error("cannot create {what} {}", path.display())]
    Io {
        /// What it is (`log dir`, `temp dir`, `console log`).
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Writing a file of the run failed part way (a full disk, most often).
    #[error("write failed: {what} {}{}", path.display(), crate::disk::space_hint(source))]
    Write {
        /// What it is (`console log`).
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// QEMU could not be started.
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// The run's `result.toml` could not be written (the cause is the suite's
    /// `RecordError`, boxed because the record is written a layer above the run).
    #[error("cannot record the result")]
    Record(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// `[qemu] cpu_since` needs the QEMU release, and the binary did not tell it.
    #[error("`qemu.cpu_since` needs the QEMU release")]
    QemuVersion(#[source] crate::qemu::VersionError),
    /// Writing to the guest's console failed.
    #[error("cannot write to the guest console")]
    ConsoleWrite(#[source] std::io::Error),
    /// QEMU reported an accelerator failure on stderr: the VM is stuck, not the guest.
    #[error("QEMU reported an accelerator failure (`{marker}`){}: the VM is stuck, not the guest; see qemu stderr below", .during.as_ref().map(|d| format!(" at the {d}")).unwrap_or_default())]
    AccelFailure {
        /// The marker found in QEMU's stderr.
        marker: &'static str,
        /// The deadline that had passed, if the failure was found at a timeout.
        during: Option<crate::outcome::TimeoutKind>,
    },
    /// A saved state could not be made or restored.
    #[error("saved state")]
    State(#[from] crate::states::StateError),
    /// After a restore, the guest did not answer the `[ready]` probe.
    #[error("the restored guest did not answer `{probe}` with a line matching /{answer}/ within {:.1} s", within.as_secs_f64())]
    NoAnswer {
        /// The probe line sent.
        probe: String,
        /// The answer regex.
        answer: String,
        /// The deadline.
        within: std::time::Duration,
    },
    /// A trial names a `[[case]]` the config does not have.
    #[error("the config has no case `{0}`")]
    NoSuchCase(String),
    /// QEMU exited before the guest printed anything.
    #[error("QEMU {} ({status}): {first_line}", if *.rejected_argv { "rejected its command line" } else { "failed to start" })]
    QemuStart {
        /// How QEMU exited.
        status: ExitStatus,
        /// The first line of its stderr.
        first_line: String,
        /// QEMU named one of its options as the problem (`qemu-system-x86_64: -m lots: ...`).
        rejected_argv: bool,
    },
}

fn required_note(required: bool) -> &'static str {
    if required {
        " (artifacts are required: VMHARNESS_REQUIRE_ARTIFACTS=1)"
    } else {
        ""
    }
}

impl RunError {
    /// Who has to act.
    pub fn class(&self) -> ErrorClass {
        match self {
            RunError::Settings(_) | RunError::Plan(_) | RunError::NoSuchCase(_) => ErrorClass::Fail,
            RunError::Resolve { source, .. } if source.is_mistake() => ErrorClass::Fail,
            RunError::Resolve {
                source, required, ..
            } => match (source.is_unavailable(), required) {
                (true, false) => ErrorClass::Unavailable,
                _ => ErrorClass::Infra,
            },
            RunError::MissingInputs(_) => ErrorClass::Unavailable,
            RunError::Disk(DiskError::Image(
                ImageError::Output { .. } | ImageError::Write { .. },
            )) => ErrorClass::Infra,
            // Any other disk error: the config asks for an image that cannot be built.
            RunError::Disk(_) => ErrorClass::Fail,
            RunError::Preflight(err) if err.is_mistake() => ErrorClass::Fail,
            RunError::Remote(crate::remote::RemoteError::MissingFile { .. }) => ErrorClass::Fail,
            RunError::QemuStart {
                rejected_argv: true,
                ..
            } => ErrorClass::Fail,
            RunError::Spawn(err) if err.is_argv_mistake() => ErrorClass::Fail,
            RunError::Accel(_)
            | RunError::Remote(_)
            | RunError::Preflight(_)
            | RunError::Io { .. }
            | RunError::Write { .. }
            | RunError::Spawn(_)
            | RunError::ConsoleWrite(_)
            | RunError::Record(_)
            | RunError::QemuVersion(_)
            | RunError::AccelFailure { .. }
            | RunError::State(_)
            | RunError::NoAnswer { .. }
            | RunError::QemuStart { .. } => ErrorClass::Infra,
        }
    }
}

// They build artifact options and errors.
#[cfg(test)]
#[cfg(feature = "artifacts")]
mod tests {
    use super::*;
    use crate::artifact::unpack::UnpackError;
    use crate::outcome::{Outcome, Report};

    fn resolve_error(source: ArtifactError, required: bool) -> RunError {
        RunError::Resolve {
            what: "-kernel".into(),
            reference: "artifact:nimbos-aarch64/nimbos.bin".parse().unwrap(),
            source: ResolveError::Artifact(Box::new(source)),
            required,
        }
    }

    /// The unpack error used to vanish when the artifact error became a string.
    #[test]
    fn an_unpack_cause_reaches_the_report() {
        let err = resolve_error(
            ArtifactError::Unpack {
                artifact: "nimbos-aarch64".into(),
                archive: "/c/objects/ab".into(),
                source: UnpackError::UnsafePath {
                    entry: "../../etc/passwd".into(),
                    reason: "contains `..`",
                },
            },
            false,
        );
        assert_eq!(err.class(), ErrorClass::Infra);
        let report = Report::new("nimbos", "/l/console.log".into())
            .ended(Outcome::from(err), std::time::Duration::ZERO);
        let text = report.to_string();
        assert!(
            text.starts_with(
                "INFRA nimbos: -kernel `artifact:nimbos-aarch64/nimbos.bin` cannot be resolved\n  caused by: artifact `nimbos-aarch64`: unpacking /c/objects/ab\n  caused by: entry `../../etc/passwd` has an unsafe path: contains `..`\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn classes_follow_who_has_to_act() {
        let unavailable = || ArtifactError::Unavailable {
            artifact: "a".into(),
            reason: "offline".into(),
        };
        assert_eq!(
            resolve_error(unavailable(), false).class(),
            ErrorClass::Unavailable
        );
        assert_eq!(
            resolve_error(unavailable(), true).class(),
            ErrorClass::Infra
        );
        assert!(resolve_error(unavailable(), true)
            .to_string()
            .contains("artifacts are required"));
        let typo = ArtifactError::UnknownArtifact {
            artifact: "a".into(),
            suggestion: None,
        };
        assert_eq!(resolve_error(typo, true).class(), ErrorClass::Fail);
        let missing = PreflightError::MissingFile {
            option: "-kernel".into(),
            path: "/x".into(),
        };
        assert_eq!(RunError::Preflight(missing).class(), ErrorClass::Fail);
        let binary = PreflightError::BinaryNotFound { binary: "q".into() };
        assert_eq!(RunError::Preflight(binary).class(), ErrorClass::Infra);
        let start = |rejected_argv| RunError::QemuStart {
            status: ExitStatus::Code(1),
            first_line: "qemu-system-x86_64: -m lots: Parameter 'size' expects a size".into(),
            rejected_argv,
        };
        assert_eq!(start(true).class(), ErrorClass::Fail);
        assert_eq!(start(false).class(), ErrorClass::Infra);
        assert_eq!(
            RunError::MissingInputs(vec![MissingInput::EnvUnset {
                what: "-kernel".into(),
                var: "K".into()
            }])
            .class(),
            ErrorClass::Unavailable
        );
    }
}
