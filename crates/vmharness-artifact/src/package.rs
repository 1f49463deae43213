//! What Debian packages a command recipe names ([`PackageSpec`]), what the archive resolved
//! them to ([`ResolvedPackage`]), and from which archive ([`DebianArchive`]): the data the
//! recipe, its key and the resolution options share, below the apt machinery of `debian`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Debian's archive keyring (the `debian-archive-keyring` package, on Debian and Ubuntu).
pub const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// The default Debian mirror.
pub(crate) const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
/// The default Debian security mirror (suites ending in `-security`).
pub(crate) const DEFAULT_SECURITY_MIRROR: &str = "http://deb.debian.org/debian-security";
/// How old the package lists may get before they are refreshed.
pub(crate) const DEFAULT_MAX_AGE: Duration = Duration::from_secs(3600);

/// One package a recipe declares in `[<artifact>.packages]`, under a role name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageSpec {
    /// The package name asked for (`linux-image-arm64`, `busybox-static`).
    pub name: String,
    /// The Debian architecture (`amd64`, `arm64`, `riscv64`).
    pub arch: String,
    /// The suites to search, best version wins (`["bookworm", "bookworm-security"]`).
    pub suites: Vec<String>,
    /// The component (default `main`).
    #[serde(default = "main_component")]
    pub component: String,
    /// For a metapackage: follow its `Depends` to the first package whose name matches this
    /// regex (the concrete `linux-image-6.1.0-57-arm64`), and use that package.
    #[serde(default)]
    pub via_depends: Option<String>,
}

fn main_component() -> String {
    "main".into()
}

/// A package as the signed index describes it: what goes into the recipe key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedPackage {
    /// The role the recipe gave it (`kernel`).
    pub role: String,
    /// The concrete package name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Its architecture.
    pub arch: String,
    /// sha256 of the `.deb` as published in the index.
    pub sha256: String,
}

impl ResolvedPackage {
    /// The one-line form kept in `guests.lock` and reports: `name version arch sha256:<hex>`.
    pub(crate) fn lock_value(&self) -> String {
        format!(
            "{} {} {} sha256:{}",
            self.name, self.version, self.arch, self.sha256
        )
    }
}

impl fmt::Display for ResolvedPackage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.name, self.version)
    }
}

/// Which key material verifies the archive's `InRelease`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keyring {
    /// A keyring file (default: [`DEBIAN_KEYRING`]).
    File(PathBuf),
    /// No signature check: only accepted for `file:` mirrors, for tests with a local archive.
    TrustedLocal,
}

/// Where Debian packages come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebianArchive {
    /// The mirror for ordinary suites.
    pub mirror: String,
    /// The mirror for `*-security` suites.
    pub security_mirror: String,
    /// What verifies the index.
    pub keyring: Keyring,
    /// Lists older than this are refreshed before use (when online).
    pub max_age: Duration,
}

impl Default for DebianArchive {
    fn default() -> Self {
        DebianArchive {
            mirror: DEFAULT_MIRROR.into(),
            security_mirror: DEFAULT_SECURITY_MIRROR.into(),
            keyring: Keyring::File(DEBIAN_KEYRING.into()),
            max_age: DEFAULT_MAX_AGE,
        }
    }
}
