//! The errors artifact resolution can report.

use std::path::PathBuf;

/// Everything that can go wrong while loading recipes, resolving, verifying or unpacking artifacts.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The artifact cannot be obtained here and now (no network, missing tool, offline mode).
    /// Trials that need it are reported as unavailable unless artifacts are required
    /// (vmharness's `VMHARNESS_REQUIRE_ARTIFACTS`).
    #[error("artifact `{artifact}` is unavailable: {reason}")]
    Unavailable {
        /// Artifact name.
        artifact: String,
        /// Why it could not be obtained.
        reason: String,
    },
    /// A file or directory could not be read or written.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done ("read", "create", ...).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A recipe file is not valid TOML or does not match the recipe schema.
    #[error("{}: {message}", file.display())]
    Recipe {
        /// The recipe file.
        file: PathBuf,
        /// What is wrong, with line and column where known.
        message: String,
    },
    /// Two recipe files define the same artifact.
    #[error("artifact `{artifact}` is defined in both {} and {}", first.display(), second.display())]
    DuplicateArtifact {
        /// Artifact name.
        artifact: String,
        /// The file that defined it first.
        first: PathBuf,
        /// The file that defined it again.
        second: PathBuf,
    },
    /// The lock file cannot be parsed.
    #[error("{}: {message}", file.display())]
    LockFile {
        /// The lock file.
        file: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// No recipe defines this artifact.
    #[error(
        "no recipe defines artifact `{artifact}`{}",
        suggestion_text(suggestion)
    )]
    UnknownArtifact {
        /// The requested name.
        artifact: String,
        /// The closest known name, if any is close.
        suggestion: Option<String>,
    },
    /// The artifact exists but has no output file of that name.
    #[error("artifact `{artifact}` has no file `{file}` (it has: {})", available.join(", "))]
    UnknownFile {
        /// Artifact name.
        artifact: String,
        /// The requested file.
        file: String,
        /// The files it does have.
        available: Vec<String>,
    },
    /// A reference string is not of the form `artifact:<name>/<file>`.
    #[error("invalid artifact reference `{reference}`: {reason}")]
    BadReference {
        /// The text that was parsed.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Bytes do not match the sha256 pinned in `guests.lock` for the same recipe key: a
    /// build that is not reproducible, or tampering. Nothing is marked current.
    #[error(
        "artifact `{artifact}`: sha256 mismatch for {what}: expected {expected}, got {actual}{}",
        inputs_text(inputs)
    )]
    Mismatch {
        /// Artifact name.
        artifact: String,
        /// Which bytes: an output file name or `download <url>`.
        what: String,
        /// The pinned sha256.
        expected: String,
        /// The sha256 of the bytes at hand.
        actual: String,
        /// The inputs the key names (packages, tools), one per line; empty for downloads.
        inputs: String,
    },
    /// A cached file's bytes no longer match what was recorded for it, and the artifact could
    /// not be produced again here. The bad file was moved aside, not deleted.
    #[error("{0}")]
    CorruptCache(Box<CacheCorruption>),
    /// A download was refused by policy or failed in a way retrying cannot fix and that must
    /// not pass for "unavailable" (a certificate or protocol error, a size or time limit, a
    /// plain-http or downgrading redirect).
    #[error("artifact `{artifact}`: download of {url} refused: {reason}")]
    Download {
        /// Artifact name.
        artifact: String,
        /// The URL.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// apt (in the private configuration) reported a problem with the Debian archive.
    #[error("artifact `{artifact}`: cannot {action}: {detail}")]
    Apt {
        /// Artifact name.
        artifact: String,
        /// What was being done.
        action: String,
        /// apt's words.
        detail: String,
    },
    /// The artifact is not pinned in `guests.lock` (or its inputs moved) and the mode does not
    /// accept that (`url` artifacts in CI; any artifact in strict mode).
    #[error("artifact `{artifact}` is not locked in {} ({reason}); run `{cli} guests lock`", lock_file.display())]
    NotLocked {
        /// Artifact name.
        artifact: String,
        /// The lock file consulted.
        lock_file: PathBuf,
        /// Missing entry, or recipe key changed.
        reason: String,
        /// The command that records it, less `guests lock` ([`ResolveOptions::cli`](crate::ResolveOptions::cli)).
        cli: String,
    },
    /// The record of a local build in the cache (`<cache>/local-builds/<name>.toml`) cannot be
    /// read as one.
    #[error("{}: not a local build record: {message}", file.display())]
    LocalBuildRecord {
        /// The record file.
        file: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The release of a `url` artifact is unavailable and a local build is recorded, but the
    /// mode accepts only what `guests.lock` pins (`VMHARNESS_LOCKED=strict`). Counts as
    /// unavailable: nothing acceptable can be obtained here.
    #[error(
        "artifact `{artifact}`: the release is unavailable and strict mode (VMHARNESS_LOCKED=strict) refuses the local build standing in for it (sha256 {sha256}, imported from {})",
        from.display()
    )]
    LocalBuildRefused {
        /// Artifact name.
        artifact: String,
        /// sha256 of the local build.
        sha256: String,
        /// Where it was imported from.
        from: PathBuf,
        /// Why the release could not be obtained.
        #[source]
        release: Box<ArtifactError>,
    },
    /// A download failed with an HTTP error status (after retries, for transient statuses).
    #[error("artifact `{artifact}`: GET {url} returned HTTP {status}")]
    HttpStatus {
        /// Artifact name.
        artifact: String,
        /// The URL.
        url: String,
        /// The final HTTP status.
        status: u16,
    },
    /// A declared input of a command recipe does not exist.
    #[error("artifact `{artifact}`: input `{input}` not found under {}", guests_dir.display())]
    MissingInput {
        /// Artifact name.
        artifact: String,
        /// The input path as written in the recipe.
        input: String,
        /// The guests directory it is relative to.
        guests_dir: PathBuf,
    },
    /// A build command exited unsuccessfully.
    #[error(
        "artifact `{artifact}`: command `{command}` failed ({status}); stderr tail:\n{stderr_tail}"
    )]
    CommandFailed {
        /// Artifact name.
        artifact: String,
        /// The command line.
        command: String,
        /// The exit status.
        status: String,
        /// The last lines of its standard error.
        stderr_tail: String,
    },
    /// A build command or archive did not produce a declared output.
    #[error("artifact `{artifact}`: declared output `{output}` was not produced ({detail})")]
    MissingOutput {
        /// Artifact name.
        artifact: String,
        /// The output file name.
        output: String,
        /// Where it was expected.
        detail: String,
    },
    /// An archive could not be unpacked safely.
    #[error("artifact `{artifact}`: unpacking {}", archive.display())]
    Unpack {
        /// Artifact name.
        artifact: String,
        /// The archive file.
        archive: PathBuf,
        /// What went wrong.
        #[source]
        source: super::unpack::UnpackError,
    },
}

