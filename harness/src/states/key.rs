//! The content address of a saved state: everything that decides what the guest's state at
//! `[ready]` is, with every file by its sha256.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use vmharness_digest::Sha256;

use super::{Method, StateError};
use crate::config::Step;
use crate::plan::Expectations;
use crate::qemu::{QemuSpec, QemuVersion};

/// A state's key and the readable inputs it was computed from (kept in its `meta.toml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StateKey {
    /// Hex sha256 of `inputs`.
    pub hex: String,
    /// One line per input.
    pub inputs: Vec<String>,
}

impl StateKey {
    /// The key of booting `spec` (QMP socket aside) on `version` to the end of `boot`,
    /// saved with `method`.
    pub(crate) fn of(
        spec: &QemuSpec,
        version: &QemuVersion,
        method: Method,
        boot: &Expectations,
    ) -> Result<StateKey, StateError> {
        let binary = std::fs::metadata(&spec.binary).map_err(|source| StateError::Io {
            what: "reading",
            path: spec.binary.clone(),
            source,
        })?;
        let mut inputs = vec![
            "format 1".to_string(),
            format!(
                "qemu {} ({} bytes, modified {}.{:09}) {}",
                spec.binary.display(),
                binary.len(),
                binary.mtime(),
                binary.mtime_nsec(),
                version.line
            ),
            format!("method {}", method.name()),
        ];
        let mut failure = None;
        let mut plain = spec.map_files(|_, path| match sha256_file(path) {
            Ok(hex) => PathBuf::from(format!("sha256:{hex}")),
            Err(err) => {
                failure.get_or_insert(err);
                path.to_path_buf()
            }
        });
        if let Some(err) = failure {
            return Err(err);
        }
        plain.qmp = None;
        // The template's RAM file is the state's own, not an input.
        plain.ram_file = None;
        inputs.push(format!("argv {}", plain.argv().to_shell_line()));
        inputs.extend(boot.banner.iter().map(|p| format!("banner {p}")));
        inputs.extend(boot.steps.iter().map(describe));
        inputs.push(format!("line ending {:?}", boot.line_ending));
        let mut hasher = Sha256::new();
        for input in &inputs {
            hasher.update(input.as_bytes());
            hasher.update(b"\n");
        }
        Ok(StateKey {
            hex: hasher.finish_hex(),
            inputs,
        })
    }

    /// The first 16 hex digits, for names and reports.
    pub(crate) fn short(&self) -> &str {
        &self.hex[..16]
    }
}

/// A step as it changes the guest (its deadline does not).
fn describe(step: &Step) -> String {
    match step {
        Step::Expect { pattern, .. } => format!("expect {pattern}"),
        Step::ExpectNot { pattern, .. } => format!("expect_not {pattern}"),
        Step::Send { text, line } => format!("send {text:?} line={line}"),
    }
}

/// Hex sha256 of a file (hashed once per process while the file is unchanged).
pub(super) fn sha256_file(path: &Path) -> Result<String, StateError> {
    crate::digest::file_sha256(path).map_err(|source| StateError::Io {
        what: "reading",
        path: path.to_path_buf(),
        source,
    })
}
