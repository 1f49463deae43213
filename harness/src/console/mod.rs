//! The serial console: ANSI stripping, line splitting, logging, and the live session.

mod ansi;
mod lines;
mod log;
mod session;

pub use ansi::AnsiStripper;
pub use lines::{LineSplitter, Piece, CARRY_BYTES, MAX_LINE_BYTES};
pub use log::DEFAULT_LOG_LIMIT;
pub use session::{key_name, ConsoleInput};
pub(crate) use session::{Line, ReadEvent, Session};
