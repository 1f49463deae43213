//! A console session: QEMU's serial pty read continuously, cleaned, split into timestamped
//! lines, appended to `console.log`, with a bounded tail in memory.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::ansi::AnsiStripper;
use super::lines::{LineSplitter, Piece, Tail};
use super::log::ConsoleLog;
use crate::qemu::{ExitStatus, QemuProcess};

/// Lines kept in memory for failure reports.
const TAIL_LINES: usize = 200;

/// What happened while waiting for console output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadEvent {
    /// New output arrived (complete lines are in the caller's vector, the rest is partial).
    Output,
    /// The deadline passed without output.
    Idle,
    /// The console closed: QEMU has exited (or closed its serial port).
    Closed,
}

/// Keyboard input for an interactive session: bytes read from `fd` go to the guest's serial
/// input, and the `escape` byte (e.g. `0x1d`, Ctrl-]) ends the session and kills QEMU.
#[derive(Debug)]
pub struct ConsoleInput {
    /// Where input comes from (typically a duplicate of stdin).
    pub fd: OwnedFd,
    /// The byte that detaches; `None`: only QEMU's exit ends the session.
    pub escape: Option<u8>,
}

/// How a key such as Ctrl-] is written in messages: `Ctrl-]` for control bytes, else hex.
pub fn key_name(byte: u8) -> String {
    match byte {
        0x00..=0x1f => format!("Ctrl-{}", char::from(byte + 0x40)),
        0x20..=0x7e => format!("`{}`", char::from(byte)),
        _ => format!("0x{byte:02x}"),
    }
}

/// A timestamped console line.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    /// Time since QEMU started.
    pub at: Duration,
    /// The text, with escape sequences and `\r` removed.
    pub text: String,
    /// The line went on: this piece was cut at the line cap, the next piece continues it.
    pub cut: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InputEvent {
    Forwarded,
    Escape,
}

/// QEMU's serial console, owned together with the QEMU process.
pub(crate) struct Session {
    process: QemuProcess,
    reader: File,
    writer: File,
    stripper: AnsiStripper,
    splitter: LineSplitter,
    log: ConsoleLog,
    tail: Tail,
    started: Instant,
    last_output: Instant,
    bytes: u64,
    closed: bool,
    buffer: Vec<u8>,
    cleaned: Vec<u8>,
    pending: Vec<Piece>,
    tee: Option<Box<dyn Write + Send>>,
    input: Option<ConsoleInput>,
    detached: bool,
}

impl Session {
    /// Wraps a freshly spawned QEMU; console lines go to `log_path`, capped at `log_limit`
    /// bytes ([`ConsoleLog`]).
    pub(crate) fn new(
        process: QemuProcess,
        log_path: &Path,
        log_limit: u64,
    ) -> std::io::Result<Session> {
        let reader = process.console_reader()?;
        let writer = process.console_writer()?;
        let log = ConsoleLog::create(log_path, log_limit)?;
        let now = Instant::now();
        Ok(Session {
            process,
            reader,
            writer,
            stripper: AnsiStripper::new(),
            splitter: LineSplitter::default(),
            log,
            tail: Tail::new(TAIL_LINES),
            started: now,
            last_output: now,
            bytes: 0,
            closed: false,
            buffer: vec![0; 64 * 1024],
            cleaned: Vec::with_capacity(64 * 1024),
            pending: Vec::new(),
            tee: None,
            input: None,
            detached: false,
        })
    }

    /// Waits until output arrives, the console closes, or `deadline` passes. Complete lines
    /// are appended to `lines` (and to the log and the tail).
    pub(crate) fn read(&mut self, deadline: Instant, lines: &mut Vec<Line>) -> ReadEvent {
        if self.closed {
            return ReadEvent::Closed;
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        // Round up so that we never spin on a sub-millisecond remainder.
        let millis = wait.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        let mut fds = vec![PollFd::new(self.reader.as_fd(), PollFlags::POLLIN)];
        if let Some(input) = &self.input {
            fds.push(PollFd::new(input.fd.as_fd(), PollFlags::POLLIN));
        }
        match poll(
            &mut fds,
            PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(0) => return ReadEvent::Idle,
            Ok(_) => {}
            Err(Errno::EINTR) => return ReadEvent::Idle,
            Err(_) => return self.close(lines),
        }
        let ready = |fd: Option<&PollFd>| {
            fd.and_then(PollFd::revents).is_some_and(|events| {
                events.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR)
            })
        };
        let (console_ready, input_ready) = (ready(fds.first()), ready(fds.get(1)));
        drop(fds);
        if input_ready && self.forward_input() == InputEvent::Escape {
            self.detached = true;
            self.kill();
            return self.close(lines);
        }
        if !console_ready {
            return ReadEvent::Idle;
        }
        match self.reader.read(&mut self.buffer) {
            Ok(0) => self.close(lines),
            Ok(count) => {
                self.bytes += count as u64;
                self.last_output = Instant::now();
                self.cleaned.clear();
                self.stripper.feed(&self.buffer[..count], &mut self.cleaned);
                if let Some(tee) = self.tee.as_mut() {
                    let _ = tee.write_all(&self.cleaned).and_then(|()| tee.flush());
                }
                self.pending.clear();
                self.splitter.feed(&self.cleaned, &mut self.pending);
                // A line's time is when its last bytes were read, not when splitting finished.
                let at = self.last_output.saturating_duration_since(self.started);
                let pieces = std::mem::take(&mut self.pending);
                for piece in &pieces {
                    self.record(at, &piece.text, piece.cut, lines);
                }
                self.pending = pieces;
                self.log.flush();
                ReadEvent::Output
            }
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => ReadEvent::Idle,
            // EIO: the slave side is closed because QEMU exited.
            Err(_) => self.close(lines),
        }
    }

