//! The content address of a saved state: everything that decides what the guest's state at
//! `[ready]` is, with every file by its sha256.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::{Method, StateError};
use crate::config::Step;
use crate::qemu::{QemuSpec, QemuVersion};
use crate::run::Expectations;

/// A state's key and the readable inputs it was computed from (kept in its `meta.toml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateKey {
    /// Hex sha256 of `inputs`.
    pub hex: String,
    /// One line per input.
    pub inputs: Vec<String>,
}

impl StateKey {
    /// The key of booting `spec` (QMP socket aside) on `version` to the end of `boot`,
    /// saved with `method`.
    pub fn of(
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
            hex: hex::encode(hasher.finalize()),
            inputs,
        })
    }

    /// The first 16 hex digits, for names and reports.
    pub fn short(&self) -> &str {
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

/// Hex sha256 of a file, remembered per (path, size, mtime, inode) within the process.
pub fn sha256_file(path: &Path) -> Result<String, StateError> {
    type Seen = HashMap<(PathBuf, u64, i64, i64, u64), String>;
    static SEEN: Mutex<Option<Seen>> = Mutex::new(None);
    let io = |what, source| StateError::Io {
        what,
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(|e| io("reading", e))?;
    let id = (
        path.to_path_buf(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ino(),
    );
    if let Some(hex) = SEEN
        .lock()
        .ok()
        .and_then(|seen| seen.as_ref()?.get(&id).cloned())
    {
        return Ok(hex);
    }
    let mut file = std::fs::File::open(path).map_err(|e| io("opening", e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| io("reading", e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let hex = hex::encode(hasher.finalize());
    if let Ok(mut seen) = SEEN.lock() {
        seen.get_or_insert_with(HashMap::new)
            .insert(id, hex.clone());
    }
    Ok(hex)
}
