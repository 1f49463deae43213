//! The verdict logic, separate from I/O: feed it console lines and clock ticks, it says what to
//! send and when the test has passed or failed.

use std::time::{Duration, Instant};

use regex::Regex;

use crate::config::Step;
use crate::console::CARRY_BYTES;
use crate::outcome::{secs, Outcome, TimeoutKind};
use crate::plan::deadline_after;
pub use crate::plan::Expectations;

/// The first match of `pattern` in `text` at or after `start` that ends past `skip`.
fn find_past<'t>(
    pattern: &Regex,
    text: &'t str,
    start: usize,
    skip: usize,
) -> Option<regex::Match<'t>> {
    let mut at = start.max(line_start(text, skip));
    while at <= text.len() {
        let found = pattern.find_at(text, at)?;
        if skip == 0 || found.end() > skip {
            return Some(found);
        }
        // A match wholly inside the carried bytes was already seen: look further.
        at = found.start() + 1;
        while at < text.len() && !text.is_char_boundary(at) {
            at += 1;
        }
    }
    None
}

/// Where matching `text` may begin: 0 at a real line start; after its first character when it
/// begins with `skip` carried bytes of a cut line, so that `^` never matches there.
fn line_start(text: &str, skip: usize) -> usize {
    match skip {
        0 => 0,
        _ => text.chars().next().map_or(0, char::len_utf8),
    }
}

/// Where in the expectation list the judge is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Banner(usize),
    Step(usize),
    Success,
    /// Everything matched; waiting for QEMU to exit with the expected code.
    Exit,
}

/// A decision the engine must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Write these bytes to the guest.
    Send(Vec<u8>),
    /// The test is over.
    Verdict(Outcome),
}

/// The verdict state machine for one run.
#[derive(Debug)]
pub(crate) struct Judge {
    expect: Expectations,
    stage: Stage,
    stage_started: Instant,
    /// Bytes of the current (unfinished) line already consumed by matches.
    line_offset: usize,
    matched: Vec<String>,
    line_number: usize,
    /// The end of the previous piece when a long line was cut, so that a match across the cut
    /// is still found.
    carry: String,
}

impl Judge {
    /// A judge at the first expectation, with the clock starting now.
    pub(crate) fn new(expect: Expectations, now: Instant) -> Judge {
        let mut judge = Judge {
            expect,
            stage: Stage::Banner(0),
            stage_started: now,
            line_offset: 0,
            matched: Vec::new(),
            line_number: 0,
            carry: String::new(),
        };
        judge.normalize_stage(now);
        judge
    }

    /// Expectations met so far, for the report.
    pub(crate) fn matched(&self) -> &[String] {
        &self.matched
    }

    /// Human description of what the judge is waiting for.
    pub(crate) fn waiting_for(&self) -> String {
        let e = &self.expect;
        match self.stage {
            Stage::Banner(i) => format!("banner {}/{}: {}", i + 1, e.banner.len(), e.banner[i]),
            Stage::Step(i) => format!(
                "step {}/{}: {}",
                i + 1,
                e.steps.len(),
                describe_step(&e.steps[i])
            ),
            Stage::Success => format!(
                "success pattern {}",
                e.success.as_ref().map_or(String::new(), |p| p.to_string())
            ),
            Stage::Exit => format!("QEMU to exit with guest exit code {}", e.exit_code),
        }
    }

    /// Whether all patterns matched and only QEMU's exit is awaited.
    #[cfg(test)]
    pub(crate) fn waiting_for_exit(&self) -> bool {
        self.stage == Stage::Exit
    }

    /// When every expectation had been met, if all have and only QEMU's exit is awaited.
    pub(crate) fn all_met_at(&self) -> Option<Instant> {
        (self.stage == Stage::Exit).then_some(self.stage_started)
    }

