//! A KTAP parser (versions 1 and 2, as in the kernel's `Documentation/dev-tools/ktap.rst`;
//! `TAP version 13/14` lines are accepted too): nested subtests by indentation, plans,
//! `# SKIP` and `# TODO`, diagnostic lines attached to the case they precede, and cases whose
//! output ends before their result line marked CRASHED, as kunit_tool does. Console prefixes
//! (kernel timestamps) are stripped by the column of the version line. Malformed input never
//! panics: what is not KTAP is a diagnostic line.

use std::sync::OnceLock;

use regex::Regex;

use super::sub::{excerpt, Results, SubResult, SubStatus};

/// One open (sub)test document.
#[derive(Debug)]
struct Level {
    indent: usize,
    name: Option<String>,
    plan: Option<usize>,
    results: usize,
    /// Sub-results recorded inside this level (its children).
    children: usize,
    failed_children: bool,
    lines: Vec<String>,
}

impl Level {
    fn new(indent: usize, name: Option<String>) -> Level {
        Level {
            indent,
            name,
            plan: None,
            results: 0,
            children: 0,
            failed_children: false,
            lines: Vec::new(),
        }
    }
}

/// The KTAP state of one console.
#[derive(Debug, Default)]
pub(crate) struct Parser {
    prefix: usize,
    stack: Vec<Level>,
    done: Results,
    /// (sub-results inside, any failed) of the level closed by the line being handled.
    just_closed: Option<(usize, bool)>,
}

fn version_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"(?:KTAP|TAP) version \d+").expect("valid regex"))
}

fn result_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"^(not ok|ok)\b\s*(\d+)?\s*(?:-\s*)?([^#]*?)\s*(?:#\s*(.*))?$")
            .expect("valid regex")
    })
}

fn plan_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"^1\.\.(\d+)\s*(?:#.*)?$").expect("valid regex"))
}

impl Parser {
    /// Sees one console line.
    pub(crate) fn line(&mut self, raw: &str) {
        self.just_closed = None;
        if let Some(found) = version_re().find(raw) {
            self.version(raw, found.start());
            return;
        }
        if self.stack.is_empty() {
            return;
        }
        let body = strip_prefix(raw, self.prefix);
        let indent = body.len() - body.trim_start_matches(' ').len();
        let content = body.trim();
        if let Some(name) = content.strip_prefix("# Subtest:") {
            let name = name.trim().to_string();
            let top = self.top_indent();
            let nested = self.stack.len() > 1;
            if indent > top {
                self.stack.push(Level::new(indent, Some(name)));
            } else if let Some(level) = self.stack.last_mut() {
                if level.name.is_none() && nested {
                    level.name = Some(name);
                }
            }
            return;
        }
        if !content.is_empty() && (plan_re().is_match(content) || result_re().is_match(content)) {
            self.close_deeper_than(indent);
        }
        if let Some(plan) = plan_re().captures(content) {
            if let Some(level) = self.stack.last_mut() {
                level.plan = plan[1].parse().ok();
            }
            return;
        }
        if let Some(result) = result_re().captures(content) {
            self.result(&result);
            return;
        }
        if let Some(level) = self.stack.last_mut() {
            level.lines.push(super::sub::field(content));
            if level.lines.len() > 4 * super::sub::EXCERPT_LINES {
                level
                    .lines
                    .drain(..level.lines.len() - super::sub::EXCERPT_LINES);
            }
        }
    }

    fn top_indent(&self) -> usize {
        self.stack.last().map_or(0, |l| l.indent)
    }

    fn version(&mut self, raw: &str, column: usize) {
        if self.stack.is_empty() {
            self.prefix = column;
            self.stack.push(Level::new(0, None));
            return;
        }
        let body = strip_prefix(raw, self.prefix);
        let indent = body.len() - body.trim_start_matches(' ').len();
        if indent > self.top_indent() {
            self.stack.push(Level::new(indent, None));
        } else if indent == 0 {
            // A new document: whatever the old one left open ended there.
            self.close_all();
            self.prefix = column;
            self.stack.push(Level::new(0, None));
        }
    }

    /// Closes nested levels indented deeper than `indent` (their parent's line arrived).
    fn close_deeper_than(&mut self, indent: usize) {
        while self.stack.len() > 1 && self.top_indent() > indent {
            self.close_top();
        }
    }

