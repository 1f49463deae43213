//! Results the guest reports itself: KTAP ([`ktap`]), cases delimited by patterns of the
//! config ([`cases`]), and recorded values. A [`Collector`] sees every console line next to the
//! judge; [`Results`] is what it found, with the cases that failed first in the report.

pub mod cases;
pub mod ktap;

use std::collections::BTreeMap;
use std::fmt;

use crate::config::ResultsSection;

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
#[derive(Debug)]
pub struct Collector {
    ktap: Option<ktap::Parser>,
    cases: Option<cases::Matcher>,
    records: Vec<Record>,
    values: BTreeMap<String, String>,
}

impl Collector {
    /// A collector for the config's `[results]`, if it has one.
    pub fn new(section: &ResultsSection) -> Collector {
        Collector {
            ktap: section.ktap.then(ktap::Parser::default),
            cases: section.cases.as_ref().map(cases::Matcher::new),
            records: section.record.iter().map(|p| Record(p.0.clone())).collect(),
            values: BTreeMap::new(),
        }
    }

    /// Sees one console line.
    pub fn line(&mut self, text: &str) {
        if let Some(ktap) = &mut self.ktap {
            ktap.line(text);
        }
        if let Some(cases) = &mut self.cases {
            cases.line(text);
        }
        for Record(pattern) in &self.records {
            let Some(captures) = pattern.captures(text) else {
                continue;
            };
            for name in pattern.capture_names().flatten() {
                if let Some(value) = captures.name(name) {
                    self.values
                        .insert(name.to_string(), value.as_str().to_string());
                }
            }
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

/// Keeps the last [`EXCERPT_LINES`] of `lines`.
pub(crate) fn excerpt(lines: &[String]) -> Vec<String> {
    lines[lines.len().saturating_sub(EXCERPT_LINES)..].to_vec()
}
