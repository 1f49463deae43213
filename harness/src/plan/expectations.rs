//! [`Expectations`]: what the judge looks for on the console, built by the plan from a config
//! (and, for `[[case]]`s, from one part of it).

use std::time::Duration;

use regex::Regex;

use crate::config::{Pattern, Step};

/// Failure patterns that are always on.
/// (Plain text that is also a valid regex, so messages show it as written.)
pub(crate) const DEFAULT_PANIC_PATTERNS: &[&str] = &[
    "panicked at",
    "Panicked at",
    "Kernel panic - not syncing",
    "Internal error: Oops",
];

/// What the judge needs from a config.
#[derive(Debug, Clone)]
pub struct Expectations {
    /// Banner regexes, in order.
    pub banner: Vec<Pattern>,
    /// Interaction steps, in order.
    pub steps: Vec<Step>,
    /// Success pattern, after banner and steps.
    pub success: Option<Pattern>,
    /// Failure patterns (defaults plus the config's).
    pub panic_patterns: Vec<Regex>,
    /// Lines that never count as failures.
    pub allow: Vec<Regex>,
    /// Expected guest exit code when QEMU exits on its own.
    pub exit_code: i32,
    /// Default deadline for each expectation (already scaled).
    pub step_timeout: Duration,
    /// Appended by `send_line` steps.
    pub line_ending: String,
    /// Pass as soon as the last step is met, without `success` or an exit (a `[[case]]`).
    pub pass_after_steps: bool,
}
