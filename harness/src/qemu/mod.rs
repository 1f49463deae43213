//! Launching QEMU: the typed spec that is the only producer of its argv, preflight checks,
//! and the process handle.

mod argv;
mod preflight;
mod process;
mod qmp;
mod spec;
mod version;

pub use crate::arch::{Accel, QemuVersion, HOST_CPU};
pub use argv::{shell_quote, Argv};
pub use preflight::{debian_package, find_binary, preflight, regular_input, PreflightError};
pub use process::{ExitStatus, QemuProcess, SpawnError, Transport};
pub use qmp::{Qmp, QmpError};
pub use spec::{DiskAttachment, ExtraArg, FileOption, Loader, QemuSpec, SpecFile, DISK_DRIVE_ID};
pub use version::{version, VersionError};
