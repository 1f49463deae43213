//! Splitting the console byte stream into lines and keeping a bounded tail of them.

use std::collections::VecDeque;

/// Lines longer than this are split, so a guest that never prints `\n` cannot grow memory.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// How much of a cut line's end is carried into matching its next piece: a pattern up to this
/// long is found wherever the line was cut (by the judge and the results collector alike).
pub const CARRY_BYTES: usize = 4096;

/// A piece of the console the splitter emits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// The text, decoded as lossy UTF-8.
    pub text: String,
    /// The line went on: it was cut at [`MAX_LINE_BYTES`], not ended by `\n`.
    pub cut: bool,
}

/// Splits bytes into lines at `\n`, dropping `\r` (the pty turns `\r\n` into `\r\r\n`).
#[derive(Debug, Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    /// Feeds bytes; complete lines and cut pieces of overlong lines are appended to `lines`.
    pub fn feed(&mut self, input: &[u8], lines: &mut Vec<Piece>) {
        for &byte in input {
            match byte {
                b'\n' => lines.push(Piece {
                    text: self.take(),
                    cut: false,
                }),
                b'\r' => {}
                _ => {
                    self.partial.push(byte);
                    if self.partial.len() >= MAX_LINE_BYTES {
                        lines.push(Piece {
                            text: self.take(),
                            cut: true,
                        });
                    }
                }
            }
        }
    }

    /// The unfinished last line (e.g. a prompt), decoded lossily.
    pub(crate) fn partial(&self) -> String {
        String::from_utf8_lossy(&self.partial).into_owned()
    }

    /// Whether there is an unfinished line.
    pub(crate) fn has_partial(&self) -> bool {
        !self.partial.is_empty()
    }

    /// Ends the unfinished line (at EOF) and returns it, if any.
    pub fn finish(&mut self) -> Option<String> {
        self.has_partial().then(|| self.take())
    }

    fn take(&mut self) -> String {
        let line = String::from_utf8_lossy(&self.partial).into_owned();
        self.partial.clear();
        line
    }
}

/// The last `capacity` lines, each cut to a readable length.
#[derive(Debug)]
pub(crate) struct Tail {
    lines: VecDeque<String>,
    capacity: usize,
}

/// Lines kept in the tail are cut to this many characters.
const TAIL_LINE_CHARS: usize = 500;

impl Tail {
    /// An empty tail holding at most `capacity` lines.
    pub(crate) fn new(capacity: usize) -> Self {
        Tail {
            lines: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Adds a line, dropping the oldest when full.
    pub(crate) fn push(&mut self, line: &str) {
        if self.lines.len() == self.capacity {
            self.lines.pop_front();
        }
        let mut kept: String = line.chars().take(TAIL_LINE_CHARS).collect();
        if kept.len() < line.len() {
            kept.push_str(" […]");
        }
        self.lines.push_back(kept);
    }

    /// The last `n` lines, oldest first.
    pub(crate) fn last(&self, n: usize) -> Vec<String> {
        let skip = self.lines.len().saturating_sub(n);
        self.lines.iter().skip(skip).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_crlf_and_pty_doubled_cr() {
        let mut splitter = LineSplitter::default();
        let mut lines = Vec::new();
        splitter.feed(b"one\r\r\ntw", &mut lines);
        splitter.feed(b"o\r\n=> ", &mut lines);
        let texts: Vec<&str> = lines.iter().map(|p| p.text.as_str()).collect();
        assert_eq!(texts, ["one", "two"]);
        assert_eq!(splitter.partial(), "=> ");
        assert_eq!(splitter.finish().as_deref(), Some("=> "));
        assert!(!splitter.has_partial());
    }

    #[test]
    fn utf8_split_across_reads_is_decoded_whole() {
        let mut splitter = LineSplitter::default();
        let mut lines = Vec::new();
        let bytes = "Grüße\n".as_bytes();
        splitter.feed(&bytes[..3], &mut lines);
        splitter.feed(&bytes[3..], &mut lines);
        assert_eq!(lines[0].text, "Grüße");
    }

    #[test]
    fn endless_line_is_split_and_tail_is_bounded() {
        let mut splitter = LineSplitter::default();
        let mut lines = Vec::new();
        splitter.feed(&vec![b'x'; MAX_LINE_BYTES * 2 + 5], &mut lines);
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|p| p.cut));
        let mut tail = Tail::new(3);
        for i in 0..10 {
            tail.push(&format!("line {i}"));
        }
        assert_eq!(tail.last(2), ["line 8", "line 9"]);
        assert_eq!(tail.last(40).len(), 3);
    }
}
