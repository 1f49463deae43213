//! Launching QEMU: the typed spec that is the only producer of its argv, preflight checks,
//! and the process handle.

mod argv;
mod preflight;
mod process;
mod qmp;
mod ram;
mod spec;
mod version;

pub use crate::arch::{Accel, QemuVersion, HOST_CPU};
pub(crate) use argv::shell_quote;
pub use argv::Argv;
pub use preflight::{find_binary, PreflightError};
pub(crate) use preflight::{preflight, regular_input};
pub use process::{ExitStatus, SpawnError};
pub(crate) use process::{QemuProcess, Transport};
pub(crate) use qmp::Qmp;
pub use qmp::QmpError;
pub(crate) use ram::memory_bytes;
pub use ram::{RamFile, RamMapping};
pub use spec::{DiskAttachment, ExtraArg, FileOption, Loader, QemuSpec};
pub use version::{version, VersionError};
