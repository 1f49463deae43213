//! Cases delimited by patterns of the config: a start pattern names a case, an end pattern
//! gives its `status` (pass, fail, skip and their usual spellings) or exit `code`.

use crate::config::{CasePatterns, Unfinished};

use super::sub::{excerpt, Results, SubResult, SubStatus};

/// Follows the cases a guest runs.
#[derive(Debug)]
pub(crate) struct Matcher {
    patterns: CasePatterns,
    open: Option<(String, Vec<String>)>,
    done: Results,
}

impl Matcher {
    /// A matcher for these patterns.
    pub(crate) fn new(patterns: &CasePatterns) -> Matcher {
        Matcher {
            patterns: patterns.clone(),
            open: None,
            done: Results::default(),
        }
    }

    /// Sees one console line.
    #[cfg(test)]
    pub(crate) fn line(&mut self, text: &str) {
        self.piece(text, 0, 0);
    }

    /// Sees one piece of a line: `text` is the carried end of a line cut before (`skip`
    /// bytes, already seen; 0 at a line start) and the new piece. Patterns match from `from`
    /// and must reach into the new piece; `^` matches only at a real line start. Returns
    /// where in `text` a match ended (0 without one).
    pub(crate) fn piece(&mut self, text: &str, skip: usize, from: usize) -> usize {
        let new = &text[skip..];
        if let Some(captures) = super::sub::captures_past(&self.patterns.end.0, text, skip, from) {
            let end = captures.get(0).map_or(0, |m| m.end());
            let name = captures
                .name("name")
                .map(|m| m.as_str().trim().to_string())
                .or_else(|| self.open.as_ref().map(|(n, _)| n.clone()))
                .unwrap_or_default();
            let mut lines = match self.open.take() {
                Some((open, lines)) if open == name => lines,
                Some(other) => {
                    // A case that never ended before another one did.
                    self.crash(other);
                    Vec::new()
                }
                None => Vec::new(),
            };
            lines.push(super::sub::field(new));
            let (status, detail) = self.judge(&name, &captures);
            self.done.push(SubResult {
                name,
                status,
                detail,
                excerpt: excerpt(&lines),
            });
            return end;
        }
        if let Some(start) = &self.patterns.start {
            if let Some(captures) = super::sub::captures_past(&start.0, text, skip, from) {
                let name = captures
                    .name("name")
                    .map(|m| m.as_str().trim().to_string())
                    .unwrap_or_default();
                if let Some(previous) = self.open.take() {
                    self.crash(previous);
                }
                self.open = Some((name, vec![super::sub::field(new)]));
                return captures.get(0).map_or(0, |m| m.end());
            }
        }
        if let Some((_, lines)) = &mut self.open {
            lines.push(super::sub::field(new));
            if lines.len() > 4 * super::sub::EXCERPT_LINES {
                lines.drain(..lines.len() - super::sub::EXCERPT_LINES);
            }
        }
        0
    }

    fn judge(&self, name: &str, captures: &regex::Captures<'_>) -> (SubStatus, Option<String>) {
        if let Some(code) = captures.name("code") {
            let expected = self.patterns.expect.get(name).copied().unwrap_or(0);
            return match code.as_str().trim().parse::<i64>() {
                Ok(code) if code == expected && expected == 0 => (SubStatus::Pass, None),
                Ok(code) if code == expected => (
                    SubStatus::Pass,
                    Some(format!("exit code {code}, as expected")),
                ),
                Ok(code) => (
                    SubStatus::Fail,
                    Some(format!("exit code {code}, expected {expected}")),
                ),
                Err(_) => (
                    SubStatus::Fail,
                    Some(format!("exit code `{}` is not a number", code.as_str())),
                ),
            };
        }
        let status = captures.name("status").map_or("", |m| m.as_str());
        match status.trim().to_ascii_lowercase().as_str() {
            "pass" | "passed" | "ok" | "success" => (SubStatus::Pass, None),
            "skip" | "skipped" => (SubStatus::Skip, None),
            other => (SubStatus::Fail, Some(format!("status `{other}`"))),
        }
    }

    fn crash(&mut self, (name, lines): (String, Vec<String>)) {
        let (status, detail) = match self.patterns.unfinished {
            Unfinished::Crashed => (SubStatus::Crashed, "its output ended before its result"),
            Unfinished::Skipped => (SubStatus::Skip, "no result (unfinished = \"skipped\")"),
        };
        self.done.push(SubResult {
            name,
            status,
            detail: Some(detail.to_string()),
            excerpt: excerpt(&lines),
        });
    }

