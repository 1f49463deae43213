//! Real guests we did not write (Debian's Linux kernel) failing for real: the harness must
//! call a kernel panic a Fail naming `Kernel panic - not syncing`, although QEMU exits 0 just
//! as after a clean power-off.
//!
//! These need the `linux-aarch64` artifact (built from Debian packages by
//! `cargo xtask guests build linux-aarch64`); when it cannot be obtained the test fails with
//! the reason rather than passing.

use vmharness::outcome::Outcome;
use vmharness::run::{self, Resolver, RunOptions};

fn run_linux_with(action: &str) -> vmharness::outcome::Report {
    let root = vmharness::paths::workspace_root();
    let config = root.join("vm-configs/linux-aarch64.toml");
    let overrides = [format!(
        "qemu.append=\"console=ttyAMA0 panic=-1 vmharness.action={action}\""
    )];
    let loaded = vmharness::config::load_with_overrides(&config, &overrides).expect("config loads");
    let logs = tempfile::tempdir().unwrap();
    let options = RunOptions {
        log_dir: Some(logs.path().join(action)),
        ..RunOptions::default()
    };
    run::run(&loaded, &Resolver::from_env(), options)
}

fn assert_kernel_panic(action: &str, detail: &str) {
    let report = run_linux_with(action);
    let Outcome::Fail { reason } = &report.outcome else {
        panic!("expected a Fail for vmharness.action={action}, got:\n{report}");
    };
    assert!(reason.contains("/Kernel panic - not syncing/"), "{reason}");
    assert!(reason.contains(detail), "{reason}");
    // The panic pattern decided, not QEMU's exit or a timeout.
    assert!(report.exit.is_none(), "{report}");
}

#[test]
fn sysrq_crash_is_a_kernel_panic_failure() {
    assert_kernel_panic("panic", "sysrq triggered crash");
}

#[test]
fn init_exiting_is_a_kernel_panic_failure() {
    assert_kernel_panic("exit", "Attempted to kill init");
}
