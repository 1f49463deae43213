//! Results the guest reports itself: KTAP (`ktap`), cases delimited by patterns of the
//! config (`cases`), and recorded values. A [`Collector`] sees every console line next to the
//! judge; [`Results`] is what it found, with the cases that failed first in the report.

mod cases;
mod ktap;
mod sub;

use std::collections::BTreeMap;

use crate::config::ResultsSection;
use crate::console::CARRY_BYTES;

use sub::captures_past;
pub use sub::{Counts, Results, SubResult, SubStatus, EXCERPT_LINES, KEPT_FAILURES, KEPT_OTHERS};

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