    /// The current stage's own deadline and what happens then (`true`: it is a timeout).
    pub(crate) fn stage_deadline(&self) -> Option<(Instant, Duration, bool)> {
        let default = self.expect.step_timeout;
        match self.stage {
            Stage::Banner(_) | Stage::Success => {
                Some((deadline_after(self.stage_started, default), default, true))
            }
            Stage::Step(i) => match &self.expect.steps[i] {
                Step::Expect { timeout, .. } => {
                    let t = timeout.unwrap_or(default);
                    Some((deadline_after(self.stage_started, t), t, true))
                }
                Step::ExpectNot { timeout, .. } => {
                    let t = timeout.unwrap_or(default);
                    Some((deadline_after(self.stage_started, t), t, false))
                }
                Step::Send { .. } => None,
            },
            Stage::Exit => None,
        }
    }

    /// Handles a complete console line.
    #[cfg(test)]
    pub(crate) fn on_line(&mut self, text: &str, at: Duration, now: Instant) -> Vec<Action> {
        self.on_piece(text, false, at, now)
    }

    /// Handles a piece of the console: a complete line, or (`cut`) a piece of an overlong line
    /// that the next piece continues. Matching does not depend on where a line was cut: the
    /// end of a cut piece is carried into the next one, and only matches that reach into the
    /// new text count.
    pub(crate) fn on_piece(
        &mut self,
        text: &str,
        cut: bool,
        at: Duration,
        now: Instant,
    ) -> Vec<Action> {
        self.line_number += 1;
        let carried = std::mem::take(&mut self.carry);
        let joined = if carried.is_empty() {
            std::borrow::Cow::Borrowed(text)
        } else {
            std::borrow::Cow::Owned(format!("{carried}{text}"))
        };
        if let Some(outcome) = self.check_panic_from(&joined, carried.len(), self.line_number) {
            return vec![Action::Verdict(outcome)];
        }
        let actions = self.advance_from(&joined, carried.len(), at, now);
        if cut {
            let mut keep = joined.len().saturating_sub(CARRY_BYTES);
            while !joined.is_char_boundary(keep) {
                keep += 1;
            }
            self.carry = joined[keep..].to_string();
            self.line_offset = self.line_offset.saturating_sub(keep);
        } else {
            self.line_offset = 0;
        }
        actions
    }

    /// Handles the unfinished last line (prompts do not end in a newline).
    pub(crate) fn on_partial(&mut self, text: &str, at: Duration, now: Instant) -> Vec<Action> {
        if self.carry.is_empty() {
            return self.advance_from(text, 0, at, now);
        }
        let joined = format!("{}{text}", self.carry);
        self.advance_from(&joined, self.carry.len(), at, now)
    }

    /// Checks the unfinished last line against the failure patterns (when the run ends).
    pub(crate) fn check_panic(&self, text: &str) -> Option<Outcome> {
        let joined = format!("{}{text}", self.carry);
        self.check_panic_from(&joined, self.carry.len(), self.line_number + 1)
    }

    /// A failure pattern that matches `text` and reaches past `skip` (the carried bytes
    /// already checked), reported as console line `number`.
    fn check_panic_from(&self, text: &str, skip: usize, number: usize) -> Option<Outcome> {
        let bad = self
            .expect
            .panic_patterns
            .iter()
            .find(|p| find_past(p, text, 0, skip).is_some())?;
        let from = line_start(text, skip);
        if self
            .expect
            .allow
            .iter()
            .any(|allow| allow.find_at(text, from).is_some())
        {
            return None;
        }
        Some(Outcome::Fail {
            reason: format!(
                "panic pattern /{}/ matched console line {number}: `{}`",
                bad.as_str(),
                text[skip.min(text.len())..].trim_end()
            ),
        })
    }

