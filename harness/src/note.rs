//! Notes a run reports next to its verdict: facts about the setup a user should see.

use std::fmt;
use std::time::Duration;

/// One setup fact.
#[derive(Debug, Clone, PartialEq)]
pub enum Note {
    /// `accel = "auto"` used TCG, and why KVM was not used.
    AccelFallback(String),
    /// Every deadline was multiplied by this factor.
    TimeoutsScaled(f64),
    /// The console log could not be written completely.
    LogIncomplete(String),
    /// This process booted to `[ready]` and saved the guest's state there.
    StateSaved {
        /// The state's key (short).
        key: String,
        /// The migration stream's size.
        bytes: u64,
        /// The guest RAM file's size on disk (`template`).
        ram_bytes: Option<u64>,
        /// How long the boot to `[ready]` took.
        boot: Duration,
        /// How long stopping, freezing the disk and saving took.
        save: Duration,
    },
    /// The case started from a saved state instead of booting.
    StateRestored {
        /// The state's key (short).
        key: String,
        /// How it was loaded (`exec`, `file`, `mapped-ram`).
        method: &'static str,
        /// How old the state is: the guest's wall clock lags by this much.
        age: Duration,
        /// QEMU's start to the VM running again (loaded and continued).
        resumed: Duration,
        /// QEMU's start to the guest's answer to the probe.
        took: Duration,
        /// The probe set the guest's clock (`{epoch}`), which otherwise lags by `age`.
        clock_set: bool,
        /// QEMU was started while the case before ran (a spare): `resumed` and `took` count
        /// from the case taking it over, not from QEMU's start.
        started_early: bool,
    },
    /// The case booted cold, and why no saved state was used.
    ColdBoot(String),
    /// A saved state was thrown away, and why.
    StateDiscarded(String),
    /// QEMU got no QMP socket, and why: a failure cannot show the vCPUs, cases boot cold.
    NoQmp(String),
    /// Earlier attempts failed and the config's `[retries]` allowed another (a known flake of
    /// the software under test, named by the config).
    Retried {
        /// Each failed attempt, one line: its verdict and its log.
        failed: Vec<String>,
        /// How many attempts the policy allows in all.
        allowed: u32,
        /// The config's reason (`[retries] why`).
        why: String,
    },
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
            Note::StateSaved {
                key,
                bytes,
                ram_bytes,
                boot,
                save,
            } => write!(
                f,
                "saved the guest's state at [ready] after a {:.2} s boot, in {:.2} s (state {key}, {:.1} MB{}; that boot's logs are in save/)",
                boot.as_secs_f64(),
                save.as_secs_f64(),
                *bytes as f64 / 1e6,
                ram_bytes
                    .map(|ram| format!(" and a RAM file taking {:.1} MB", ram as f64 / 1e6))
                    .unwrap_or_default()
            ),
            Note::StateRestored {
                key,
                method,
                age,
                resumed,
                took,
                clock_set,
                started_early,
            } => write!(
                f,
                "started from the state saved at [ready]{}: running after {:.2} s, answering after {:.2} s (state {key}, {method}; saved {} s ago, {})",
                match started_early {
                    true => " in a QEMU started while the case before ran",
                    false => "",
                },
                resumed.as_secs_f64(),
                took.as_secs_f64(),
                age.as_secs(),
                match clock_set {
                    true => "the probe set the guest's clock",
                    false => "so the guest's wall clock lags by that",
                }
            ),
            Note::ColdBoot(why) => write!(f, "booted cold: {why}"),
            Note::StateDiscarded(why) => write!(f, "discarded a saved state: {why}"),
            Note::NoQmp(why) => write!(
                f,
                "no QMP socket ({why}): a failure cannot show the vCPUs, and cases boot cold"
            ),
            Note::Remote { destination, dir } => {
                write!(f, "remote: QEMU runs on {destination} in {dir}")
            }
            Note::Retried {
                failed,
                allowed,
                why,
            } => {
                write!(
                    f,
                    "attempt {} of {allowed} allowed by [retries] ({why}); failed before:",
                    failed.len() + 1
                )?;
                for (index, attempt) in failed.iter().enumerate() {
                    write!(f, " [{}] {attempt}", index + 1)?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the report's `note:` lines say, pinned: a change is a reviewed diff.
    #[test]
    fn notes_read_well() {
        let notes = [
            Note::AccelFallback("the guest is aarch64 and the host is x86_64".into()),
            Note::TimeoutsScaled(2.0),
            Note::StateSaved {
                key: "49040a6d67bd4900".into(),
                bytes: 88_393_813,
                ram_bytes: None,
                boot: Duration::from_millis(7530),
                save: Duration::from_millis(460),
            },
            Note::StateSaved {
                key: "7d1f0c2a9be34411".into(),
                bytes: 435_419,
                ram_bytes: Some(93_581_312),
                boot: Duration::from_millis(7410),
                save: Duration::from_millis(40),
            },
            Note::StateRestored {
                key: "49040a6d67bd4900".into(),
                method: "exec",
                age: Duration::from_secs(95),
                resumed: Duration::from_millis(200),
                took: Duration::from_millis(300),
                clock_set: false,
                started_early: false,
            },
            Note::StateRestored {
                key: "ee39facc8a51c5ac".into(),
                method: "mapped-ram",
                age: Duration::from_secs(3600),
                resumed: Duration::from_millis(160),
                took: Duration::from_millis(280),
                clock_set: true,
                started_early: true,
            },
            Note::ColdBoot("VMHARNESS_SAVED_STATES=off".into()),
            Note::NoQmp(
                "cannot make a QMP socket path in /t/vmh1-x-abc: /proc/1/fd/3 does not lead to the run's temp dir"
                    .into(),
            ),
            Note::StateDiscarded(
                "saved state /s/49040a6d is damaged: state is 5 bytes, meta.toml says 88393813"
                    .into(),
            ),
            Note::Retried {
                failed: vec!["TIMEOUT: no console output for 120.000s (log /l/a/console.log)".into()],
                allowed: 2,
                why: "AxVisor riscv64 at 0c9b89a5 hangs in about 1% of cases".into(),
            },
        ];
        let text: Vec<String> = notes.iter().map(ToString::to_string).collect();
        insta::assert_snapshot!(text.join("\n"));
    }
}
