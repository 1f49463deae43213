//! `console.log`: every console line with its time, bounded. Past the limit the log keeps its
//! first half and a rolling last half, with a marker saying what was dropped between them;
//! matching sees every line regardless. A write error is kept, so the run can report it.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Duration;

pub use crate::settings::DEFAULT_LOG_LIMIT;

/// A console log being written.
pub(crate) struct ConsoleLog {
    file: BufWriter<File>,
    head_limit: u64,
    tail_limit: u64,
    written: u64,
    tail: VecDeque<String>,
    tail_bytes: u64,
    dropped_lines: u64,
    dropped_bytes: u64,
    error: Option<std::io::Error>,
}

impl ConsoleLog {
    /// Creates (truncates) the log at `path`, capped at `limit` bytes plus the marker.
    pub(crate) fn create(path: &Path, limit: u64) -> std::io::Result<ConsoleLog> {
        let file = File::create(path)?;
        Ok(ConsoleLog {
            file: BufWriter::with_capacity(64 * 1024, file),
            head_limit: limit / 2,
            tail_limit: limit - limit / 2,
            written: 0,
            tail: VecDeque::new(),
            tail_bytes: 0,
            dropped_lines: 0,
            dropped_bytes: 0,
            error: None,
        })
    }

    /// Appends one console line seen `at` after QEMU started.
    pub(crate) fn line(&mut self, at: Duration, text: &str) {
        let entry = format!("[{:>11.6}] {text}\n", at.as_secs_f64());
        let size = entry.len() as u64;
        if self.tail.is_empty() && self.written + size <= self.head_limit {
            self.written += size;
            self.write(entry.as_bytes());
            return;
        }
        self.tail_bytes += size;
        self.tail.push_back(entry);
        while self.tail_bytes > self.tail_limit {
            let Some(old) = self.tail.pop_front() else {
                break;
            };
            self.tail_bytes -= old.len() as u64;
            self.dropped_lines += 1;
            self.dropped_bytes += old.len() as u64;
        }
    }

    /// Flushes what is written so far (the rolling tail stays in memory until [`finish`]).
    ///
    /// [`finish`]: ConsoleLog::finish
    pub(crate) fn flush(&mut self) {
        if let Err(err) = self.file.flush() {
            self.error.get_or_insert(err);
        }
    }

    /// Writes the marker and the tail, flushes, and returns the first write error, if any.
    pub(crate) fn finish(&mut self) -> Result<(), std::io::Error> {
        if self.dropped_lines > 0 {
            let marker = format!(
                "[vmharness] console log limit: {} lines ({} bytes) were dropped here; \
                 every line was still matched (VMHARNESS_CONSOLE_LOG_LIMIT raises the limit)\n",
                self.dropped_lines, self.dropped_bytes
            );
            self.write(marker.as_bytes());
            self.dropped_lines = 0;
        }
        let tail = std::mem::take(&mut self.tail);
        for entry in &tail {
            self.write(entry.as_bytes());
        }
        self.tail_bytes = 0;
        self.flush();
        match self.error.take() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        if self.error.is_some() {
            return;
        }
        if let Err(err) = self.file.write_all(bytes) {
            self.error = Some(err);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_keeps_head_and_tail_within_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        let mut log = ConsoleLog::create(&path, 64 * 1024).unwrap();
        for i in 0..100_000 {
            log.line(Duration::from_millis(i), &format!("flood {i:08}"));
        }
        log.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.len() < 64 * 1024 + 512, "{} bytes", text.len());
        assert!(
            text.starts_with("[   0.000000] flood 00000000\n"),
            "{}",
            &text[..80]
        );
        assert!(text.trim_end().ends_with("flood 00099999"));
        assert!(text.contains("lines ("), "no marker");
    }

    #[test]
    fn write_errors_are_kept_for_the_report() {
        let mut log = ConsoleLog::create(Path::new("/dev/full"), DEFAULT_LOG_LIMIT).unwrap();
        for i in 0..10_000 {
            log.line(Duration::ZERO, &format!("line {i}"));
            log.flush();
        }
        let err = log.finish().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(nix::libc::ENOSPC), "{err}");
    }
}