    /// Advances time: an `expect_not` window that ended moves on, an expired expectation is a
    /// timeout.
    pub(crate) fn on_tick(&mut self, now: Instant) -> Vec<Action> {
        match self.stage_deadline() {
            Some((deadline, limit, true)) if now >= deadline => {
                vec![Action::Verdict(Outcome::Timeout {
                    which: TimeoutKind::Step(limit),
                })]
            }
            Some((deadline, limit, false)) if now >= deadline => {
                self.matched.push(format!(
                    "[+{}] {} (nothing matched for {})",
                    secs(now.saturating_duration_since(self.stage_started)),
                    self.waiting_for(),
                    secs(limit)
                ));
                self.next_stage(now);
                self.pending_sends(now)
            }
            _ => Vec::new(),
        }
    }

    /// QEMU exited with `guest_code` (decoded). Decides the verdict.
    pub(crate) fn on_exit(&mut self, guest_code: i32, status: &str, now: Instant) -> Outcome {
        // An expect_not window still open when the guest ends has been honoured.
        while let Stage::Step(i) = self.stage {
            if !matches!(self.expect.steps[i], Step::ExpectNot { .. }) {
                break;
            }
            self.next_stage(now);
        }
        if self.stage != Stage::Exit {
            return Outcome::Fail {
                reason: format!(
                    "QEMU exited ({status}) while waiting for {}",
                    self.waiting_for()
                ),
            };
        }
        if guest_code == self.expect.exit_code {
            Outcome::Pass
        } else {
            Outcome::Fail {
                reason: format!(
                    "guest exited with code {guest_code} ({status}), expected {}",
                    self.expect.exit_code
                ),
            }
        }
    }

    /// Matches the current stages in `text` from the consumed offset; a match must end past
    /// `skip` (bytes carried from a cut piece, already searched).
    fn advance_from(&mut self, text: &str, skip: usize, at: Duration, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        loop {
            // A partial line decoded lossily may end mid-character; never split one.
            let mut start = self.line_offset.min(text.len());
            while !text.is_char_boundary(start) {
                start += 1;
            }
            let pattern = match self.stage {
                Stage::Banner(i) => &self.expect.banner[i],
                Stage::Step(i) => match &self.expect.steps[i] {
                    Step::Expect { pattern, .. } => pattern,
                    Step::ExpectNot { pattern, .. } => {
                        if let Some(found) = find_past(&pattern.0, text, start, skip) {
                            actions.push(Action::Verdict(Outcome::Fail {
                                reason: format!(
                                    "{} matched `{}` in console line `{}`",
                                    self.waiting_for(),
                                    found.as_str(),
                                    text.trim_end()
                                ),
                            }));
                        }
                        return actions;
                    }
                    Step::Send { .. } => return actions,
                },
                Stage::Success => match &self.expect.success {
                    Some(pattern) => pattern,
                    None => return actions,
                },
                Stage::Exit => return actions,
            };
            let Some(found) = find_past(&pattern.0, text, start, skip) else {
                return actions;
            };
            self.matched.push(format!(
                "[{}] {} ← `{}`",
                secs(at),
                self.waiting_for(),
                text.trim_end()
            ));
            self.line_offset = found.end();
            let was_success = self.stage == Stage::Success;
            self.next_stage(now);
            if was_success {
                actions.push(Action::Verdict(Outcome::Pass));
                return actions;
            }
            actions.extend(self.pending_sends(now));
            if self.steps_done() {
                return actions;
            }
        }
    }

    /// Whether every step is met and that is the pass (`pass_after_steps`).
    fn steps_done(&self) -> bool {
        self.expect.pass_after_steps && self.stage == Stage::Exit
    }

    /// The sends due now, then the pass when that met the last step (`pass_after_steps`).
    fn pending_sends(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = self.sends(now);
        if self.steps_done() {
            actions.push(Action::Verdict(Outcome::Pass));
        }
        actions
    }

    fn sends(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        while let Stage::Step(i) = self.stage {
            let Step::Send { text, line } = &self.expect.steps[i] else {
                break;
            };
            let mut bytes = text.clone().into_bytes();
            if *line {
                bytes.extend_from_slice(self.expect.line_ending.as_bytes());
            }
            self.matched
                .push(format!("[sent] {}", describe_step(&self.expect.steps[i])));
            actions.push(Action::Send(bytes));
            self.next_stage(now);
        }
        actions
    }