    fn path(&self, name: &str) -> String {
        let mut parts: Vec<&str> = self
            .stack
            .iter()
            .filter_map(|l| l.name.as_deref())
            .collect();
        parts.push(name);
        parts.join(".")
    }

    fn result(&mut self, result: &regex::Captures<'_>) {
        let ok = &result[1] == "ok";
        let number = result.get(2).and_then(|n| n.as_str().parse::<usize>().ok());
        let description = result.get(3).map_or("", |d| d.as_str()).trim();
        let directive = result.get(4).map_or("", |d| d.as_str()).trim();
        let Some(level) = self.stack.last_mut() else {
            return;
        };
        level.results += 1;
        let index = number.unwrap_or(level.results);
        let name = if description.is_empty() {
            format!("#{index}")
        } else {
            description.to_string()
        };
        let lines = std::mem::take(&mut level.lines);
        let upper = directive.to_ascii_uppercase();
        // A TODO is a known failure: like a skip, it does not fail the trial.
        let (status, detail) = if upper.starts_with("SKIP") || upper.starts_with("TODO") {
            (SubStatus::Skip, Some(directive.to_string()))
        } else if ok {
            (SubStatus::Pass, None)
        } else {
            (SubStatus::Fail, None)
        };
        // The result of a suite whose cases were reported: counted only if it fails on its
        // own (no failing case explains it).
        let closed = self.just_closed.take();
        if let Some((children, failed_children)) = closed {
            if children > 0 && (status != SubStatus::Fail || failed_children) {
                self.note_child(status);
                return;
            }
        }
        let full = self.path(&name);
        self.note_child(status);
        self.done.push(SubResult {
            name: full,
            status,
            detail,
            excerpt: excerpt(&lines),
        });
    }

    fn note_child(&mut self, status: SubStatus) {
        if let Some(level) = self.stack.last_mut() {
            level.children += 1;
            level.failed_children |= status.is_failure();
        }
    }

    fn close_top(&mut self) {
        let Some(level) = self.stack.pop() else {
            return;
        };
        let crashed = self.unfinished(&level);
        let failed = level.failed_children || crashed;
        self.just_closed = Some((level.children + usize::from(crashed), failed));
        if crashed {
            if let Some(parent) = self.stack.last_mut() {
                parent.failed_children = true;
            }
        }
    }

    /// Records what a level left unfinished: its last case (output with no result) and the
    /// cases its plan promised. Returns whether anything crashed.
    fn unfinished(&mut self, level: &Level) -> bool {
        let mut names: Vec<String> = self.stack.iter().filter_map(|l| l.name.clone()).collect();
        if let Some(name) = &level.name {
            names.push(name.clone());
        }
        let planned = level.plan.unwrap_or(0);
        let missing = planned.saturating_sub(level.results);
        let started = !level.lines.is_empty() || (level.results == 0 && level.plan.is_none());
        let count = missing.max(usize::from(started && missing == 0 && level.results == 0));
        let first = level.results;
        self.done.push_many(SubStatus::Crashed, count, |k| {
            let mut parts = names.clone();
            parts.push(format!("#{}", first.saturating_add(k).saturating_add(1)));
            SubResult {
                name: parts.join("."),
                status: SubStatus::Crashed,
                detail: Some(match k {
                    0 => "its output ended before its result line".to_string(),
                    _ => "never ran: the output ended before it".to_string(),
                }),
                excerpt: if k == 0 {
                    excerpt(&level.lines)
                } else {
                    Vec::new()
                },
            }
        });
        count > 0
    }

    fn close_all(&mut self) {
        while !self.stack.is_empty() {
            let root = self.stack.len() == 1;
            if root {
                let level = self.stack.pop().expect("not empty");
                self.unfinished(&level);
            } else {
                self.close_top();
                // The suite's own result line never came: its cases stand for it.
                if self.just_closed.take().is_some() {
                    if let Some(parent) = self.stack.last_mut() {
                        parent.results += 1;
                    }
                }
            }
        }
        self.just_closed = None;
    }

    /// The sub-results, with what the output left unfinished crashed.
    pub(crate) fn finish(mut self) -> Results {
        self.close_all();
        self.done
    }
}

