//! Checks before boot, so that a missing binary or file is an actionable error, not a hang.

use std::path::{Path, PathBuf};

use super::spec::QemuSpec;
use crate::config::Location;
use crate::regular_file::FileKind;

/// A problem found before QEMU was started.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// The QEMU binary is not on `PATH` (or not at the given path).
    #[error("QEMU binary `{binary}` not found{}", install_hint(binary))]
    BinaryNotFound {
        /// The binary as configured.
        binary: String,
    },
    /// A file named by a QEMU option does not exist.
    #[error("`{option}` file {} does not exist", path.display())]
    MissingFile {
        /// The QEMU option that names the file.
        option: String,
        /// The missing path.
        path: PathBuf,
    },
    /// A file input that exists but is not a regular file: a FIFO would block QEMU (or a
    /// copy to a remote host) forever, `/dev/zero` never ends, a directory is no image.
    #[error("{location}: `{what}` {}: {kind}, not a regular file", path.display())]
    NotRegularFile {
        /// Where the config names it.
        location: Location,
        /// How it is used (`-kernel`, `symbols`, `[disk] /x`).
        what: String,
        /// The resolved path.
        path: PathBuf,
        /// What it is instead.
        kind: FileKind,
    },
}

impl PreflightError {
    /// Whether the test definition is wrong (a file it names), rather than the machine.
    pub(crate) fn is_mistake(&self) -> bool {
        !matches!(self, PreflightError::BinaryNotFound { .. })
    }
}

/// The Debian package that provides a QEMU system binary.
pub(crate) fn debian_package(binary: &str) -> Option<&'static str> {
    let name = Path::new(binary).file_name()?.to_str()?;
    match name {
        "qemu-system-x86_64" | "qemu-system-i386" => Some("qemu-system-x86"),
        "qemu-system-aarch64" | "qemu-system-arm" => Some("qemu-system-arm"),
        "qemu-system-riscv64" | "qemu-system-riscv32" => Some("qemu-system-misc"),
        _ => None,
    }
}

fn install_hint(binary: &str) -> String {
    match debian_package(binary) {
        Some(package) => {
            format!(": install it with `sudo apt-get install -y --no-install-recommends {package}`")
        }
        None => String::new(),
    }
}

/// Finds a binary: a path with a `/` is taken as is, a bare name is looked up on `PATH`.
pub fn find_binary(binary: &str) -> Result<PathBuf, PreflightError> {
    let not_found = || PreflightError::BinaryNotFound {
        binary: binary.to_string(),
    };
    if binary.contains('/') {
        let path = PathBuf::from(binary);
        return is_executable(&path).then_some(path).ok_or_else(not_found);
    }
    let path_var = std::env::var_os("PATH").ok_or_else(not_found)?;
    std::env::split_paths(&path_var)
        .map(|dir| dir.join(binary))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(not_found)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Checks that an input the config names at `location` is a regular file (or a directory,
/// where `directory_ok`). A missing file passes: [`preflight`] and the disk builder name it.
pub(crate) fn regular_input(
    what: &dyn std::fmt::Display,
    location: impl FnOnce() -> Location,
    path: &Path,
    directory_ok: bool,
) -> Result<(), PreflightError> {
    let Ok(metadata) = std::fs::metadata(path) else {
        return Ok(());
    };
    match FileKind::of(&metadata) {
        None | Some(FileKind::Directory) if directory_ok => Ok(()),
        None => Ok(()),
        Some(kind) => Err(PreflightError::NotRegularFile {
            location: location(),
            what: what.to_string(),
            path: path.to_path_buf(),
            kind,
        }),
    }
}

/// Checks that every file the spec makes QEMU open exists: a missing one is an actionable error
/// before boot, not a QEMU exit the console has to explain.
pub(crate) fn preflight(spec: &QemuSpec) -> Result<(), PreflightError> {
    match spec.files().into_iter().find(|file| !file.path.exists()) {
        Some(file) => Err(PreflightError::MissingFile {
            option: file.option.to_string(),
            path: file.path.to_path_buf(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qemu::{Accel, ExtraArg};

    #[test]
    fn missing_binary_names_the_package() {
        let err = find_binary("/nonexistent/qemu-system-aarch64").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("apt-get install -y --no-install-recommends qemu-system-arm"),
            "{text}"
        );
    }

    #[test]
    fn missing_files_are_reported_with_their_option() {
        let dir = tempfile::tempdir().unwrap();
        let present = dir.path().join("vmlinuz");
        std::fs::write(&present, b"k").unwrap();
        let mut spec = QemuSpec::new("q", "virt", Accel::Tcg, "max", "1G");
        spec.kernel = Some(present);
        assert!(preflight(&spec).is_ok());
        spec.pflash.push("/nonexistent/VARS.fd".into());
        let err = preflight(&spec).unwrap_err().to_string();
        assert_eq!(err, "`-pflash` file /nonexistent/VARS.fd does not exist");
        spec.pflash.clear();
        spec.extra = ExtraArg::parse_all(&["-drive".into(), "file=/nonexistent/d.img".into()]);
        let err = preflight(&spec).unwrap_err().to_string();
        assert!(
            err.contains("`-drive file=` file /nonexistent/d.img"),
            "{err}"
        );
    }
}