    /// Actions due right at the start (a config may begin with a send step).
    pub(crate) fn initial_actions(&mut self, now: Instant) -> Vec<Action> {
        self.pending_sends(now)
    }

    fn next_stage(&mut self, now: Instant) {
        self.stage = match self.stage {
            Stage::Banner(i) => Stage::Banner(i + 1),
            Stage::Step(i) => Stage::Step(i + 1),
            Stage::Success | Stage::Exit => Stage::Exit,
        };
        self.stage_started = now;
        self.normalize_stage(now);
    }

    fn normalize_stage(&mut self, now: Instant) {
        let e = &self.expect;
        loop {
            self.stage = match self.stage {
                Stage::Banner(i) if i >= e.banner.len() => Stage::Step(0),
                Stage::Step(i) if i >= e.steps.len() => Stage::Success,
                Stage::Success if e.success.is_none() || e.pass_after_steps => Stage::Exit,
                _ => {
                    self.stage_started = now;
                    return;
                }
            };
        }
    }
}

fn describe_step(step: &Step) -> String {
    match step {
        Step::Expect { pattern, .. } => format!("expect {pattern}"),
        Step::ExpectNot { pattern, .. } => format!("expect_not {pattern}"),
        Step::Send { text, line } => format!(
            "send {:?}{}",
            text,
            if *line { " + line ending" } else { "" }
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Pattern;
    use crate::plan::DEFAULT_PANIC_PATTERNS;

    fn pattern(source: &str) -> Pattern {
        Pattern(Regex::new(source).unwrap())
    }

    fn expectations() -> Expectations {
        Expectations {
            banner: vec![pattern("Linux version"), pattern("hello")],
            steps: vec![
                Step::Expect {
                    pattern: pattern("=> $"),
                    timeout: None,
                },
                Step::Send {
                    text: "fatls".into(),
                    line: true,
                },
                Step::Expect {
                    pattern: pattern("1 file"),
                    timeout: None,
                },
            ],
            success: None,
            panic_patterns: DEFAULT_PANIC_PATTERNS
                .iter()
                .map(|p| Regex::new(p).unwrap())
                .collect(),
            allow: vec![Regex::new("panicked at test-allowed").unwrap()],
            exit_code: 0,
            step_timeout: Duration::from_secs(5),
            line_ending: "\r".into(),
            pass_after_steps: false,
        }
    }

    #[test]
    fn banner_in_order_then_prompt_send_and_exit() {
        let now = Instant::now();
        let mut judge = Judge::new(expectations(), now);
        let at = Duration::ZERO;
        assert!(judge.on_line("hello too early", at, now).is_empty());
        assert!(judge
            .on_line("[0.0] Linux version 6.1 hello", at, now)
            .is_empty());
        assert!(
            judge.waiting_for().starts_with("step 1/3"),
            "{}",
            judge.waiting_for()
        );
        let actions = judge.on_partial("=> ", at, now);
        assert_eq!(actions, vec![Action::Send(b"fatls\r".to_vec())]);
        // The completed prompt line must not be matched again.
        assert!(judge.on_line("=> fatls", at, now).is_empty());
        assert!(judge.on_line("1 file(s)", at, now).is_empty());
        assert!(judge.waiting_for_exit());
        assert_eq!(judge.on_exit(0, "exit status 0", now), Outcome::Pass);
    }

    #[test]
    fn panic_line_fails_immediately_unless_allowed() {
        let now = Instant::now();
        let mut judge = Judge::new(expectations(), now);
        assert!(judge
            .on_line("panicked at test-allowed", Duration::ZERO, now)
            .is_empty());
        let actions = judge.on_line(
            "Kernel panic - not syncing: Attempted to kill init!",
            Duration::ZERO,
            now,
        );
        let Action::Verdict(Outcome::Fail { reason }) = &actions[0] else {
            panic!("{actions:?}")
        };
        assert!(
            reason.contains("Kernel panic - not syncing") && reason.contains("line 2"),
            "{reason}"
        );
    }

    #[test]
    fn early_exit_and_wrong_code_fail() {
        let now = Instant::now();
        let mut judge = Judge::new(expectations(), now);
        let outcome = judge.on_exit(0, "exit status 0", now);
        assert!(
            matches!(&outcome, Outcome::Fail { reason } if reason.contains("banner 1/2")),
            "{outcome:?}"
        );
        let mut e = expectations();
        e.banner.clear();
        e.steps.clear();
        let mut judge = Judge::new(e, now);
        let outcome = judge.on_exit(3, "exit status 7", now);
        assert!(
            matches!(&outcome, Outcome::Fail { reason } if reason.contains("code 3")),
            "{outcome:?}"
        );
    }

    #[test]
    fn step_timeout_and_expect_not_window() {
        let now = Instant::now();
        let mut e = expectations();
        e.banner.clear();
        e.steps = vec![
            Step::ExpectNot {
                pattern: pattern("error"),
                timeout: Some(Duration::from_secs(1)),
            },
            Step::Expect {
                pattern: pattern("done"),
                timeout: Some(Duration::from_secs(2)),
            },
        ];
        let mut judge = Judge::new(e.clone(), now);
        assert!(judge.on_tick(now + Duration::from_millis(500)).is_empty());
        assert!(judge.on_tick(now + Duration::from_millis(1001)).is_empty());
        let later = now + Duration::from_millis(1001) + Duration::from_secs(3);
        assert_eq!(
            judge.on_tick(later),
            vec![Action::Verdict(Outcome::Timeout {
                which: TimeoutKind::Step(Duration::from_secs(2))
            })]
        );
        let mut judge = Judge::new(e, now);
        let actions = judge.on_line("an error here", Duration::ZERO, now);
        assert!(matches!(&actions[0], Action::Verdict(Outcome::Fail { .. })));
    }

    #[test]
    fn line_start_anchor_means_the_real_line_start() {
        let now = Instant::now();
        let mut e = expectations();
        e.banner.clear();
        e.steps = vec![
            Step::Expect {
                pattern: pattern("^=> "),
                timeout: None,
            },
            Step::Send {
                text: "crc32".into(),
                line: true,
            },
            Step::Expect {
                pattern: pattern("^=> "),
                timeout: None,
            },
        ];
        let mut judge = Judge::new(e, now);
        assert_eq!(judge.on_partial("=> ", Duration::ZERO, now).len(), 1);
        // The echo and `==> ` continue lines but are not prompts at line start.
        assert!(judge.on_line("=> crc32", Duration::ZERO, now).is_empty());
        assert!(judge
            .on_line(
                "crc32 for 40200000 ... 4020001c ==> 69ee5b96",
                Duration::ZERO,
                now
            )
            .is_empty());
        assert!(!judge.waiting_for_exit());
        assert!(judge.on_partial("=> ", Duration::ZERO, now).is_empty());
        assert!(judge.waiting_for_exit());
    }

    #[test]
    fn success_pattern_passes_without_exit() {
        let now = Instant::now();
        let mut e = expectations();
        e.steps.clear();
        e.success = Some(pattern("usertests passed!"));
        let mut judge = Judge::new(e, now);
        judge.on_line("Linux version hello", Duration::ZERO, now);
        assert_eq!(
            judge.on_line("usertests passed!", Duration::ZERO, now),
            vec![Action::Verdict(Outcome::Pass)]
        );
    }

    /// Feeds `text` as the console would after the line cap: pieces of `cap` bytes, each but
    /// the last cut; returns the actions.
    fn feed_cut(judge: &mut Judge, text: &str, cap: usize) -> Vec<Action> {
        let now = Instant::now();
        let mut actions = Vec::new();
        let bytes = text.as_bytes();
        let mut start = 0;
        while start < bytes.len() {
            let end = (start + cap).min(bytes.len());
            let piece = std::str::from_utf8(&bytes[start..end]).unwrap();
            let cut = end < bytes.len();
            actions.extend(judge.on_piece(piece, cut, Duration::ZERO, now));
            start = end;
        }
        actions
    }

    /// A pattern is found wherever an overlong line is cut, and a panic too.
    #[test]
    fn matches_do_not_depend_on_where_a_long_line_is_cut() {
        let needle = "vmharness selftest x86_64";
        for prefix in [100, 1000, 4090] {
            for cut_at in 1..needle.len() {
                let cap = prefix + cut_at;
                let text = format!("{}{needle} after", "x".repeat(prefix));
                let mut expect = expectations();
                expect.banner = vec![pattern(needle)];
                expect.steps.clear();
                expect.success = Some(pattern("after"));
                let mut judge = Judge::new(expect, Instant::now());
                let actions = feed_cut(&mut judge, &text, cap);
                assert_eq!(
                    actions,
                    vec![Action::Verdict(Outcome::Pass)],
                    "prefix {prefix}, cut {cut_at}: {:?}",
                    judge.matched()
                );
                let mut judge = Judge::new(expectations(), Instant::now());
                let text = format!("{}panicked at x.rs:1", "y".repeat(prefix));
                let actions = feed_cut(&mut judge, &text, prefix + cut_at.min(10));
                assert!(
                    matches!(actions.as_slice(), [Action::Verdict(Outcome::Fail { .. })]),
                    "panic, prefix {prefix}: {actions:?}"
                );
            }
        }
    }

    /// `^` is the start of the real console line: the carried end of a cut line is not one,
    /// wherever the cut falls.
    #[test]
    fn a_cut_line_is_no_line_start() {
        let cap = crate::console::MAX_LINE_BYTES;
        let carry_starts = [cap - CARRY_BYTES, 2 * cap - CARRY_BYTES];
        for filler in carry_starts.into_iter().flat_map(|at| at - 3..=at + 3) {
            let text = format!("{}ready{} done", "x".repeat(filler), "y".repeat(cap / 2));
            let mut expect = expectations();
            expect.banner = vec![pattern("^ready.*done")];
            expect.steps.clear();
            let mut judge = Judge::new(expect, Instant::now());
            let actions = feed_cut(&mut judge, &text, cap);
            assert!(actions.is_empty(), "filler {filler}: {:?}", judge.matched());
            assert!(judge.matched().is_empty(), "filler {filler}");
        }
    }

    /// Carried bytes are not matched twice: two banner entries need two occurrences.
    #[test]
    fn carried_bytes_are_not_matched_again() {
        let mut expect = expectations();
        expect.banner = vec![pattern("ab"), pattern("ab")];
        expect.steps.clear();
        expect.success = Some(pattern("end"));
        let mut judge = Judge::new(expect, Instant::now());
        let now = Instant::now();
        assert!(judge.on_piece("xxab", true, Duration::ZERO, now).is_empty());
        assert!(judge
            .on_piece("yy end", false, Duration::ZERO, now)
            .is_empty());
        assert_eq!(judge.matched().len(), 1, "{:?}", judge.matched());
    }

    /// A panic in the unfinished last line is reported as the line it is.
    #[test]
    fn a_panic_without_newline_names_its_own_line() {
        let mut judge = Judge::new(expectations(), Instant::now());
        let now = Instant::now();
        judge.on_line("one", Duration::ZERO, now);
        judge.on_line("two", Duration::ZERO, now);
        let Some(Outcome::Fail { reason }) = judge.check_panic("panicked at x.rs:3") else {
            panic!("no panic found");
        };
        assert!(reason.contains("console line 3:"), "{reason}");
    }
}
