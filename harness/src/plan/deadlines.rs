//! Deadlines and their one scaling rule: every deadline is multiplied by
//! `VMHARNESS_TIMEOUT_SCALE`, and by `timeouts.tcg_scale` under TCG; multiplication saturates.

use std::time::{Duration, Instant};

use crate::arch::Accel;
use crate::config::TimeoutSection;

/// A deadline that never comes (a century): what "no timeout" means for a step.
pub(crate) const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `duration * scale`, saturating at [`NEVER`] (never a panic or a wrap for huge values).
pub(crate) fn scale_duration(duration: Duration, scale: f64) -> Duration {
    Duration::try_from_secs_f64(duration.as_secs_f64() * scale)
        .map_or(NEVER, |scaled| scaled.min(NEVER))
}

/// The instant `duration` after `start`, saturating far in the future (never a panic).
pub(crate) fn deadline_after(start: Instant, duration: Duration) -> Instant {
    start
        .checked_add(duration)
        .or_else(|| start.checked_add(NEVER))
        .unwrap_or_else(|| start + Duration::from_secs(24 * 3600))
}

/// The run-wide deadlines, already scaled; `None` is no deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Whole run.
    pub total: Option<Duration>,
    /// Silence.
    pub no_output: Option<Duration>,
}

/// A config's deadlines before scaling, with the factors that scale them.
#[derive(Debug, Clone, PartialEq)]
pub struct Deadlines {
    /// `timeouts.total`.
    pub total: Duration,
    /// `timeouts.no_output`.
    pub no_output: Duration,
    /// `timeouts.step`: the default for banner entries, steps and the success pattern.
    pub step: Duration,
    /// `timeouts.tcg_scale`.
    pub tcg_scale: f64,
    /// `VMHARNESS_TIMEOUT_SCALE`.
    pub env_scale: f64,
    /// False for debugging (`--gdb`): no deadline ever passes.
    pub enabled: bool,
}

impl Deadlines {
    /// The deadlines of a config under `env_scale`.
    pub fn new(timeouts: &TimeoutSection, env_scale: f64) -> Self {
        Deadlines {
            total: timeouts.total,
            no_output: timeouts.no_output,
            step: timeouts.step,
            tcg_scale: timeouts.tcg_scale,
            env_scale,
            enabled: true,
        }
    }

    /// The factor for `accel`.
    pub(crate) fn scale(&self, accel: Accel) -> f64 {
        self.env_scale
            * match accel {
                Accel::Tcg => self.tcg_scale,
                Accel::Kvm => 1.0,
            }
    }

    /// A deadline scaled for `accel`; [`NEVER`] when deadlines are off or it is `0`.
    pub(crate) fn scaled(&self, duration: Duration, accel: Accel) -> Duration {
        match self.enabled && !duration.is_zero() {
            true => scale_duration(duration, self.scale(accel)),
            false => NEVER,
        }
    }

    /// A watch window (`expect_not`) scaled for `accel`: it ends even with deadlines off.
    pub(crate) fn window(&self, duration: Duration, accel: Accel) -> Duration {
        match self.enabled {
            true => scale_duration(duration, self.scale(accel)),
            false => duration,
        }
    }

    /// The run-wide deadlines for `accel` (`0` is none).
    pub(crate) fn timeouts(&self, accel: Accel) -> Timeouts {
        let scaled = |d: Duration| {
            (self.enabled && !d.is_zero()).then(|| scale_duration(d, self.scale(accel)))
        };
        Timeouts {
            total: scaled(self.total),
            no_output: scaled(self.no_output),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_saturates_for_every_huge_factor() {
        let day = Duration::from_secs(86_400);
        for scale in [1e6, 1e12, 1e300, f64::MAX, f64::INFINITY, f64::NAN] {
            let scaled = scale_duration(day, scale);
            assert_eq!(scaled, NEVER, "{scale}");
        }
        assert_eq!(
            scale_duration(Duration::from_secs(10), 2.5),
            Duration::from_secs(25)
        );
        assert_eq!(scale_duration(Duration::MAX, 1.0), NEVER);
    }

    #[test]
    fn one_rule_for_every_deadline() {
        let deadlines = Deadlines {
            total: Duration::from_secs(100),
            no_output: Duration::from_secs(10),
            step: Duration::from_secs(5),
            tcg_scale: 3.0,
            env_scale: 2.0,
            enabled: true,
        };
        let tcg = deadlines.timeouts(Accel::Tcg);
        assert_eq!(tcg.total, Some(Duration::from_secs(600)));
        assert_eq!(tcg.no_output, Some(Duration::from_secs(60)));
        assert_eq!(
            deadlines.scaled(deadlines.step, Accel::Kvm),
            Duration::from_secs(10)
        );
        let off = Deadlines {
            enabled: false,
            ..deadlines
        };
        assert_eq!(off.timeouts(Accel::Tcg).total, None);
        assert_eq!(off.scaled(Duration::from_secs(1), Accel::Tcg), NEVER);
        assert_eq!(
            off.window(Duration::from_secs(1), Accel::Tcg),
            Duration::from_secs(1)
        );
    }
}
