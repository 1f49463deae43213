//! vmharness: boot operating systems and hypervisors in QEMU and judge them by their serial console.
//!
//! # Quick start
//!
//! Three files in your repository (they are `examples/out-of-tree/` in vmharness's repository,
//! which its CI runs):
//!
//! ```toml
//! # Cargo.toml
//! [dev-dependencies]
//! vmharness = { path = "../vmharness/harness" }   # or a git dependency
//!
//! [[test]]
//! name = "vm"
//! harness = false
//! ```
//!
//! ```no_run
//! // tests/vm.rs: every vm-configs/*.toml is a trial of `cargo test --test vm`
//! fn main() {
//!     vmharness::main()
//! }
//! ```
//!
//! ```toml
//! # vm-configs/hello-aarch64.toml
//! arch = "aarch64"
//!
//! [qemu]
//! kernel = "target/hello.elf"        # a path, `env:VAR`, or `artifact:NAME/FILE` (guests/*.toml)
//!
//! [console]
//! banner = ["^hello from an out-of-tree guest$", "^hello: done$"]
//! ```
//!
//! `cargo test --test vm -- hello`, `--list`, `--exact`, `--ignored` and `cargo nextest run`
//! work as for any test. A failure says what was expected, what matched, the console's last
//! lines, the QEMU command line and where the full log is. [`Suite`] selects configs for
//! several suites in one repository; [`run::run_file`] runs one config from your own code.
//! The config keys are in the README ("Writing a VM test"); `docs/adopting.md` walks a
//! repository's set-up, artifacts and CI.
//!
//! # How a run flows
//!
//! [`config`] loads a VM-config TOML (every value located),
//! [`settings`] reads the environment once, [`plan`] turns both into typed inputs, QEMU
//! settings, deadlines and expectations; [`run`] resolves the files (through `artifact` with
//! the default feature `artifacts`), builds the FAT32 image with [`disk`], lets [`accel`] pick
//! KVM or TCG, builds the [`qemu::QemuSpec`] (the only producer of QEMU's argv), boots it,
//! watches the serial output with [`console`] and judges it into an [`outcome::Outcome`];
//! [`suite`] makes every config a libtest-mimic trial and writes its [`suite::ResultRecord`].
//! [`remote`] runs QEMU on another host over OpenSSH.
//!
//! # What is public, and why
//!
//! The users are the frontends: `xtask` (`cargo xtask qemu`, `ci`, `guests`, benchmarks), the
//! `tests/` trial binaries and `harness/tests/`. Everything else is `pub(crate)`; the layers
//! and their import rule are in `docs/architecture.md`. The surface is pinned by
//! `harness/tests/public_api.rs` (a snapshot of every `pub` item), so it changes only on purpose.
//!
//! - [`suite`] (with [`main`] and [`Suite`] at the crate root): the front door, every VM
//!   config as a trial; the record (`result.toml`, `junit.xml`) that CI reads.
//! - [`run`]: running one config or one `[[case]]` from a frontend (`RunOptions`, `run`,
//!   `run_case`), the `FileResolver` seam, run directories, and the re-exported verdict words.
//! - [`outcome`]: the verdict (`Outcome`, `Report`, `RunError` with its cause chain) a frontend
//!   prints or checks.
//! - [`results`]: what the guest reported (sub-results, counts), as a report carries it.
//! - [`config`]: loading and checking a VM config, the schema users write.
//! - [`settings`]: the environment, typed (`Settings`), and the types of what it reads.
//! - [`plan`]: a config and settings as one run's typed plan (inputs, deadlines, expectations).
//! - [`arch`]: the arch table and the machine facts (`Accel`, `AccelChoice`, `QemuVersion`).
//! - [`qemu`]: the typed QEMU command (`QemuSpec`), its argv, binary lookup and version.
//! - [`accel`]: the KVM probe a frontend can run and show (`cargo xtask qemu --probe`).
//! - [`console`]: console input keys and the line splitting and ANSI stripping the judge uses.
//! - [`remote`]: `VMHARNESS_REMOTE` hosts and why a remote run could not be set up.
//! - [`artifact`] (feature `artifacts`): the guest artifact store (`Catalog`, cache, lock, recipes) for
//!   `cargo xtask guests` and the store's tests.
//! - [`fileref`]: `artifact:`, `env:` and path references as configs write them.
//! - [`disk`]: the FAT32 image builder and the `[disk]` spec (becoming a crate of its own).

#![warn(unreachable_pub)]
// The examples show a test file's whole `fn main`, which is the point of them.
#![allow(clippy::needless_doctest_main)]

pub mod accel;
pub mod arch;
#[cfg(feature = "artifacts")]
pub use vmharness_artifact as artifact;
pub mod config;
pub mod console;
pub(crate) use vmharness_digest as digest;
pub mod disk;
pub(crate) mod error;
pub(crate) mod evidence;
pub mod fileref;
pub(crate) mod note;
pub mod outcome;
pub(crate) mod paths;
pub mod plan;
pub mod qemu;
pub(crate) mod regular_file;
pub mod remote;
pub mod results;
pub mod run;
pub mod settings;
pub(crate) mod states;
pub mod suite;
pub use suite::{main, Suite};
pub(crate) mod temp;
