//! Saved guest states for `[[case]]`s: a guest is booted once to `[ready]`, QEMU's state is
//! saved there, and every case starts QEMU from it instead of booting.
//!
//! ```text
//! <states>/<key>/state       the migration stream (device state only for `template`)
//! <states>/<key>/ram         `template` only: guest RAM, a sparse file every restore maps
//!                            copy-on-write (`share=off`), so no case changes it
//! <states>/<key>/disk.img    the writable disk as it was at the save (cases run on an overlay)
//! <states>/<key>/meta.toml   the method, the frozen disk's sha256, what the key covers
//! <states>/<key>/unusable    a restore of this state failed: its cases boot cold (the reason)
//! <states>/<key>.lock        flock(2) held while the state is looked up or made
//! ```
//!
//! The key covers the QEMU binary and version, the argv with every file's sha256 (the disk's
//! bytes too), the method and the boot's expectations, so a change to any input makes a new
//! state. Whether saved states work at all depends on the (arch, QEMU version): `states::support`.
//!
//! `template` (Kata Containers' VM templating) is used where it was measured to work
//! ([`TEMPLATE_MEASURED`]); elsewhere the stream methods stay: on releases it was not measured
//! on, for a `-m` that is not a plain size (`slots=`, `maxmem=`), and when the config's own
//! arguments choose a memory backend or NUMA nodes (`memory-backend`, `-numa`), which the RAM
//! file would have to replace.

mod key;
mod migrate;
mod store;
mod template;

use std::path::PathBuf;
use std::time::Duration;

use crate::arch::Arch;
use crate::qemu::{QemuVersion, QmpError, VersionError};

pub(crate) use key::StateKey;
pub(crate) use migrate::{incoming, restore, save, wait_for_qmp};
pub(crate) use store::{SavedState, StateMeta, StateStore};
pub(crate) use template::{ram_file, template_fits};

pub(crate) use crate::settings::Method;

impl Method {
    /// The best stream method `version` offers (the RAM goes into the stream).
    pub fn for_version(version: &QemuVersion) -> Method {
        if version.at_least(9, 0) {
            Method::MappedRam
        } else if version.at_least(8, 2) {
            Method::File
        } else {
            Method::Exec
        }
    }

    /// Whether `version` has it; `Err` names the first release that does.
    pub fn available(self, version: &QemuVersion) -> Result<(), String> {
        let (major, minor) = match self {
            Method::Exec => return Ok(()),
            // The `x-ignore-shared` capability.
            Method::Template => (4, 0),
            Method::File => (8, 2),
            Method::MappedRam => (9, 0),
        };
        match version.at_least(major, minor) {
            true => Ok(()),
            false => Err(format!(
                "saving with `{}` needs QEMU {major}.{minor} or later; this is {version}",
                self.name()
            )),
        }
    }
}

/// (arch, first QEMU version) where restores were measured to work: 70 of 70 restores
/// answered and then slept correctly, on QEMU 7.2 and 10.0.
const KNOWN_GOOD: &[(Arch, (u32, u32))] = &[(Arch::X86_64, (7, 2)), (Arch::Aarch64, (7, 2))];

/// (arch, QEMU release series) where `template` restores were measured to work and to be at
/// least as fast as the stream method the release offers (tests/cases.rs on 7.2, `cargo xtask
/// bench cases --methods template,mapped-ram` on 10.0); other releases get that stream method.
const TEMPLATE_MEASURED: &[(Arch, (u32, u32))] = &[
    (Arch::X86_64, (7, 2)),
    (Arch::Aarch64, (7, 2)),
    (Arch::X86_64, (10, 0)),
    (Arch::Aarch64, (10, 0)),
];

/// Arches whose restores are known to be broken, and why.
const KNOWN_BAD: &[(Arch, &str)] = &[(
    Arch::Riscv64,
    "QEMU releases up to 10.0 do not migrate the riscv timer state, so restored guests hang \
     at their first sleep (fixed upstream in late 2025, not in a release tested here)",
)];

