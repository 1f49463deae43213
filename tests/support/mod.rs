//! Helpers shared by the frontend tests: the built xtask binary and the selftest guests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use vmharness::arch::Arch;
use vmharness::run::{FileResolver, Resolver};
use vmharness::settings::Settings;

/// The xtask binary, built once per test process (the outer `cargo test` holds no lock now),
/// with the selftest guests of every arch built into the cache.
pub fn xtask() -> &'static PathBuf {
    static XTASK: OnceLock<PathBuf> = OnceLock::new();
    XTASK.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .args(["build", "--quiet", "-p", "xtask"])
            .current_dir(&root);
        vmharness_cli::nested_cargo::scrub_cargo_run_env(&mut build);
        let status = build.status().expect("run cargo build -p xtask");
        assert!(status.success(), "cargo build -p xtask failed");
        let xtask = Settings::from_env()
            .expect("usable environment")
            .target_dir
            .join("debug")
            .join("xtask");
        let status = Command::new(&xtask)
            .args(["guests", "build"])
            .args(Arch::ALL.map(|arch| format!("selftest-{arch}")))
            .stdout(Stdio::null())
            .status()
            .expect("run xtask guests build");
        assert!(status.success(), "building the selftest guests failed");
        xtask
    })
}

/// The selftest guest for `arch`, resolved (and verified) through the guest catalog.
pub fn selftest_elf(arch: Arch) -> PathBuf {
    let reference = format!("artifact:selftest-{arch}/selftest.elf")
        .parse()
        .expect("a valid reference");
    Resolver::from_env()
        .artifact(&reference)
        .unwrap_or_else(|failure| panic!("selftest guest unavailable: {failure:?}"))
}

/// The `vmharness-cli` binaries (`vmharness`, `cargo-vmharness`), built once per test process;
/// returns their directory.
pub fn cli_bins() -> &'static PathBuf {
    static BINS: OnceLock<PathBuf> = OnceLock::new();
    BINS.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .args(["build", "--quiet", "-p", "vmharness-cli", "--bins"])
            .current_dir(root());
        vmharness_cli::nested_cargo::scrub_cargo_run_env(&mut build);
        let status = build.status().expect("run cargo build -p vmharness-cli");
        assert!(
            status.success(),
            "cargo build -p vmharness-cli --bins failed"
        );
        Settings::from_env()
            .expect("usable environment")
            .target_dir
            .join("debug")
    })
}

/// `cargo test -q --test boot -- <args>` over the configs of `root` (`VMHARNESS_ROOT`), run
/// from this package with cargo's own variables scrubbed.
pub fn boot_suite(root: &Path, args: &[&str]) -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    vmharness_cli::nested_cargo::scrub_cargo_run_env(&mut command);
    command
        .args(["test", "-q", "--test", "boot", "--"])
        .args(args)
        .env("VMHARNESS_ROOT", root)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    command
}

/// The workspace root (this package's directory).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
