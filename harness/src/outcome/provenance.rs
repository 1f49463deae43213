//! What a run booted from one artifact, as reports and `result.toml` record it.

use std::collections::BTreeMap;

/// What a run booted from one artifact: recorded in reports and `result.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    /// Artifact name.
    pub artifact: String,
    /// Its recipe key.
    pub key: String,
    /// Output name -> sha256.
    pub outputs: BTreeMap<String, String>,
    /// The Debian packages it was built from (`linux-image-6.1.0-57-arm64 6.1.192-3`).
    pub packages: Vec<String>,
    /// How the lock saw it (`LockStatus::describe` of the artifact store).
    pub lock: String,
    /// Whether the lock had not recorded this key (inputs moved).
    pub new_key: bool,
    /// Whether a local build stood in for the release.
    pub local_build: bool,
}

impl Provenance {
    /// One line: `linux-aarch64 (key 52c1cad6abd3): linux-image-… 6.1.192-3, busybox-static …; locked`.
    pub fn summary(&self) -> String {
        let short = self.key.get(..12).unwrap_or(&self.key);
        let packages = if self.packages.is_empty() {
            String::new()
        } else {
            format!(": booted {}", self.packages.join(", "))
        };
        format!("{} (key {short}){packages}; {}", self.artifact, self.lock)
    }
}

#[cfg(feature = "artifacts")]
impl From<&crate::artifact::Resolved> for Provenance {
    /// What a run that uses this artifact booted.
    fn from(resolved: &crate::artifact::Resolved) -> Self {
        use crate::artifact::LockStatus;
        Provenance {
            artifact: resolved.name.clone(),
            key: resolved.entry.key.clone(),
            outputs: resolved.entry.outputs.clone(),
            packages: resolved.packages.iter().map(ToString::to_string).collect(),
            lock: resolved.status.describe(),
            new_key: matches!(resolved.status, LockStatus::NewKey { .. }),
            local_build: matches!(resolved.status, LockStatus::LocalBuild { .. }),
        }
    }
}
