//! The crash block: from the first failure line (a Rust panic, Linux's `Kernel panic`,
//! `Oops`, `BUG:`, `WARNING:`) through its end (`---[ end ...`), labelled with its kind, kept
//! whole for the report even when it is longer than the tail.

/// At most this many lines of one block are kept.
pub(crate) const MAX_CRASH_LINES: usize = 200;

/// A crash block and its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrashBlock {
    /// `panic`, `oops`, `bug` or `warning`.
    pub kind: &'static str,
    /// Its lines, first the one that started it.
    pub lines: Vec<String>,
    /// Whether its end line was seen (or the block is a one-liner kind).
    pub complete: bool,
    /// Code addresses in its lines and what they are, where symbols cover them.
    pub symbols: Vec<(u64, String)>,
}

impl CrashBlock {
    /// Symbolizes every hex address in the block that falls inside the symbols' text.
    pub(crate) fn symbolize(&mut self, symbols: &super::symbols::Symbols) {
        static HEX: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
        let hex = HEX.get_or_init(|| {
            regex::Regex::new(r"\b0x([0-9a-fA-F]{4,16})\b|\b([0-9a-fA-F]{8,16})\b")
                .expect("valid regex")
        });
        for line in &self.lines {
            for found in hex.captures_iter(line) {
                let Some(digits) = found.get(1).or_else(|| found.get(2)) else {
                    continue;
                };
                let Ok(address) = u64::from_str_radix(digits.as_str(), 16) else {
                    continue;
                };
                if self.symbols.iter().any(|(a, _)| *a == address) {
                    continue;
                }
                if let Some(symbol) = symbols.describe(address) {
                    self.symbols.push((address, symbol));
                }
            }
        }
    }
}

/// Which line starts a block, and its kind.
fn starts(line: &str) -> Option<&'static str> {
    if line.contains("Kernel panic - not syncing")
        || line.contains("panicked at")
        || line.contains("Panicked at")
    {
        return Some("panic");
    }
    if line.contains("Internal error: Oops") || line.contains("Oops:") {
        return Some("oops");
    }
    if line.contains("BUG:") {
        return Some("bug");
    }
    if line.contains("WARNING:") {
        return Some("warning");
    }
    None
}

/// Watches the console for the first crash block.
#[derive(Debug, Default)]
pub(crate) struct CrashDetector {
    block: Option<CrashBlock>,
}

impl CrashDetector {
    /// Sees one console line.
    pub(crate) fn line(&mut self, text: &str) {
        match &mut self.block {
            None => {
                if let Some(kind) = starts(text) {
                    self.block = Some(CrashBlock {
                        kind,
                        lines: vec![text.to_string()],
                        complete: false,
                        symbols: Vec::new(),
                    });
                }
            }
            Some(block) if !block.complete => {
                if block.lines.len() < MAX_CRASH_LINES {
                    block.lines.push(text.to_string());
                }
                if text.contains("---[ end") {
                    block.complete = true;
                }
            }
            Some(_) => {}
        }
    }

    /// Whether a block started and has not ended yet (more lines are worth waiting for).
    pub(crate) fn open(&self) -> bool {
        self.block.as_ref().is_some_and(|b| !b.complete)
    }

    /// The block, if one started.
    pub(crate) fn finish(self) -> Option<CrashBlock> {
        self.block
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_linux_panic_block_runs_to_its_end_marker() {
        let mut detector = CrashDetector::default();
        for line in [
            "[    1.0] booting",
            "[    2.0] sysrq: Trigger a crash",
            "[    2.0] Kernel panic - not syncing: sysrq triggered crash",
            "[    2.0] CPU: 0 PID: 1 Comm: sh",
            "[    2.0] Call trace:",
            "[    2.0]  dump_backtrace+0x0/0x1e0",
            "[    2.0] ---[ end Kernel panic - not syncing: sysrq triggered crash ]---",
            "[    3.0] after",
        ] {
            detector.line(line);
        }
        let block = detector.finish().unwrap();
        assert_eq!(block.kind, "panic");
        assert_eq!(block.lines.len(), 5);
        assert!(block.complete);
        let mut rust = CrashDetector::default();
        rust.line("panicked at src/main.rs:3:5:");
        assert!(rust.open());
        assert_eq!(rust.finish().unwrap().kind, "panic");
    }
}