/// The method saved states use for `arch` on `version` (`forced`, if the version has it, else
/// the best it offers), or why they are not used there.
pub(crate) fn support(
    arch: Arch,
    version: &QemuVersion,
    forced: Option<Method>,
) -> Result<Method, String> {
    if let Some((_, why)) = KNOWN_BAD.iter().find(|(bad, _)| *bad == arch) {
        return Err(format!(
            "saved states are not used for {arch} on QEMU {version}: {why}"
        ));
    }
    let good = KNOWN_GOOD
        .iter()
        .any(|(good, (major, minor))| *good == arch && version.at_least(*major, *minor));
    match (good, forced) {
        (true, Some(method)) => method.available(version).map(|()| method),
        (true, None) if template_measured(arch, version) => Ok(Method::Template),
        (true, None) => Ok(Method::for_version(version)),
        (false, _) => Err(format!(
            "saved states are not known to work for {arch} on QEMU {version}"
        )),
    }
}

/// Whether `template` was measured on `arch` with `version`'s release series.
fn template_measured(arch: Arch, version: &QemuVersion) -> bool {
    let (major, minor, _) = version.numbers;
    TEMPLATE_MEASURED
        .iter()
        .any(|(measured, series)| *measured == arch && *series == (major, minor))
}

/// Why a state could not be saved, found or restored.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A file of the state store.
    #[error("{what} {}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The QMP conversation.
    #[error(transparent)]
    Qmp(#[from] QmpError),
    /// The QEMU version could not be told.
    #[error("QEMU version")]
    Version(#[from] VersionError),
    /// QEMU reported the migration failed.
    #[error("{phase} failed: QEMU says migration is {status}{}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Migration {
        /// `saving` or `restoring`.
        phase: &'static str,
        /// QEMU's migration or run status.
        status: String,
        /// QEMU's error description.
        detail: Option<String>,
    },
    /// It did not finish in time.
    #[error("{phase} did not finish within {:.1} s", after.as_secs_f64())]
    Timeout {
        /// `saving` or `restoring`.
        phase: &'static str,
        /// The limit.
        after: Duration,
    },
    /// A stored state is not what its metadata says.
    #[error("saved state {} is damaged: {why}", dir.display())]
    Damaged {
        /// The state's directory.
        dir: PathBuf,
        /// What is wrong.
        why: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(text: &str) -> QemuVersion {
        QemuVersion::parse(&format!("QEMU emulator version {text}")).unwrap()
    }

    #[test]
    fn every_arch_and_release_gets_a_method_or_a_reason() {
        for (arch, text, expected) in [
            (Arch::X86_64, "7.2.19", Ok(Method::Template)),
            (Arch::Aarch64, "7.2.22", Ok(Method::Template)),
            (Arch::Aarch64, "8.2.2", Ok(Method::File)),
            (Arch::X86_64, "9.0.0", Ok(Method::MappedRam)),
            (Arch::Aarch64, "10.0.2", Ok(Method::Template)),
            (Arch::X86_64, "10.0.7", Ok(Method::Template)),
            (Arch::X86_64, "10.1.0", Ok(Method::MappedRam)),
            (Arch::X86_64, "6.2.0", Err("not known to work")),
            (Arch::Riscv64, "7.2.19", Err("riscv timer state")),
            (Arch::Riscv64, "10.0.2", Err("riscv timer state")),
        ] {
            let got = support(arch, &version(text), None);
            match (got, expected) {
                (Ok(method), Ok(want)) => assert_eq!(method, want, "{arch} {text}"),
                (Err(why), Err(want)) => assert!(why.contains(want), "{arch} {text}: {why}"),
                (got, want) => panic!("{arch} {text}: {got:?}, expected {want:?}"),
            }
        }
        // A forced method is used where the release has it, and refused with why elsewhere.
        let v10 = version("10.0.2");
        for method in [
            Method::Exec,
            Method::File,
            Method::MappedRam,
            Method::Template,
        ] {
            assert_eq!(support(Arch::X86_64, &v10, Some(method)), Ok(method));
            assert_eq!(method.name().parse::<Method>(), Ok(method));
        }
        assert_eq!(
            support(Arch::X86_64, &version("7.2.19"), Some(Method::Exec)),
            Ok(Method::Exec)
        );
        let err = support(Arch::X86_64, &version("7.2.19"), Some(Method::File)).unwrap_err();
        assert!(
            err.contains("needs QEMU 8.2 or later; this is 7.2.19"),
            "{err}"
        );
        let err = support(Arch::Aarch64, &version("8.2.2"), Some(Method::MappedRam)).unwrap_err();
        assert!(err.contains("needs QEMU 9.0"), "{err}");
        assert!(support(Arch::Riscv64, &v10, Some(Method::Exec)).is_err());
    }
}
