//! A console session: QEMU's serial pty read continuously, cleaned, split into timestamped
//! lines, appended to `console.log`, with a bounded tail in memory.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::ansi::AnsiStripper;
use super::lines::{LineSplitter, Tail};
use crate::qemu::{ExitStatus, QemuProcess};

/// Lines kept in memory for failure reports.
const TAIL_LINES: usize = 200;

/// What happened while waiting for console output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadEvent {
    /// New output arrived (complete lines are in the caller's vector, the rest is partial).
    Output,
    /// The deadline passed without output.
    Idle,
    /// The console closed: QEMU has exited (or closed its serial port).
    Closed,
}

/// A timestamped console line.
#[derive(Debug, Clone)]
pub struct Line {
    /// Time since QEMU started.
    pub at: Duration,
    /// The text, with escape sequences and `\r` removed.
    pub text: String,
}

/// QEMU's serial console, owned together with the QEMU process.
pub struct Session {
    process: QemuProcess,
    pty: File,
    stripper: AnsiStripper,
    splitter: LineSplitter,
    log: BufWriter<File>,
    log_path: PathBuf,
    tail: Tail,
    started: Instant,
    last_output: Instant,
    bytes: u64,
    closed: bool,
    buffer: Vec<u8>,
    cleaned: Vec<u8>,
    pending: Vec<String>,
    tee: Option<Box<dyn Write + Send>>,
}

impl Session {
    /// Wraps a freshly spawned QEMU; console lines are appended to `log_path`.
    pub fn new(process: QemuProcess, log_path: &Path) -> std::io::Result<Session> {
        let pty = process.pty_file()?;
        let log = BufWriter::with_capacity(64 * 1024, File::create(log_path)?);
        let now = Instant::now();
        Ok(Session {
            process,
            pty,
            stripper: AnsiStripper::new(),
            splitter: LineSplitter::default(),
            log,
            log_path: log_path.to_path_buf(),
            tail: Tail::new(TAIL_LINES),
            started: now,
            last_output: now,
            bytes: 0,
            closed: false,
            buffer: vec![0; 64 * 1024],
            cleaned: Vec::with_capacity(64 * 1024),
            pending: Vec::new(),
            tee: None,
        })
    }

    /// Waits until output arrives, the console closes, or `deadline` passes. Complete lines
    /// are appended to `lines` (and to the log and the tail).
    pub fn read(&mut self, deadline: Instant, lines: &mut Vec<Line>) -> ReadEvent {
        if self.closed {
            return ReadEvent::Closed;
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        // Round up so that we never spin on a sub-millisecond remainder.
        let millis = wait.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        let mut fds = [PollFd::new(self.pty.as_fd(), PollFlags::POLLIN)];
        match poll(
            &mut fds,
            PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(0) => return ReadEvent::Idle,
            Ok(_) => {}
            Err(Errno::EINTR) => return ReadEvent::Idle,
            Err(_) => return self.close(lines),
        }
        match self.pty.read(&mut self.buffer) {
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
                let texts = std::mem::take(&mut self.pending);
                for text in &texts {
                    self.record(at, text, lines);
                }
                self.pending = texts;
                let _ = self.log.flush();
                ReadEvent::Output
            }
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => ReadEvent::Idle,
            // EIO: the slave side is closed because QEMU exited.
            Err(_) => self.close(lines),
        }
    }

    fn record(&mut self, at: Duration, text: &str, lines: &mut Vec<Line>) {
        let _ = writeln!(self.log, "[{:>11.6}] {text}", at.as_secs_f64());
        self.tail.push(text);
        lines.push(Line {
            at,
            text: text.to_string(),
        });
    }

    fn close(&mut self, lines: &mut Vec<Line>) -> ReadEvent {
        self.closed = true;
        if let Some(text) = self.splitter.finish() {
            self.record(self.started.elapsed(), &text, lines);
        }
        let _ = self.log.flush();
        ReadEvent::Closed
    }

    /// Copies the cleaned console bytes to `tee` as they arrive (e.g. to a terminal).
    pub fn set_tee(&mut self, tee: Box<dyn Write + Send>) {
        self.tee = Some(tee);
    }

    /// Writes bytes to the guest's serial input.
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.pty.write_all(bytes)?;
        self.pty.flush()
    }

    /// The unfinished last line, e.g. a shell prompt.
    pub fn partial(&self) -> String {
        self.splitter.partial()
    }

    /// The last `n` console lines, plus the unfinished one if any.
    pub fn tail(&self, n: usize) -> Vec<String> {
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
    pub fn last_output(&self) -> Instant {
        self.last_output
    }

    /// When QEMU was started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Console bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes
    }

    /// Where the full console log is written.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// QEMU's exit status once it has exited; waits up to `grace` for it.
    pub fn wait_exit(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.process.wait_timeout(grace)
    }

    /// Kills QEMU (its whole process group) and flushes the log. Returns QEMU's exit status.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        let _ = self.log.flush();
        self.process.kill()
    }

    /// QEMU's pid.
    pub fn pid(&self) -> nix::unistd::Pid {
        self.process.pid()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.log.flush();
    }
}