    /// The sub-results; a case still open is crashed (or skipped, as configured).
    pub(crate) fn finish(mut self) -> Results {
        if let Some(open) = self.open.take() {
            self.crash(open);
        }
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Pattern;
    use crate::console::{AnsiStripper, LineSplitter};

    /// NimbOS v0.7's usertests, as its shell prints them.
    fn nimbos() -> CasePatterns {
        CasePatterns {
            start: Some(Pattern(
                regex::Regex::new(r"^Usertests: Running '(?P<name>[^']+)':").unwrap(),
            )),
            end: Pattern(
                regex::Regex::new(
                    r"^Usertests: Test '(?P<name>[^']+)' in Process \d+ exited with code (?P<code>-?\d+)\.",
                )
                .unwrap(),
            ),
            expect: [("stack_overflow".to_string(), -1)].into(),
            unfinished: Unfinished::Crashed,
        }
    }

    fn feed(bytes: &[u8], patterns: &CasePatterns) -> Vec<SubResult> {
        let (mut stripper, mut splitter) = (AnsiStripper::new(), LineSplitter::default());
        let (mut clean, mut pieces) = (Vec::new(), Vec::new());
        stripper.feed(bytes, &mut clean);
        splitter.feed(&clean, &mut pieces);
        let mut matcher = Matcher::new(patterns);
        for piece in pieces {
            matcher.line(&piece.text);
        }
        matcher.finish().cases
    }

    /// The real transcripts of all three arches (ANSI colours, `\r\r\n`, a NUL inside every
    /// name): thirteen usertests each, all passing, `stack_overflow` by its intended -1.
    #[test]
    fn nimbos_usertests_are_thirteen_sub_results() {
        for log in [
            &include_bytes!("testdata/nimbos-v0.7-shell-usertests-aarch64.log")[..],
            &include_bytes!("testdata/nimbos-v0.7-shell-usertests-riscv64.log")[..],
            &include_bytes!("testdata/nimbos-v0.7-shell-usertests-x86_64.log")[..],
        ] {
            let results = feed(log, &nimbos());
            assert_eq!(results.len(), 13, "{results:#?}");
            assert!(
                results.iter().all(|r| r.status == SubStatus::Pass),
                "{results:#?}"
            );
            let overflow = results.iter().find(|r| r.name == "stack_overflow").unwrap();
            assert_eq!(
                overflow.detail.as_deref(),
                Some("exit code -1, as expected")
            );
            assert!(
                results.iter().any(|r| r.name == "exit"),
                "the NUL is gone from names"
            );
        }
    }

    #[test]
    fn wrong_codes_statuses_and_unfinished_cases() {
        let mut patterns = nimbos();
        let log = "Usertests: Running 'a':\nUsertests: Test 'a' in Process 1 exited with code 3.\n\
                   Usertests: Running 'stack_overflow':\nUsertests: Test 'stack_overflow' in Process 2 exited with code 0.\n\
                   Usertests: Running 'b':\nsome output\nUsertests: Running 'c':\nhalf way\n";
        let results = feed(log.as_bytes(), &patterns);
        let summary: Vec<String> = results
            .iter()
            .map(|r| {
                format!(
                    "{} {} {}",
                    r.status.label(),
                    r.name,
                    r.detail.clone().unwrap_or_default()
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                "FAIL a exit code 3, expected 0",
                "FAIL stack_overflow exit code 0, expected -1",
                "CRASHED b its output ended before its result",
                "CRASHED c its output ended before its result",
            ]
        );
        assert_eq!(results[3].excerpt, ["Usertests: Running 'c':", "half way"]);
        patterns.unfinished = Unfinished::Skipped;
        assert!(feed(log.as_bytes(), &patterns)[3].status == SubStatus::Skip);
        let status = CasePatterns {
            start: None,
            end: Pattern(
                regex::Regex::new(r"^\[(?P<status>PASS|FAIL|SKIP)\] (?P<name>\S+)").unwrap(),
            ),
            expect: Default::default(),
            unfinished: Unfinished::Crashed,
        };
        let results = feed(b"[PASS] one\n[FAIL] two\n[SKIP] three\n", &status);
        let labels: Vec<&str> = results.iter().map(|r| r.status.label()).collect();
        assert_eq!(labels, ["PASS", "FAIL", "SKIP"]);
    }
}
