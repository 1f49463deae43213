//! Results the guest reports itself: KTAP (`ktap`), cases delimited by patterns of the
//! config (`cases`), and recorded values. A [`Collector`] sees every console line next to the
//! judge; [`Results`] is what it found, with the cases that failed first in the report.

mod cases;
mod ktap;

use std::collections::BTreeMap;
use std::fmt;

use crate::config::ResultsSection;
use crate::console::CARRY_BYTES;

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
    kept_failures: usize,
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

/// A recorded-value pattern: every named group of a match is kept.
#[derive(Debug, Clone)]
struct Record(regex::Regex);

/// Watches every console line for results, next to the judge.
///
/// Lines longer than the console's cap arrive in pieces. Only a real line start begins a
/// KTAP line or lets a `^` match; a pattern is still found wherever the line was cut, because
/// the end of a cut piece is carried into matching the next (as the judge does).
#[derive(Debug)]
pub struct Collector {
    ktap: Option<ktap::Parser>,
    cases: Option<cases::Matcher>,
    records: Vec<Record>,
    values: BTreeMap<String, String>,
    /// The line the last piece cut, when the next piece continues it.
    cut: Option<Cut>,
}

/// The end of a cut line, carried into the next piece.
#[derive(Debug)]
struct Cut {
    /// Its last bytes (at most [`CARRY_BYTES`]).
    carry: String,
    /// Where in `carry` a case pattern's match already ended (matching goes on from there).
    consumed: usize,
}

impl Collector {
    /// A collector for the config's `[results]`, if it has one.
    pub fn new(section: &ResultsSection) -> Collector {
        Collector {
            ktap: section.ktap.then(ktap::Parser::default),
            cases: section.cases.as_ref().map(cases::Matcher::new),
            records: section.record.iter().map(|p| Record(p.0.clone())).collect(),
            values: BTreeMap::new(),
            cut: None,
        }
    }

    /// Sees one console line.
    pub fn line(&mut self, text: &str) {
        self.piece(text, false);
    }

    /// Sees one piece of the console: a whole line, or (`cut`) a piece of an overlong line
    /// that the next piece continues.
    pub(crate) fn piece(&mut self, text: &str, cut: bool) {
        let (joined, skip, from) = match self.cut.take() {
            None => (std::borrow::Cow::Borrowed(text), 0, 0),
            Some(Cut { carry, consumed }) => {
                let skip = carry.len();
                (std::borrow::Cow::Owned(carry + text), skip, consumed)
            }
        };
        if skip == 0 {
            // Only a line's start is a KTAP line: what follows a cut is part of that line.
            if let Some(ktap) = &mut self.ktap {
                ktap.line(text);
            }
        }
        let consumed = match &mut self.cases {
            Some(cases) => cases.piece(&joined, skip, from),
            None => 0,
        };
        for Record(pattern) in &self.records {
            let Some(captures) = captures_past(pattern, &joined, skip, 0) else {
                continue;
            };
            for name in pattern.capture_names().flatten() {
                if let Some(value) = captures.name(name) {
                    self.values
                        .insert(name.to_string(), value.as_str().to_string());
                }
            }
        }
        if cut {
            let mut keep = joined.len().saturating_sub(CARRY_BYTES);
            while !joined.is_char_boundary(keep) {
                keep += 1;
            }
            self.cut = Some(Cut {
                carry: joined[keep..].to_string(),
                consumed: consumed.saturating_sub(keep),
            });
        }
    }

