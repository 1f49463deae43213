//! What the guest reported, as the collector and its parsers build it: sub-results
//! ([`SubResult`]), the counted and kept set ([`Results`]) and the text helpers they share.

use std::collections::BTreeMap;
use std::fmt;

/// How a sub-result ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SubStatus {
    /// It failed.
    Fail,
    /// Its output ended before its result (the guest crashed or hung in it).
    Crashed,
    /// It passed.
    Pass,
    /// It was skipped (`# SKIP`), or it is a known failure (`# TODO`).
    Skip,
}

impl SubStatus {
    /// Whether it makes the trial fail.
    pub fn is_failure(self) -> bool {
        matches!(self, SubStatus::Fail | SubStatus::Crashed)
    }

    /// PASS, FAIL, SKIP or CRASHED.
    pub fn label(self) -> &'static str {
        match self {
            SubStatus::Pass => "PASS",
            SubStatus::Fail => "FAIL",
            SubStatus::Skip => "SKIP",
            SubStatus::Crashed => "CRASHED",
        }
    }
}

/// One result a guest reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubResult {
    /// Its name; nested KTAP cases are `suite.case`.
    pub name: String,
    /// How it ended.
    pub status: SubStatus,
    /// Why, when it is not a plain pass (`exit code 1, expected 0`, a skip reason).
    pub detail: Option<String>,
    /// The console lines of the case (its diagnostics), at most [`EXCERPT_LINES`].
    pub excerpt: Vec<String>,
}

/// How many console lines of a case its sub-result keeps.
pub const EXCERPT_LINES: usize = 10;

/// Failing sub-results kept per run (the first ones, with their excerpts); more are counted.
pub const KEPT_FAILURES: usize = 1000;

/// Other sub-results (passes, skips) kept per run (the first ones); more are counted.
pub const KEPT_OTHERS: usize = 10_000;

/// A kept sub-result's name, detail and excerpt lines are cut to this many characters.
pub(crate) const FIELD_CHARS: usize = 500;

/// How many failing sub-results the verdict names; it counts the rest.
pub(crate) const VERDICT_NAMES: usize = 10;

/// Everything the guest reported in one run: every sub-result counted, the first
/// [`KEPT_FAILURES`] failures and [`KEPT_OTHERS`] others kept, so a guest printing a million
/// results cannot fill memory, `result.toml` or `junit.xml`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Results {
    /// The sub-results kept, in the order they ended.
    pub cases: Vec<SubResult>,
    /// Every sub-result, kept or not, per status.
    pub counts: Counts,
    /// Recorded values by name (the last capture wins).
    pub values: BTreeMap<String, String>,
    /// How many of `cases` are failures.
    pub(super) kept_failures: usize,
}

/// Counts per status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Passed.
    pub passed: usize,
    /// Failed.
    pub failed: usize,
    /// Crashed.
    pub crashed: usize,
    /// Skipped.
    pub skipped: usize,
}

impl Counts {
    /// `n` more of `status`.
    fn add(&mut self, status: SubStatus, n: usize) {
        let count = match status {
            SubStatus::Pass => &mut self.passed,
            SubStatus::Fail => &mut self.failed,
            SubStatus::Crashed => &mut self.crashed,
            SubStatus::Skip => &mut self.skipped,
        };
        *count = count.saturating_add(n);
    }

    /// All of them.
    pub fn total(&self) -> usize {
        self.passed
            .saturating_add(self.failed)
            .saturating_add(self.crashed)
            .saturating_add(self.skipped)
    }

    /// The failing ones (failed and crashed).
    pub fn failing(&self) -> usize {
        self.failed.saturating_add(self.crashed)
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} passed, {} failed, {} crashed, {} skipped",
            self.passed, self.failed, self.crashed, self.skipped
        )
    }
}

impl Results {
    /// The counts per status (every sub-result, kept or not).
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// How many sub-results were counted but not kept.
    pub fn not_kept(&self) -> usize {
        self.counts.total().saturating_sub(self.cases.len())
    }

    /// The kept sub-results that make the trial fail.
    pub fn failures(&self) -> Vec<&SubResult> {
        self.cases
            .iter()
            .filter(|c| c.status.is_failure())
            .collect()
    }

    /// Counts a sub-result, and keeps it if there is room for its kind.
    pub(crate) fn push(&mut self, case: SubResult) {
        self.counts.add(case.status, 1);
        self.keep(case);
    }

