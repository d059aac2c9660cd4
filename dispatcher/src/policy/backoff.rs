//! Waiting between attempts: the one retry schedule for handler retries,
//! dead-letter writes and offset commits.

use std::time::Duration;

/// The wait between attempts of a failing record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Backoff {
    /// The same delay before every retry.
    Fixed(Duration),
    /// `initial * factor^(retry-1)`, capped at `max`, then spread by
    /// `jitter` (0.0 to 1.0: the delay is drawn from
    /// `[d * (1 - jitter), d]`).
    Exponential {
        /// Delay before the first retry.
        initial: Duration,
        /// Upper bound of any delay.
        max: Duration,
        /// Growth per retry, at least 1.0.
        factor: f64,
        /// Fraction of the delay to randomise, from 0.0 to 1.0.
        jitter: f64,
    },
}

impl Backoff {
    /// The same delay before every retry.
    pub const fn fixed(delay: Duration) -> Self {
        Backoff::Fixed(delay)
    }

    /// `initial`, doubling up to `max`, without jitter.
    pub const fn exponential(initial: Duration, max: Duration) -> Self {
        Backoff::Exponential {
            initial,
            max,
            factor: 2.0,
            jitter: 0.0,
        }
    }

    /// The default: exponential from 100 ms, doubling, capped at 10 s, no
    /// jitter.
    pub const DEFAULT: Backoff = Backoff::Exponential {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(10),
        factor: 2.0,
        jitter: 0.0,
    };

    /// The delay before retry number `retry` (1 for the wait after the first
    /// failed attempt). `random` is a uniform draw from `[0, 1)` used for
    /// jitter.
    pub fn delay(&self, retry: u32, random: f64) -> Duration {
        match *self {
            Backoff::Fixed(d) => d,
            Backoff::Exponential {
                initial,
                max,
                factor,
                jitter,
            } => {
                let exp = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
                let raw = initial.as_secs_f64() * factor.max(1.0).powi(exp);
                let capped = raw.min(max.as_secs_f64());
                let spread = capped * jitter.clamp(0.0, 1.0) * random.clamp(0.0, 1.0);
                Duration::try_from_secs_f64(capped - spread).unwrap_or(max)
            }
        }
    }

    /// Checks the values with the attribute's rules.
    pub(crate) fn check(&self) -> Result<(), String> {
        match *self {
            Backoff::Fixed(_) => Ok(()),
            Backoff::Exponential {
                initial,
                max,
                factor,
                jitter,
            } => dispatcher_rules::policy::check_exponential(
                u64::try_from(initial.as_millis()).unwrap_or(u64::MAX),
                u64::try_from(max.as_millis()).unwrap_or(u64::MAX),
                factor,
                jitter,
            ),
        }
    }
}

/// How persistently an operation is retried: at most `attempts` attempts in
/// all, the first included, with [`Backoff`] delays between them.
///
/// One type for every retry in the dispatcher: a handler's (its
/// `max_attempts` and `backoff`), dead-letter writes
/// ([`DispatcherBuilder::dead_letter_retry`]) and final offset commits
/// ([`DispatcherBuilder::commit_retry`]).
///
/// [`DispatcherBuilder::dead_letter_retry`]: crate::DispatcherBuilder::dead_letter_retry
/// [`DispatcherBuilder::commit_retry`]: crate::DispatcherBuilder::commit_retry
///
/// ```
/// use dispatcher::policy::{Backoff, RetrySchedule};
/// use std::time::Duration;
///
/// let schedule = RetrySchedule::new(3, Backoff::fixed(Duration::from_millis(100)));
/// assert_eq!(schedule.delay_before(1), Some(Duration::from_millis(100)));
/// assert_eq!(schedule.delay_before(2), Some(Duration::from_millis(100)));
/// assert_eq!(schedule.delay_before(3), None, "three attempts in all");
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetrySchedule {
    attempts: u32,
    backoff: Backoff,
}

impl RetrySchedule {
    /// At most `attempts` attempts (the first included), waiting
    /// `backoff` between them.
    pub const fn new(attempts: u32, backoff: Backoff) -> Self {
        RetrySchedule { attempts, backoff }
    }

    /// Attempts in all, the first included.
    pub const fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The wait between attempts.
    pub const fn backoff(&self) -> &Backoff {
        &self.backoff
    }

    #[must_use]
    pub(crate) const fn with_attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts;
        self
    }

    #[must_use]
    pub(crate) const fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The wait before retry number `retry` (1 after the first failed
    /// attempt), with fresh jitter; `None` when no attempt is left.
    pub fn delay_before(&self, retry: u32) -> Option<Duration> {
        (retry < self.attempts).then(|| self.backoff.delay(retry, rand::random::<f64>()))
    }

    /// Checks the values with the attribute's rules.
    pub(crate) fn check(&self) -> Result<(), String> {
        dispatcher_rules::policy::check_max_attempts(u64::from(self.attempts))?;
        self.backoff.check()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_backoff_grows_caps_and_jitters_down() {
        let b = Backoff::Exponential {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            factor: 3.0,
            jitter: 0.5,
        };
        assert_eq!(b.delay(1, 0.0), Duration::from_millis(100));
        assert_eq!(b.delay(2, 0.0), Duration::from_millis(300));
        assert_eq!(b.delay(3, 0.0), Duration::from_millis(900));
        assert_eq!(b.delay(4, 0.0), Duration::from_secs(1));
        assert_eq!(b.delay(40, 0.0), Duration::from_secs(1));
        assert_eq!(b.delay(2, 1.0), Duration::from_millis(150));
    }

    proptest::proptest! {
        #[test]
        fn backoff_stays_within_bounds(retry in 1u32..100, r in 0.0f64..1.0, factor in 1.0f64..10.0, jitter in 0.0f64..1.0) {
            let max = Duration::from_secs(30);
            let b = Backoff::Exponential { initial: Duration::from_millis(50), max, factor, jitter };
            let d = b.delay(retry, r);
            proptest::prop_assert!(d <= max);
            let undithered = b.delay(retry, 0.0);
            proptest::prop_assert!(d <= undithered);
            proptest::prop_assert!(d.as_secs_f64() >= undithered.as_secs_f64() * (1.0 - jitter) - 1e-9);
            proptest::prop_assert!(b.delay(retry + 1, 0.0) >= undithered);
        }
    }

    #[test]
    fn a_schedule_ends_after_its_attempts() {
        let s = RetrySchedule::new(1, Backoff::DEFAULT);
        assert_eq!(s.delay_before(1), None, "one attempt: no retry");
        assert!(RetrySchedule::new(0, Backoff::DEFAULT).check().is_err());
        let bad = RetrySchedule::new(
            2,
            Backoff::Exponential {
                initial: Duration::from_secs(2),
                max: Duration::from_secs(1),
                factor: 2.0,
                jitter: 0.0,
            },
        );
        assert!(bad
            .check()
            .expect_err("initial > max")
            .contains("longer than `max`"));
    }
}