/// `raw` without its first `prefix` bytes (the console's timestamp column), when it has them.
fn strip_prefix(raw: &str, prefix: usize) -> &str {
    match raw.get(prefix..) {
        Some(rest) if prefix > 0 && raw.len() >= prefix => rest,
        _ if prefix == 0 => raw,
        _ => raw.trim_start(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<SubResult> {
        let mut parser = Parser::default();
        for line in text.lines() {
            parser.line(line);
        }
        parser.finish().cases
    }

    fn summary(results: &[SubResult]) -> Vec<String> {
        results
            .iter()
            .map(|r| format!("{} {}", r.status.label(), r.name))
            .collect()
    }

    #[test]
    fn nested_suites_skips_todos_and_diagnostics() {
        let text = "\
[    1.000000] KTAP version 1
[    1.000001] 1..2
[    1.000002]     KTAP version 1
[    1.000003]     # Subtest: example
[    1.000004]     1..3
[    1.000005]     ok 1 example_simple_test
[    1.000006]     # example_failing_test: EXPECTATION FAILED at lib/example.c:42
[    1.000007]     not ok 2 example_failing_test
[    1.000008]     ok 3 example_skip_test # SKIP this test should be skipped
[    1.000009] # example: pass:1 fail:1 skip:1 total:3
[    1.000010] not ok 1 example
[    1.000011] ok 2 plain # TODO not done yet
";
        let results = parse(text);
        assert_eq!(
            summary(&results),
            [
                "PASS example.example_simple_test",
                "FAIL example.example_failing_test",
                "SKIP example.example_skip_test",
                "SKIP plain"
            ]
        );
        assert_eq!(
            results[1].excerpt,
            ["# example_failing_test: EXPECTATION FAILED at lib/example.c:42"]
        );
        assert_eq!(
            results[2].detail.as_deref(),
            Some("SKIP this test should be skipped")
        );
    }

    #[test]
    fn output_ending_mid_case_is_crashed_and_the_unplanned_rest_too() {
        let text = "\
KTAP version 2
1..2
  KTAP version 2
  # Subtest: mm
  1..3
  ok 1 first
  running second...
  BUG: unable to handle page fault
";
        let results = parse(text);
        assert_eq!(
            summary(&results),
            [
                "PASS mm.first",
                "CRASHED mm.#2",
                "CRASHED mm.#3",
                "CRASHED #2"
            ]
        );
        assert!(results[1].excerpt.iter().any(|l| l.contains("page fault")));
    }

    #[test]
    fn a_suite_failing_without_failing_cases_is_reported() {
        let text = "KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: s\n    1..1\n    ok 1 a\nnot ok 1 s\n";
        assert_eq!(summary(&parse(text)), ["PASS s.a", "FAIL s"]);
    }

    /// Garbage, bad plans, duplicate numbers, lines before the version, a second document:
    /// never a panic, and nothing invented.
    #[test]
    fn malformed_input_never_panics() {
        let text = "\
ok 1 before any version is not a result
TAP version 14
1..x
1..2
ok 1 a
ok 1 a again
random kernel chatter: ok 7 not at the start
not ok
    ok 3 deeper without a version line
\u{0}\u{7f}\u{fffd}
KTAP version 1
1..1
ok 1 second document
";
        let results = parse(text);
        assert_eq!(
            summary(&results),
            [
                "PASS a",
                "PASS a again",
                "FAIL #3",
                "PASS deeper without a version line",
                "PASS second document"
            ]
        );
        for garbage in [
            "KTAP version 1\n\u{0}",
            "KTAP version 1\n        \n  ok",
            "TAP version 13\n1..99999999999999999999\n",
        ] {
            let _ = parse(garbage);
        }
    }

    /// Thirty results, as a big suite prints them: thirty sub-results.
    #[test]
    fn thirty_results_are_thirty_cases() {
        let mut text = String::from("KTAP version 1\n1..30\n");
        for i in 1..=30 {
            let verdict = if i % 10 == 0 { "not ok" } else { "ok" };
            text.push_str(&format!("{verdict} {i} case_{i}\n"));
        }
        let results = parse(&text);
        assert_eq!(results.len(), 30);
        assert_eq!(results.iter().filter(|r| r.status.is_failure()).count(), 3);
    }
}