    /// Counts `n` sub-results of `status`; makes (`make(k)`) only those there is room for.
    pub(crate) fn push_many(
        &mut self,
        status: SubStatus,
        n: usize,
        mut make: impl FnMut(usize) -> SubResult,
    ) {
        self.counts.add(status, n);
        let room = match status.is_failure() {
            true => KEPT_FAILURES.saturating_sub(self.kept_failures),
            false => KEPT_OTHERS.saturating_sub(self.cases.len() - self.kept_failures),
        };
        for k in 0..n.min(room) {
            self.keep(make(k));
        }
    }

    /// Adds the sub-results of `other` after these (its counts whole, its cases while there
    /// is room).
    pub(crate) fn merge(&mut self, other: Results) {
        for status in [
            SubStatus::Pass,
            SubStatus::Fail,
            SubStatus::Crashed,
            SubStatus::Skip,
        ] {
            let n = match status {
                SubStatus::Pass => other.counts.passed,
                SubStatus::Fail => other.counts.failed,
                SubStatus::Crashed => other.counts.crashed,
                SubStatus::Skip => other.counts.skipped,
            };
            self.counts.add(status, n);
        }
        for case in other.cases {
            self.keep(case);
        }
        self.values.extend(other.values);
    }

    fn keep(&mut self, mut case: SubResult) {
        let failure = case.status.is_failure();
        let full = match failure {
            true => self.kept_failures >= KEPT_FAILURES,
            false => self.cases.len() - self.kept_failures >= KEPT_OTHERS,
        };
        if full {
            return;
        }
        self.kept_failures += usize::from(failure);
        cut_field(&mut case.name);
        if let Some(detail) = case.detail.as_mut() {
            cut_field(detail);
        }
        case.excerpt.iter_mut().for_each(cut_field);
        self.cases.push(case);
    }

    /// The verdict's reason when sub-results failed: counts and the first failing names.
    pub fn failure_reason(&self) -> Option<String> {
        let failing = self.counts.failing();
        if failing == 0 {
            return None;
        }
        let mut names: Vec<String> = self
            .failures()
            .iter()
            .take(VERDICT_NAMES)
            .map(|c| format!("{} ({})", c.name, c.status.label().to_lowercase()))
            .collect();
        let more = failing.saturating_sub(names.len());
        if more > 0 {
            names.push(format!("… and {more} more"));
        }
        Some(format!(
            "{failing} of {} sub-results failed ({}): {}",
            self.counts.total(),
            self.counts,
            names.join(", ")
        ))
    }
}

/// `text` cut to [`FIELD_CHARS`] characters (a console line kept for an excerpt).
pub(crate) fn field(text: &str) -> String {
    match text.char_indices().nth(FIELD_CHARS) {
        Some((end, _)) => format!("{} […]", &text[..end]),
        None => text.to_string(),
    }
}

/// Cuts `text` to [`FIELD_CHARS`] characters, marking the cut.
fn cut_field(text: &mut String) {
    if let Some((end, _)) = text.char_indices().nth(FIELD_CHARS) {
        text.truncate(end);
        text.push_str(" […]");
    }
}

/// The first match of `pattern` in `text` from `from` that reaches past `skip` (the carried
/// end of a cut line, already searched). With carried bytes, `text` does not start at a line
/// start, so `^` must not match at its beginning: the search starts after its first character.
pub(crate) fn captures_past<'t>(
    pattern: &regex::Regex,
    text: &'t str,
    skip: usize,
    from: usize,
) -> Option<regex::Captures<'t>> {
    let mut at = from;
    if skip > 0 {
        at = at.max(text.chars().next().map_or(0, char::len_utf8));
    }
    while at <= text.len() {
        let captures = pattern.captures_at(text, at)?;
        let found = captures.get(0)?;
        if found.end() > skip {
            return Some(captures);
        }
        // Wholly inside the carried bytes: seen with the previous piece.
        at = found.start() + 1;
        while at < text.len() && !text.is_char_boundary(at) {
            at += 1;
        }
    }
    None
}

/// Keeps the last [`EXCERPT_LINES`] of `lines`.
pub(crate) fn excerpt(lines: &[String]) -> Vec<String> {
    lines[lines.len().saturating_sub(EXCERPT_LINES)..].to_vec()
}
