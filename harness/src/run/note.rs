//! Notes a run reports next to its verdict: facts about the setup a user should see.

use std::fmt;

/// One setup fact.
#[derive(Debug, Clone, PartialEq)]
pub enum Note {
    /// `accel = "auto"` used TCG, and why KVM was not used.
    AccelFallback(String),
    /// Every deadline was multiplied by this factor.
    TimeoutsScaled(f64),
    /// The console log could not be written completely.
    LogIncomplete(String),
    /// QEMU ran on a remote host, in this temp dir.
    Remote {
        /// The ssh destination.
        destination: String,
        /// The private temp dir there.
        dir: String,
    },
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::AccelFallback(reason) => write!(f, "accel auto: using TCG because {reason}"),
            Note::TimeoutsScaled(scale) => write!(f, "timeouts scaled by {scale}"),
            Note::LogIncomplete(why) => write!(f, "the console log is incomplete: {why}"),
            Note::Remote { destination, dir } => {
                write!(f, "remote: QEMU runs on {destination} in {dir}")
            }
        }
    }
}
