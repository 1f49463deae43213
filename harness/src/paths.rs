//! Where the workspace is, for callers that have no [`crate::settings::Settings`] (the
//! settings find it the same way).
//!
//! Paths are resolved at run time, never from compile-time absolute paths, so an archived test
//! binary (`cargo nextest archive` + `--workspace-remap`) finds `vm-configs/` and `guests/`.

use std::path::PathBuf;

/// The workspace root: `$VMHARNESS_ROOT`, else the nearest ancestor of `$CARGO_MANIFEST_DIR`
/// (set at run time by cargo and nextest) or of the current directory that holds `vm-configs/`.
pub(crate) fn workspace_root() -> PathBuf {
    match crate::settings::Settings::from_env() {
        Ok(settings) => settings.root,
        Err(_) => std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
    }
}
