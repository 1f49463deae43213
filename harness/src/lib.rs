//! vmharness: boot operating systems and hypervisors in QEMU and judge them by their serial console.
//!
//! The flow for one VM test: [`config`] loads a VM-config TOML into a validated plan,
//! [`artifact`] resolves the guest files it names, [`disk`] builds its FAT32 image,
//! [`accel`] picks KVM or TCG, [`qemu`] launches QEMU on a pty, [`console`] watches the serial
//! output, [`run`] turns it into an [`outcome::Outcome`], and [`suite`] makes every config a
//! libtest-mimic trial.
//! [`remote`] runs QEMU on another host over OpenSSH.

pub mod accel;
pub mod arch;
pub mod artifact;
pub mod config;
pub mod console;
pub mod disk;
pub mod nested_cargo;
pub mod outcome;
pub mod paths;
pub mod qemu;
pub mod remote;
pub mod run;
pub mod suite;
