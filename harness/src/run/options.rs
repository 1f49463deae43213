//! What a frontend passes to one run ([`RunOptions`]) and what the run has ready before QEMU
//! starts ([`Prepared`]).

use std::path::PathBuf;

use crate::config::AccelChoice;
use crate::console::ConsoleInput;
use crate::note::Note;
use crate::outcome::RunError;
use crate::plan::Plan;
use crate::plan::{Expectations, Timeouts};
use crate::qemu::QemuSpec;
use crate::settings::{Remote, Settings};
use crate::temp::RunTemp;

/// Knobs a frontend may turn for one run.
#[derive(Default)]
pub struct RunOptions {
    /// The settings to run with (default: [`Settings::from_env`]).
    pub settings: Option<Settings>,
    /// Overrides the config's `accel` and `VMHARNESS_ACCEL`.
    pub accel: Option<AccelChoice>,
    /// Extra QEMU arguments appended after the config's.
    pub extra_args: Vec<String>,
    /// Replaces the config's kernel command line.
    pub append: Option<String>,
    /// Disables every timeout (for debugging with `--gdb`).
    pub no_timeouts: bool,
    /// Receives the cleaned console bytes as they arrive (e.g. a terminal).
    pub tee: Option<Box<dyn std::io::Write + Send>>,
    /// Overrides the log directory (default `target/vmharness/logs/<test>`).
    pub log_dir: Option<PathBuf>,
    /// Runs QEMU on this host over ssh (default: the settings' `remote`, else locally).
    pub remote: Option<Remote>,
    /// Keyboard input for an interactive session. With input, a verdict does not end the run:
    /// the console stays attached until QEMU exits or the escape key is pressed, and the
    /// verdict reached first is reported.
    pub input: Option<ConsoleInput>,
}

/// Everything needed before QEMU starts.
pub struct Prepared {
    /// The checked QEMU spec (local paths; remote staging maps them).
    pub spec: QemuSpec,
    /// Setup notes (KVM fallback and the like).
    pub notes: Vec<Note>,
    /// The verdict expectations.
    pub expectations: Expectations,
    /// Scaled deadlines.
    pub timeouts: Timeouts,
    /// Private temp dir (disk images); removed when dropped or on SIGTERM/SIGINT/SIGHUP.
    pub temp: RunTemp,
    /// What the guest reports about its own tests (`[results]`).
    pub results: Option<crate::config::ResultsSection>,
    /// The ELF to symbolize guest addresses with (`symbols`, else the kernel).
    pub symbols: Option<PathBuf>,
    /// The plan it was made from.
    pub plan: Plan,
}

/// The settings a run uses: the frontend's, else the environment's.
pub(super) fn settings(options: &RunOptions) -> Result<Settings, RunError> {
    match &options.settings {
        Some(settings) => Ok(settings.clone()),
        None => Ok(Settings::from_env()?),
    }
}
