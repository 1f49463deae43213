//! The guard after a restore: the guest must answer a probe with a fresh token before a case
//! runs, and the console must settle, so the case starts where a cold boot's would.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use regex::Regex;

use crate::config::ReadySection;
use crate::console::{Line, ReadEvent, Session};
use crate::outcome::RunError;
use crate::plan::deadline_after;

/// Sends `ready.probe` with a fresh token (and the host's time for `{epoch}`) and waits for a
/// console line matching its answer.
pub(super) fn probe(
    session: &mut Session,
    ready: &ReadySection,
    line_ending: &str,
    limit: Duration,
) -> Result<(), RunError> {
    let token = token();
    // `{epoch}` lets the probe set the guest's clock, which lags by the state's age.
    let line = ready
        .probe
        .replace("{token}", &token)
        .replace("{epoch}", &now_secs().to_string());
    let answer = ready.answer.replace("{token}", &token);
    let no_answer = || RunError::NoAnswer {
        probe: line.clone(),
        answer: answer.clone(),
        within: limit,
    };
    let pattern = Regex::new(&answer).map_err(|_| no_answer())?;
    session
        .send(format!("{line}{line_ending}").as_bytes())
        .map_err(RunError::ConsoleWrite)?;
    let deadline = deadline_after(Instant::now(), limit);
    let mut lines: Vec<Line> = Vec::new();
    while Instant::now() < deadline {
        lines.clear();
        let event = session.read(deadline, &mut lines);
        if lines.iter().any(|l| pattern.is_match(l.text.trim_end())) {
            settle(session, deadline);
            return Ok(());
        }
        if matches!(event, ReadEvent::Closed) {
            break;
        }
    }
    Err(no_answer())
}

/// How long the console must be quiet after the probe's answer before the case starts.
const SETTLED: Duration = Duration::from_millis(20);

/// Reads until the console has been quiet for [`SETTLED`] (or `deadline`), so the case starts
/// where a cold boot's would: after the prompt that follows the answer, not in the middle of it.
/// Before a save it keeps a line end the guest was still printing out of the state (`[ready]`
/// may match a line before its `\r\n`, which a restored guest would then print first).
pub(super) fn settle(session: &mut Session, deadline: Instant) {
    let mut lines = Vec::new();
    loop {
        let quiet = (Instant::now() + SETTLED).min(deadline);
        match session.read(quiet, &mut lines) {
            ReadEvent::Output if Instant::now() < deadline => lines.clear(),
            _ => return,
        }
    }
}

/// 64 random bits in hex, from the OS's hasher seeds (no extra dependency for one token).
fn token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("vmh{:016x}", hasher.finish())
}

/// Seconds since the epoch (0 if the clock is before it).
pub(super) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
