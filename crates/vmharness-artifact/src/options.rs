//! How resolution may behave: the lock policy ([`LockMode`]), the network ([`Network`]) and
//! every other knob of a resolution ([`ResolveOptions`]).

use std::path::PathBuf;

use super::fetch::{DownloadLimits, Progress, RetryPolicy};
use super::package::DebianArchive;
use super::unpack::UnpackLimits;

/// The command hints name when the frontend declared none: the cargo subcommand of
/// `vmharness-cli` (see [`ResolveOptions::cli`]).
pub const DEFAULT_CLI: &str = "cargo vmharness";

/// File name of the lock file inside the guests directory.
pub(crate) const LOCK_FILE: &str = "guests.lock";

/// How strictly resolution treats artifacts that `guests.lock` does not pin.
///
/// A pinned artifact whose bytes differ for the same recipe key is an error in every mode
/// except [`LockMode::Update`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Any key the lock has not recorded is an error, also a command recipe whose inputs moved
    /// (`VMHARNESS_LOCKED=strict`, `--locked=strict`).
    Strict,
    /// CI: a `url` or `path` artifact the lock does not pin is an error; a command recipe whose
    /// inputs moved (a new Debian kernel) is built, used and reported, not failed.
    Locked,
    /// Local development, the default outside CI: an artifact `guests.lock` has no entry for
    /// is recorded there on first use (the file is created if there is none), with a note on
    /// stderr; a key that moved since it was locked is used with a warning, as in
    /// [`LockMode::Lenient`].
    FirstUse,
    /// Local development without writing the lock: an unpinned artifact is used with a warning
    /// on stderr.
    Lenient,
    /// `guests lock`: like [`LockMode::Lenient`], but silent, since recording is the point.
    Record,
    /// `guests lock --update`: the lock is ignored; whatever is produced is reported for recording.
    Update,
}

impl LockMode {
    /// Whether an unpinned `url`/`path` artifact is an error.
    pub fn requires_pins(self) -> bool {
        matches!(self, LockMode::Strict | LockMode::Locked)
    }
}

/// Whether resolution may use the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// Downloads and `network = true` commands may run.
    Online,
    /// Anything that needs the network is [`ArtifactError::Unavailable`](super::ArtifactError::Unavailable) unless cached.
    Offline,
}

/// Knobs for [`Catalog::resolve`](super::Catalog::resolve).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveOptions {
    /// The cache root.
    pub cache_dir: PathBuf,
    /// Treatment of unpinned artifacts.
    pub lock_mode: LockMode,
    /// Whether the network may be used.
    pub network: Network,
    /// Retries for transient download failures.
    pub retry: RetryPolicy,
    /// Caps for unpacking archives.
    pub unpack: UnpackLimits,
    /// Download progress display.
    pub progress: Progress,
    /// Size and time limits of one download.
    pub download: DownloadLimits,
    /// A prefix that download URLs are rewritten to: `https://host/path` is fetched from
    /// `<mirror>/host/path` (`VMHARNESS_ARTIFACT_MIRROR`).
    pub mirror: Option<String>,
    /// Where Debian packages of command recipes come from.
    pub debian: DebianArchive,
    /// The command the user runs vmharness's commands with (`cargo xtask`, `vmharness`), as
    /// hints print it: "run `<cli> guests lock`". Default [`DEFAULT_CLI`].
    pub cli: String,
}

impl ResolveOptions {
    /// Options for this cache dir with defaults: lenient lock, online, default retries and caps.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        ResolveOptions {
            cache_dir: cache_dir.into(),
            lock_mode: LockMode::Lenient,
            network: Network::Online,
            retry: RetryPolicy::default(),
            unpack: UnpackLimits::default(),
            progress: Progress::Auto,
            download: DownloadLimits::default(),
            mirror: None,
            debian: DebianArchive::default(),
            cli: DEFAULT_CLI.to_string(),
        }
    }
}