    /// The results once the console has ended (cases still open are crashed).
    pub fn finish(self) -> Results {
        let mut results = Results {
            values: self.values,
            ..Results::default()
        };
        if let Some(ktap) = self.ktap {
            results.merge(ktap.finish());
        }
        if let Some(matcher) = self.cases {
            results.merge(matcher.finish());
        }
        results
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::{LineSplitter, MAX_LINE_BYTES};

    /// What a collector for `section` (TOML) finds in `console`, split as the session splits.
    fn collect(section: &str, console: &str) -> Results {
        let section: ResultsSection = toml::from_str(section).unwrap();
        let mut collector = Collector::new(&section);
        let mut splitter = LineSplitter::default();
        let mut pieces = Vec::new();
        splitter.feed(console.as_bytes(), &mut pieces);
        for piece in &pieces {
            collector.piece(&piece.text, piece.cut);
        }
        collector.finish()
    }

    fn summary(results: &Results) -> Vec<String> {
        results
            .cases
            .iter()
            .map(|c| format!("{} {}", c.status.label(), c.name))
            .collect()
    }

    /// Results by the hundred thousand are all counted, a bounded few kept (the first
    /// failures before the rest), and the verdict names a few of the failures.
    #[test]
    fn many_results_are_counted_and_few_kept() {
        let section: ResultsSection = toml::from_str("ktap = true").unwrap();
        let mut collector = Collector::new(&section);
        collector.line("KTAP version 1");
        collector.line("1..200000");
        let long = "n\"&<".repeat(4000);
        for i in 1..=200_000 {
            // Some names and diagnostics as long as a console line may be.
            let long = if i % 1000 == 0 { long.as_str() } else { "" };
            collector.line(&format!("# diagnostic {i} {long}"));
            let verdict = if i % 10 == 0 { "not ok" } else { "ok" };
            collector.line(&format!("{verdict} {i} case_{i}_{long}"));
        }
        let results = collector.finish();
        let counts = results.counts();
        assert_eq!((counts.passed, counts.failed), (180_000, 20_000));
        assert!(results.cases.len() <= 11_000, "{}", results.cases.len());
        let kept_failures = results
            .cases
            .iter()
            .filter(|c| c.status.is_failure())
            .count();
        assert_eq!(kept_failures, 1000);
        for case in &results.cases {
            assert!(case.name.len() <= 600, "{}", case.name.len());
            assert!(case.excerpt.iter().all(|l| l.len() <= 600));
        }
        let reason = results.failure_reason().unwrap();
        assert!(reason.len() < 8 * 1024, "{} bytes", reason.len());
        assert!(
            reason.starts_with("20000 of 200000 sub-results failed"),
            "{reason}"
        );
        assert!(reason.ends_with(" and 19990 more"), "{reason}");
    }

    /// A plan promising millions (or a trillion) results, none of them printed: all counted as
    /// crashed, a bounded few made.
    #[test]
    fn a_huge_plan_is_counted_not_made() {
        let section: ResultsSection = toml::from_str("ktap = true").unwrap();
        for planned in [2_000_000_usize, 1_000_000_000_000] {
            let mut collector = Collector::new(&section);
            collector.line("KTAP version 1");
            collector.line(&format!("1..{planned}"));
            collector.line("ok 1 only");
            let results = collector.finish();
            assert_eq!(results.counts().crashed, planned - 1);
            assert!(results.cases.len() <= 11_000, "{}", results.cases.len());
        }
    }

    /// Filler lengths that put the line cap before, inside and after what follows them, one and
    /// two caps into the line.
    fn around_the_cut(what: &str) -> impl Iterator<Item = usize> {
        let reach = what.len() + 12;
        [MAX_LINE_BYTES, 2 * MAX_LINE_BYTES]
            .into_iter()
            .flat_map(move |cap| cap - reach..=cap + reach)
    }

    /// The pieces of an overlong line are no lines: text that starts a piece after the cut is
    /// never a KTAP result, plan or version line, wherever the cut falls (with and without
    /// the kernel's timestamp column).
    #[test]
    fn a_cut_line_never_begins_a_ktap_result() {
        for prefix in ["", "[    1.000000] "] {
            let bogus = format!("{prefix}not ok 2 bogus");
            for filler in around_the_cut(&bogus) {
                let console = format!(
                    "{prefix}KTAP version 1\n{prefix}1..2\n{prefix}ok 1 first\n{prefix}# {x}{bogus}\n\
                     {prefix}# {x}1..9\n{prefix}# {x}{prefix}    # Subtest: nested\n{prefix}ok 2 second\n",
                    x = "x".repeat(filler),
                );
                let results = collect("ktap = true", &console);
                assert_eq!(
                    summary(&results),
                    ["PASS first", "PASS second"],
                    "prefix {prefix:?}, filler {filler}"
                );
            }
        }
    }

    /// The same for `[results.cases]` patterns: `^` is the start of the real line, and an
    /// unanchored pattern is found once wherever the cut falls inside it.
    #[test]
    fn a_cut_line_never_begins_a_pattern_case() {
        let section = r#"
            [cases]
            end = '^\[(?P<status>PASS|FAIL)\] (?P<name>\S+)$'
            "#;
        let bogus = "[FAIL] bogus";
        for filler in around_the_cut(bogus) {
            let console = format!("[PASS] one\n{}{bogus}\n[PASS] two\n", "x".repeat(filler));
            let results = collect(section, &console);
            assert_eq!(
                summary(&results),
                ["PASS one", "PASS two"],
                "filler {filler}"
            );
        }
        let section = r#"
            record = ['took (?P<ms>\d+) ms']
            [cases]
            end = "case '(?P<name>[a-z]+)' exited with code (?P<code>\\d+)\\."
            "#;
        let inside = "case 'deep' exited with code 1.";
        for filler in around_the_cut(inside) {
            let console = format!("{}{inside} took 42 ms\n", "x".repeat(filler));
            let results = collect(section, &console);
            assert_eq!(summary(&results), ["FAIL deep"], "filler {filler}");
            assert_eq!(results.values.get("ms").map(String::as_str), Some("42"));
        }
    }
}