/// The details of [`ArtifactError::CorruptCache`].
#[derive(Debug, thiserror::Error)]
#[error(
    "artifact `{artifact}`: cached {} is corrupt (expected sha256 {expected}, got {actual}); moved to {}; it cannot be produced again here: {reason}",
    file.display(), moved_to.display()
)]
pub struct CacheCorruption {
    /// Artifact name.
    pub artifact: String,
    /// The corrupt file.
    pub file: PathBuf,
    /// The sha256 it should have.
    pub expected: String,
    /// The sha256 it has.
    pub actual: String,
    /// Where it was moved.
    pub moved_to: PathBuf,
    /// Why it could not be produced again.
    pub reason: String,
}

fn inputs_text(inputs: &str) -> String {
    if inputs.is_empty() {
        String::new()
    } else {
        format!(" (a build that is not reproducible, or tampering); inputs:\n{inputs}")
    }
}

fn suggestion_text(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(name) => format!("; did you mean `{name}`?"),
        None => String::new(),
    }
}

impl ArtifactError {
    /// True if the artifact could not be obtained here (offline, missing tool): an
    /// infrastructure condition, not a defect in the artifact.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            ArtifactError::Unavailable { .. } | ArtifactError::LocalBuildRefused { .. }
        )
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        ArtifactError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
