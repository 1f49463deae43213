//! The serial console: ANSI stripping, line splitting, logging, and the live session.

mod ansi;
mod lines;
mod log;
mod session;

pub use ansi::AnsiStripper;
pub use lines::{LineSplitter, Piece, Tail, CARRY_BYTES, MAX_LINE_BYTES};
pub use log::{ConsoleLog, DEFAULT_LOG_LIMIT};
pub use session::{key_name, ConsoleInput, Line, ReadEvent, Session};
