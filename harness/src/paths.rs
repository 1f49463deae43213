//! Where things live: the workspace root, the target directory, log and cache directories.
//!
//! Paths are resolved at run time, never from compile-time absolute paths, so an archived test
//! binary (`cargo nextest archive` + `--workspace-remap`) finds `vm-configs/` and `guests/`.

use std::path::{Path, PathBuf};

/// Environment variable that overrides the workspace root.
pub const ROOT_ENV: &str = "VMHARNESS_ROOT";
/// Environment variable that overrides the artifact cache directory.
pub const CACHE_ENV: &str = "VMHARNESS_CACHE";

/// The workspace root: `$VMHARNESS_ROOT`, else the nearest ancestor of `$CARGO_MANIFEST_DIR`
/// (set at run time by cargo and nextest) or of the current directory that holds `vm-configs/`.
pub fn workspace_root() -> PathBuf {
    if let Some(root) = std::env::var_os(ROOT_ENV) {
        return PathBuf::from(root);
    }
    let starts = [
        std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from),
        std::env::current_dir().ok(),
    ];
    for start in starts.into_iter().flatten() {
        if let Some(found) = start
            .ancestors()
            .find(|dir| dir.join("vm-configs").is_dir())
        {
            return found.to_path_buf();
        }
    }
    std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
}

/// The cargo target directory: `$CARGO_TARGET_DIR`, else `<root>/target`.
pub fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

/// Directory that holds vmharness's own state under the target directory.
pub fn state_dir(root: &Path) -> PathBuf {
    target_dir(root).join("vmharness")
}

/// The artifact cache: `$VMHARNESS_CACHE`, else `target/vmharness/cache`.
pub fn cache_dir(root: &Path) -> PathBuf {
    match std::env::var_os(CACHE_ENV) {
        Some(dir) => root.join(dir),
        None => state_dir(root).join("cache"),
    }
}

/// Directory for one test's logs: `target/vmharness/logs/<test>`.
pub fn log_dir(root: &Path, test_name: &str) -> PathBuf {
    state_dir(root).join("logs").join(test_name)
}
