//! Results the guest reports itself: KTAP ([`ktap`]), cases delimited by patterns of the
//! config ([`cases`]), and recorded values. A [`Collector`] sees every console line next to the
//! judge; [`Results`] is what it found, with the cases that failed first in the report.

pub mod cases;
pub mod ktap;

use std::collections::BTreeMap;
use std::fmt;

use crate::config::ResultsSection;
use crate::run::judge::CARRY_BYTES;

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

/// Everything the guest reported in one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Results {
    /// The sub-results, in the order they ended.
    pub cases: Vec<SubResult>,
    /// Recorded values by name (the last capture wins).
    pub values: BTreeMap<String, String>,
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
    /// The counts per status.
    pub fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        for case in &self.cases {
            match case.status {
                SubStatus::Pass => counts.passed += 1,
                SubStatus::Fail => counts.failed += 1,
                SubStatus::Crashed => counts.crashed += 1,
                SubStatus::Skip => counts.skipped += 1,
            }
        }
        counts
    }

    /// The sub-results that make the trial fail.
    pub fn failures(&self) -> Vec<&SubResult> {
        self.cases
            .iter()
            .filter(|c| c.status.is_failure())
            .collect()
    }

    /// The verdict's reason when sub-results failed: counts and the failing names.
    pub fn failure_reason(&self) -> Option<String> {
        let failures = self.failures();
        if failures.is_empty() {
            return None;
        }
        let names: Vec<String> = failures
            .iter()
            .map(|c| format!("{} ({})", c.name, c.status.label().to_lowercase()))
            .collect();
        Some(format!(
            "{} of {} sub-results failed ({}): {}",
            failures.len(),
            self.cases.len(),
            self.counts(),
            names.join(", ")
        ))
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
    pub fn piece(&mut self, text: &str, cut: bool) {
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
        let mut cases = Vec::new();
        if let Some(ktap) = self.ktap {
            cases.extend(ktap.finish());
        }
        if let Some(matcher) = self.cases {
            cases.extend(matcher.finish());
        }
        Results {
            cases,
            values: self.values,
        }
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
