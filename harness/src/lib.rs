//! vmharness: boot operating systems and hypervisors in QEMU and judge them by their serial console.
//!
//! The flow for one VM test: [`config`] loads a VM-config TOML (every value located),
//! [`settings`] reads the environment once, [`plan`] turns both into typed inputs, QEMU
//! settings, deadlines and expectations; [`run`] resolves the files through [`artifact`],
//! builds the FAT32 image with [`disk`], lets [`accel`] pick KVM or TCG, builds the
//! [`qemu::QemuSpec`] (the only producer of QEMU's argv), boots it, watches the serial output
//! with [`console`] and judges it into an [`outcome::Outcome`]; [`suite`] makes every config a
//! libtest-mimic trial and writes its [`suite::ResultRecord`]. [`remote`] runs QEMU on another
//! host over OpenSSH.

#![warn(unreachable_pub)]

pub mod accel;
pub mod arch;
pub mod artifact;
pub mod config;
pub mod console;
pub mod digest;
// The FAT32 writer is being split into its own crate (issue 22); its internals keep `pub`.
#[allow(unreachable_pub)]
pub mod disk;
pub(crate) mod error;
pub(crate) mod evidence;
pub mod fileref;
pub mod nested_cargo;
pub(crate) mod note;
pub mod outcome;
pub mod paths;
pub mod plan;
pub mod qemu;
pub mod regular_file;
pub mod remote;
pub mod results;
pub mod run;
pub mod settings;
pub mod states;
pub mod suite;
pub(crate) mod temp;
