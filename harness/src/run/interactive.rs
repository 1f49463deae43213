//! The end of an interactive run: after the verdict the console stays attached until QEMU
//! exits or the user presses the escape key; a quit before the verdict is reported as such.

use std::time::{Duration, Instant};

use super::drive::Ended;
use crate::console::{Line, ReadEvent, Session};
use crate::outcome::Outcome;

/// Keeps an interactive session attached after its verdict and names a user quit honestly.
/// Does nothing for a non-interactive session.
pub(super) fn finish(session: &mut Session, ended: &mut Ended) {
    if !session.is_interactive() {
        return;
    }
    if session.detached() {
        // Ctrl-] before the verdict: QEMU was killed on the user's request, not by the guest.
        ended.outcome = Outcome::Fail {
            reason: format!(
                "the console was closed with the escape key while waiting for {}",
                ended.expected
            ),
        };
        ended.exit = None;
        return;
    }
    if ended.exit.is_some() {
        return;
    }
    session.tee_note(&format!(
        "\r\n[vmharness] verdict: {}; the console stays attached until QEMU exits or you press the escape key\r\n",
        ended.outcome.label()
    ));
    let mut lines: Vec<Line> = Vec::new();
    loop {
        lines.clear();
        let deadline = Instant::now() + Duration::from_secs(3600);
        if session.read(deadline, &mut lines) == ReadEvent::Closed {
            break;
        }
        if !session.is_interactive() {
            // Input ended (stdin closed) after the verdict: nobody can detach any more.
            break;
        }
    }
}
