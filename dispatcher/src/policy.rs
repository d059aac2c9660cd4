//! The error policy of a handler: which errors retry, which stop the
//! consumer, how long to wait between attempts.

use crate::handler_error::{HandlerError, HandlerTimeout};
use std::error::Error as StdError;
use std::time::Duration;

/// What happens to a record whose handler attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Classification {
    /// Try again after the backoff, while attempts remain; then dead-letter.
    Retry,
    /// Stop the consumer: the record is not committed and is delivered again
    /// after a restart.
    Fatal,
    /// Send the record to the dead-letter topic and move on.
    DeadLetter,
}

/// A classification rule written as code, for error enums where matching by
/// type is not enough. Named in the attribute as `policy = path::TO_VALUE`.
///
/// ```
/// use dispatcher::{Classification, Classify, HandlerError};
///
/// #[derive(Debug, thiserror::Error)]
/// enum PaymentError {
///     #[error("gateway busy")]
///     Busy,
///     #[error("card rejected")]
///     Rejected,
/// }
///
/// struct PaymentPolicy;
/// impl Classify for PaymentPolicy {
///     fn classify(&self, error: &HandlerError) -> Option<Classification> {
///         match error.find::<PaymentError>()? {
///             PaymentError::Busy => Some(Classification::Retry),
///             PaymentError::Rejected => Some(Classification::DeadLetter),
///         }
///     }
/// }
/// ```
pub trait Classify: Send + Sync + 'static {
    /// Classifies an error; `None` falls back to the attribute's `fatal` and
    /// `retry` lists and the defaults.
    fn classify(&self, error: &HandlerError) -> Option<Classification>;
}

/// Matches one error type anywhere in a cause chain. Built by the macro from
/// the types listed in `retry = ...` and `fatal = ...`.
#[derive(Clone, Copy)]
pub struct ErrorMatcher {
    name: &'static str,
    matches: fn(&(dyn StdError + 'static)) -> bool,
}

fn is_type<T: StdError + 'static>(e: &(dyn StdError + 'static)) -> bool {
    e.is::<T>()
}

impl ErrorMatcher {
    /// A matcher for `T`, shown as `name` in logs.
    pub const fn of<T: StdError + Send + Sync + 'static>(name: &'static str) -> Self {
        ErrorMatcher {
            name,
            matches: is_type::<T>,
        }
    }

    /// The type's name as written in the attribute.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Whether the error's chain contains this type.
    pub fn matches(&self, error: &HandlerError) -> bool {
        error.chain().any(|e| (self.matches)(e))
    }
}

impl std::fmt::Debug for ErrorMatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// How records of one handler are ordered when they run concurrently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Ordering {
    /// Records with the same key run one at a time, in offset order; records
    /// with different keys run concurrently. Records without a key share one
    /// lane per partition.
    #[default]
    Key,
    /// One record at a time per partition, in offset order.
    Partition,
    /// No ordering: any record may run as soon as a slot is free.
    Unordered,
}

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
}

/// The error policy of one handler, built by `#[kafka_handler]` from its
/// attribute and kept in a static table.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    retry: Option<&'static [ErrorMatcher]>,
    fatal: &'static [ErrorMatcher],
    classifier: Option<&'static dyn Classify>,
    max_attempts: u32,
    backoff: Backoff,
    timeout: Option<Duration>,
    ordering: Ordering,
    concurrency: Option<usize>,
    dead_letter_topic: Option<&'static str>,
}

impl std::fmt::Debug for dyn Classify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<custom classifier>")
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy::DEFAULT
    }
}

impl Policy {
    /// The policy of a handler whose attribute sets nothing: I/O errors and
    /// timeouts retry, nothing is fatal, everything else is dead-lettered;
    /// 3 attempts; [`Backoff::DEFAULT`]; no timeout; [`Ordering::Key`].
    pub const DEFAULT: Policy = Policy {
        retry: None,
        fatal: &[],
        classifier: None,
        max_attempts: 3,
        backoff: Backoff::DEFAULT,
        timeout: None,
        ordering: Ordering::Key,
        concurrency: None,
        dead_letter_topic: None,
    };

    /// Errors that retry (replaces the default list of I/O error and timeout).
    pub const fn retry(mut self, types: &'static [ErrorMatcher]) -> Self {
        self.retry = Some(types);
        self
    }

    /// Errors that stop the consumer.
    pub const fn fatal(mut self, types: &'static [ErrorMatcher]) -> Self {
        self.fatal = types;
        self
    }

    /// A custom classifier, consulted before the lists.
    pub const fn classifier(mut self, classifier: &'static dyn Classify) -> Self {
        self.classifier = Some(classifier);
        self
    }

    /// Total attempts per record, the first included (at least 1).
    pub const fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = if attempts == 0 { 1 } else { attempts };
        self
    }

    /// The wait between attempts.
    pub const fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// A limit on each attempt; exceeding it is a [`HandlerTimeout`] error.
    pub const fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The ordering mode.
    pub const fn ordering(mut self, ordering: Ordering) -> Self {
        self.ordering = ordering;
        self
    }

    /// At most this many records of this handler run at once (per process).
    pub const fn concurrency(mut self, limit: usize) -> Self {
        self.concurrency = Some(if limit == 0 { 1 } else { limit });
        self
    }

    /// Where this handler's dead letters go, instead of `<topic>.DLT`.
    pub const fn dead_letter_topic(mut self, topic: &'static str) -> Self {
        self.dead_letter_topic = Some(topic);
        self
    }

    /// Total attempts per record.
    pub fn attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The wait between attempts.
    pub fn backoff_policy(&self) -> &Backoff {
        &self.backoff
    }

    /// The per-attempt limit, if any.
    pub fn attempt_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The ordering mode.
    pub fn ordering_mode(&self) -> Ordering {
        self.ordering
    }

    /// The per-handler concurrency limit, if any.
    pub fn concurrency_limit(&self) -> Option<usize> {
        self.concurrency
    }

    /// The configured dead-letter topic, if any.
    pub fn dead_letter_topic_name(&self) -> Option<&'static str> {
        self.dead_letter_topic
    }

    /// Classifies a failed attempt: the custom classifier first, then
    /// `fatal`, then undecodable payloads (dead letter), then `retry` (by
    /// default I/O errors and timeouts), else dead letter.
    pub fn classify(&self, error: &HandlerError) -> Classification {
        if let Some(c) = self.classifier.and_then(|c| c.classify(error)) {
            return c;
        }
        if self.fatal.iter().any(|m| m.matches(error)) {
            return Classification::Fatal;
        }
        if error.is_decode_error() {
            return Classification::DeadLetter;
        }
        let retry = match self.retry {
            Some(list) => list.iter().any(|m| m.matches(error)),
            None => error.is::<std::io::Error>() || error.is::<HandlerTimeout>(),
        };
        if retry {
            Classification::Retry
        } else {
            Classification::DeadLetter
        }
    }
}
