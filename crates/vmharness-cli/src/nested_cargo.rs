//! Running cargo from inside a process that cargo started (xtask steps, frontend tests).
//!
//! cargo sets variables for the process it runs (`cargo run`, `cargo test`). Build scripts such
//! as ring's track some of them, so a nested cargo that inherits them rebuilds those crates, and
//! the next plain build rebuilds them again.

use std::process::Command;

/// Prefixes of the variables cargo sets for the process it runs.
pub const CARGO_RUN_ENV_PREFIXES: &[&str] = &[
    "CARGO_PKG_",
    "CARGO_MANIFEST_",
    "CARGO_CRATE_",
    "CARGO_BIN_",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "CARGO_RUSTC_CURRENT_DIR",
    "OUT_DIR",
];

/// Removes the variables in [`CARGO_RUN_ENV_PREFIXES`] from `command`'s environment.
pub fn scrub_cargo_run_env(command: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        if CARGO_RUN_ENV_PREFIXES
            .iter()
            .any(|prefix| name.starts_with(prefix))
        {
            command.env_remove(&key);
        }
    }
}
