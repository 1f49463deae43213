//! Checks before boot, so that a missing binary or file is an actionable error, not a hang.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use super::command::QemuCommand;

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
    /// Options that contradict each other.
    #[error("inconsistent QEMU options: {0}")]
    Inconsistent(String),
}

/// The Debian package that provides a QEMU system binary.
pub fn debian_package(binary: &str) -> Option<&'static str> {
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

/// Checks a command before it runs: resolves the binary (replacing it with its full path),
/// checks that files named by `-kernel`, `-initrd`, `-bios`, `-drive file=` exist, and that
/// `-cpu host` only comes with KVM.
pub fn preflight(command: &mut QemuCommand) -> Result<(), PreflightError> {
    let binary = command.binary().to_string_lossy().into_owned();
    let resolved = find_binary(&binary)?;
    command.set_binary(resolved);
    let args = command.get_args();
    for pair in args.windows(2) {
        let (option, value) = (pair[0].to_string_lossy(), &pair[1]);
        match option.as_ref() {
            "-kernel" | "-initrd" | "-bios" | "-pflash" => check_file(&option, value)?,
            "-drive" => {
                if let Some(file) = drive_file(value) {
                    check_file("-drive file=", OsStr::new(&file))?;
                }
            }
            _ => {}
        }
    }
    let cpu_host = command.value_of("-cpu").is_some_and(|cpu| cpu == "host");
    let kvm = command
        .value_of("-accel")
        .is_some_and(|accel| accel.to_string_lossy().starts_with("kvm"));
    if cpu_host && !kvm {
        return Err(PreflightError::Inconsistent(
            "`-cpu host` needs `-accel kvm`; under TCG pick a model such as `max`".into(),
        ));
    }
    Ok(())
}

fn check_file(option: &str, value: &OsStr) -> Result<(), PreflightError> {
    let path = Path::new(value);
    if path.exists() {
        Ok(())
    } else {
        Err(PreflightError::MissingFile {
            option: option.to_string(),
            path: path.to_path_buf(),
        })
    }
}

/// The `file=` value of a `-drive` option (QEMU escapes commas in values as `,,`).
fn drive_file(value: &OsStr) -> Option<String> {
    let text = value.to_string_lossy().replace(",,", "\u{0}");
    text.split(',')
        .find_map(|part| part.strip_prefix("file="))
        .map(|file| file.replace('\u{0}', ","))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn missing_kernel_is_reported_with_its_option() {
        let mut command = QemuCommand::new("sh");
        command.opt("-kernel", "/nonexistent/vmlinuz");
        let err = preflight(&mut command).unwrap_err().to_string();
        assert!(err.contains("`-kernel` file /nonexistent/vmlinuz"), "{err}");
    }

    #[test]
    fn drive_file_handles_escaped_commas() {
        assert_eq!(
            drive_file(OsStr::new("if=none,file=a,,b.img,format=raw")).unwrap(),
            "a,b.img"
        );
    }

    #[test]
    fn host_cpu_without_kvm_is_rejected() {
        let mut command = QemuCommand::new("sh");
        command.opt("-accel", "tcg").cpu("host");
        assert!(matches!(
            preflight(&mut command),
            Err(PreflightError::Inconsistent(_))
        ));
    }
}
