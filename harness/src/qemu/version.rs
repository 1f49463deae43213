//! Which QEMU a binary is: `qemu-system-x86_64 --version`, asked once per binary and process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::arch::QemuVersion;

/// Why a binary's version is not known.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    /// It could not be run.
    #[error("cannot run `{} --version`", binary.display())]
    Run {
        /// The binary.
        binary: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It printed something else.
    #[error("`{} --version` printed no QEMU version: {output:?}", binary.display())]
    Unparsable {
        /// The binary.
        binary: PathBuf,
        /// Its first line.
        output: String,
    },
}

/// The version of the QEMU at `binary` (asked once per process).
pub fn version(binary: &Path) -> Result<QemuVersion, VersionError> {
    static SEEN: Mutex<Option<HashMap<PathBuf, QemuVersion>>> = Mutex::new(None);
    if let Some(known) = SEEN
        .lock()
        .ok()
        .and_then(|seen| seen.as_ref()?.get(binary).cloned())
    {
        return Ok(known);
    }
    let output = std::process::Command::new(binary)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|source| VersionError::Run {
            binary: binary.to_path_buf(),
            source,
        })?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = QemuVersion::parse(&text).ok_or_else(|| VersionError::Unparsable {
        binary: binary.to_path_buf(),
        output: text.lines().next().unwrap_or("").to_string(),
    })?;
    if let Ok(mut seen) = SEEN.lock() {
        seen.get_or_insert_with(HashMap::new)
            .insert(binary.to_path_buf(), version.clone());
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_of_the_releases_users_have_parse() {
        for (text, numbers) in [
            (
                "QEMU emulator version 7.2.19 (Debian 1:7.2+dfsg-7+deb12u16)\nCopyright",
                (7, 2, 19),
            ),
            (
                "QEMU emulator version 8.2.2 (Debian 1:8.2.2+ds-0ubuntu1.4)",
                (8, 2, 2),
            ),
            (
                "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-1~bpo12+1)",
                (10, 0, 2),
            ),
            (
                "QEMU emulator version 9.1.50 (v9.1.0-1234-gabc)",
                (9, 1, 50),
            ),
            ("QEMU emulator version 10.1", (10, 1, 0)),
        ] {
            let version = QemuVersion::parse(text).unwrap();
            assert_eq!(version.numbers, numbers, "{text}");
        }
        assert!(QemuVersion::parse("not qemu").is_none());
        let v = QemuVersion::parse("QEMU emulator version 8.2.2").unwrap();
        assert!(v.at_least(8, 2) && v.at_least(7, 2) && !v.at_least(9, 0));
    }
}
