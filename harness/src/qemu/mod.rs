//! Launching QEMU: the typed command line, preflight checks, and the process handle.

mod command;
mod preflight;
mod process;

pub use command::QemuCommand;
pub use preflight::{find_binary, preflight, PreflightError};
pub use process::{ExitStatus, QemuProcess, SpawnError};
