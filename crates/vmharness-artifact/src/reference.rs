//! `artifact:<name>/<file>`: how VM configs name one file of one artifact.

use std::fmt;
use std::str::FromStr;

use super::error::ArtifactError;
use super::recipe::check_relative;

/// The prefix that marks an artifact reference.
pub const PREFIX: &str = "artifact:";

/// A reference to one output file of one artifact, e.g. `artifact:linux-aarch64/vmlinuz`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ArtifactRef {
    /// The artifact name.
    pub name: String,
    /// The output file (may contain `/` for nested outputs).
    pub file: String,
}

impl FromStr for ArtifactRef {
    type Err = ArtifactError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| ArtifactError::BadReference {
            reference: text.to_string(),
            reason: reason.to_string(),
        };
        let rest = text
            .strip_prefix(PREFIX)
            .ok_or_else(|| bad("must start with `artifact:`"))?;
        let (name, file) = rest
            .split_once('/')
            .ok_or_else(|| bad("expected `artifact:<name>/<file>`"))?;
        if name.is_empty() {
            return Err(bad("the artifact name is empty"));
        }
        check_relative(file).map_err(|why| bad(&format!("the file part {why}")))?;
        Ok(ArtifactRef {
            name: name.to_string(),
            file: file.to_string(),
        })
    }
}

impl fmt::Display for ArtifactRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}/{}", self.name, self.file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays() {
        let r: ArtifactRef = "artifact:linux-aarch64/boot/vmlinuz".parse().unwrap();
        assert_eq!(r.name, "linux-aarch64");
        assert_eq!(r.file, "boot/vmlinuz");
        assert_eq!(r.to_string(), "artifact:linux-aarch64/boot/vmlinuz");
    }

    #[test]
    fn rejects_malformed() {
        for text in [
            "linux/vmlinuz",
            "artifact:linux",
            "artifact:/x",
            "artifact:a/",
            "artifact:a/../x",
            "artifact:a//etc",
        ] {
            let err = text.parse::<ArtifactRef>().unwrap_err();
            assert!(
                matches!(err, ArtifactError::BadReference { .. }),
                "{text}: {err}"
            );
        }
    }
}
