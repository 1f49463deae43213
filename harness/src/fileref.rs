//! How a config names a host file: `artifact:<name>/<file>`, `env:VAR` or a path. Parsed when
//! the config is loaded, so a malformed reference is an error with its line and column.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

#[cfg(feature = "artifacts")]
use crate::artifact::{ArtifactError, ArtifactRef, ARTIFACT_PREFIX};

/// A file reference from a config.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
// Non-exhaustive: `Artifact` exists with the `artifacts` feature, and features must stay additive.
#[non_exhaustive]
pub enum FileRef {
    /// One output file of a guest artifact, verified against `guests.lock` (feature
    /// `artifacts`).
    #[cfg(feature = "artifacts")]
    Artifact(ArtifactRef),
    /// The environment variable names the file (relative to the config's directory).
    Env(String),
    /// A path, relative to the config's directory unless absolute.
    Path(PathBuf),
}

/// Why a reference did not parse.
#[derive(Debug, thiserror::Error)]
pub enum FileRefError {
    /// A malformed `artifact:` reference.
    #[cfg(feature = "artifacts")]
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    /// `env:` without a variable name, or with characters no variable has.
    #[error("`{text}`: expected `env:VARIABLE` (letters, digits and `_`)")]
    Env {
        /// The reference as written.
        text: String,
    },
    /// An empty string.
    #[error("a file reference cannot be empty")]
    Empty,
    /// An `artifact:` reference in a vmharness built without the artifact store.
    #[cfg(not(feature = "artifacts"))]
    #[error(
        "`{text}`: this build of vmharness has no artifact store: enable the `artifacts` feature"
    )]
    NoArtifactStore {
        /// The reference as written.
        text: String,
    },
}

impl FromStr for FileRef {
    type Err = FileRefError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() {
            return Err(FileRefError::Empty);
        }
        #[cfg(feature = "artifacts")]
        if text.starts_with(ARTIFACT_PREFIX) {
            return Ok(FileRef::Artifact(text.parse()?));
        }
        // Not a path: the config means an artifact this build cannot resolve.
        #[cfg(not(feature = "artifacts"))]
        if text.starts_with("artifact:") {
            return Err(FileRefError::NoArtifactStore {
                text: text.to_string(),
            });
        }
        if let Some(var) = text.strip_prefix("env:") {
            let valid = !var.is_empty()
                && !var.starts_with(|c: char| c.is_ascii_digit())
                && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            return if valid {
                Ok(FileRef::Env(var.to_string()))
            } else {
                Err(FileRefError::Env {
                    text: text.to_string(),
                })
            };
        }
        Ok(FileRef::Path(PathBuf::from(text)))
    }
}

impl fmt::Display for FileRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            #[cfg(feature = "artifacts")]
            FileRef::Artifact(reference) => reference.fmt(f),
            FileRef::Env(var) => write!(f, "env:{var}"),
            FileRef::Path(path) => path.display().fmt(f),
        }
    }
}

impl<'de> Deserialize<'de> for FileRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for FileRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(feature = "artifacts")] // it names `artifact:` references
    fn parses_each_form_and_round_trips() {
        for text in [
            "artifact:linux-aarch64/vmlinuz",
            "env:MY_KERNEL",
            "bin/k.elf",
            "/abs",
        ] {
            let parsed: FileRef = text.parse().unwrap();
            assert_eq!(parsed.to_string(), text);
        }
        assert!(matches!("env:K".parse(), Ok(FileRef::Env(v)) if v == "K"));
    }

    #[test]
    fn rejects_malformed_references() {
        for text in [
            "",
            "artifact:x",
            "artifact:a/../b",
            "env:",
            "env:1X",
            "env:A-B",
        ] {
            assert!(text.parse::<FileRef>().is_err(), "{text}");
        }
    }
}