    fn record(&mut self, at: Duration, text: &str, cut: bool, lines: &mut Vec<Line>) {
        self.log.line(at, text);
        self.tail.push(text);
        lines.push(Line {
            at,
            text: text.to_string(),
            cut,
        });
    }

    fn close(&mut self, lines: &mut Vec<Line>) -> ReadEvent {
        self.closed = true;
        if let Some(text) = self.splitter.finish() {
            self.record(self.started.elapsed(), &text, false, lines);
        }
        self.log.flush();
        ReadEvent::Closed
    }

    /// Moves pending keyboard input to the guest; stops reading input at its end of file.
    fn forward_input(&mut self) -> InputEvent {
        let Some(input) = &self.input else {
            return InputEvent::Forwarded;
        };
        let mut bytes = [0u8; 4096];
        let count = match nix::unistd::read(&input.fd, &mut bytes) {
            Ok(0) | Err(Errno::EIO | Errno::EBADF) => {
                self.input = None;
                return InputEvent::Forwarded;
            }
            Ok(count) => count,
            Err(_) => return InputEvent::Forwarded,
        };
        let bytes = &bytes[..count];
        let escape_at = input
            .escape
            .and_then(|escape| bytes.iter().position(|b| *b == escape));
        let forward = &bytes[..escape_at.unwrap_or(bytes.len())];
        if !forward.is_empty() {
            let _ = self.send(forward);
        }
        match escape_at {
            Some(_) => InputEvent::Escape,
            None => InputEvent::Forwarded,
        }
    }

    /// Forwards keyboard input to the guest from now on (see [`ConsoleInput`]).
    pub(crate) fn set_input(&mut self, input: ConsoleInput) {
        self.input = Some(input);
    }

    /// Whether keyboard input is being forwarded (an interactive session).
    pub(crate) fn is_interactive(&self) -> bool {
        self.input.is_some() || self.detached
    }

    /// Whether the user ended the session with the escape key.
    pub(crate) fn detached(&self) -> bool {
        self.detached
    }

    /// Writes a harness message to the tee (not to the log), e.g. a note for the user.
    pub(crate) fn tee_note(&mut self, text: &str) {
        if let Some(tee) = self.tee.as_mut() {
            let _ = tee.write_all(text.as_bytes()).and_then(|()| tee.flush());
        }
    }

    /// Copies the cleaned console bytes to `tee` as they arrive (e.g. to a terminal).
    pub(crate) fn set_tee(&mut self, tee: Box<dyn Write + Send>) {
        self.tee = Some(tee);
    }

    /// Writes bytes to the guest's serial input.
    pub(crate) fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes)?;
        self.writer.flush()
    }

    /// The unfinished last line, e.g. a shell prompt.
    pub(crate) fn partial(&self) -> String {
        self.splitter.partial()
    }

    /// The last `n` console lines, plus the unfinished one if any.
    pub(crate) fn tail(&self, n: usize) -> Vec<String> {
        let mut lines = self.tail.last(n);
        if self.splitter.has_partial() {
            if lines.len() == n {
                lines.remove(0);
            }
            lines.push(self.splitter.partial());
        }
        lines
    }

    /// When the last output arrived.
    pub(crate) fn last_output(&self) -> Instant {
        self.last_output
    }

    /// When QEMU was started.
    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    /// Console bytes read so far.
    pub(crate) fn bytes_read(&self) -> u64 {
        self.bytes
    }

    /// QEMU's exit status once it has exited; waits up to `grace` for it.
    pub(crate) fn wait_exit(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.process.wait_timeout(grace)
    }

    /// Kills QEMU (its whole process group) and flushes the log, with the unfinished last
    /// line (a prompt a verdict matched) kept in it and in the tail. Returns QEMU's exit status.
    pub(crate) fn kill(&mut self) -> Option<ExitStatus> {
        let status = self.process.kill();
        if !self.closed {
            let mut lines = Vec::new();
            self.close(&mut lines);
        }
        status
    }

    /// Completes the log (the kept tail of a capped log, the flush) and returns the first
    /// error writing it: a log that is not whole must not pass unnoticed.
    pub(crate) fn finish_log(&mut self) -> Result<(), std::io::Error> {
        self.log.finish()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.log.finish();
    }
}
