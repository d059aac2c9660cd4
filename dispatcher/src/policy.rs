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
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be used as `policy = ...`",
    label = "does not implement `dispatcher::Classify`",
    note = "`policy` names a const, static or unit struct whose type implements `dispatcher::Classify`"
)]
pub trait Classify: Send + Sync + 'static {
    /// Classifies an error; `None` falls back to the attribute's `fatal` and
    /// `retry` lists and the defaults.
    fn classify(&self, error: &HandlerError) -> Option<Classification>;
}

/// An error type that can be listed in `retry = ...` or `fatal = ...`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be listed in `retry` or `fatal`",
    label = "not an error type the policy can match",
    note = "listed types must implement `std::error::Error + Send + Sync + 'static`"
)]
pub trait ListedError: StdError + Send + Sync + 'static {}

impl<T: StdError + Send + Sync + 'static> ListedError for T {}

/// Matches one error type anywhere in a cause chain. Built by the macro from
/// the types listed in `retry = ...` and `fatal = ...`.
#[derive(Clone, Copy)]
pub struct ErrorMatcher {
    name: &'static str,
    matches: fn(&HandlerError) -> bool,
}

fn is_type<T: StdError + Send + Sync + 'static>(e: &HandlerError) -> bool {
    e.is::<T>()
}

impl ErrorMatcher {
    /// A matcher for `T`, shown as `name` in logs.
    pub const fn of<T: ListedError>(name: &'static str) -> Self {
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
        (self.matches)(error)
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

    /// Errors that retry (replaces the default, `std::io::Error`; a
    /// timeout retries either way unless it is classified as fatal).
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

    /// The errors that retry; `None` for the default (I/O errors and
    /// timeouts).
    pub fn retry_list(&self) -> Option<&'static [ErrorMatcher]> {
        self.retry
    }

    /// The errors that stop the consumer.
    pub fn fatal_list(&self) -> &'static [ErrorMatcher] {
        self.fatal
    }

    /// Whether a custom classifier is set.
    pub fn has_classifier(&self) -> bool {
        self.classifier.is_some()
    }

    /// Where dead letters of a record of `topic` go: the configured topic,
    /// or `<topic>.DLT`.
    pub fn dead_letter_topic_for(&self, topic: &str) -> String {
        match self.dead_letter_topic {
            Some(t) => t.to_owned(),
            None => format!("{topic}.DLT"),
        }
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
        // A timeout retries whatever the list says: the attempt was cut
        // short, not refused.
        let retry = error.is::<HandlerTimeout>()
            || match self.retry {
                Some(list) => list.iter().any(|m| m.matches(error)),
                None => error.is::<std::io::Error>(),
            };
        if retry {
            Classification::Retry
        } else {
            Classification::DeadLetter
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("rules are missing")]
    struct ConfigError;

    #[derive(Debug, thiserror::Error)]
    #[error("service call failed")]
    struct ServiceError(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Box<dyn StdError + Send + Sync>);

    static CONFIG: [ErrorMatcher; 1] = [ErrorMatcher::of::<ConfigError>("ConfigError")];
    static IO: [ErrorMatcher; 1] = [ErrorMatcher::of::<std::io::Error>("std::io::Error")];

    fn flavours() -> Vec<(&'static str, HandlerError)> {
        vec![
            ("plain", HandlerError::new(ConfigError)),
            (
                "inside io::Error::get_ref",
                HandlerError::new(std::io::Error::other(ConfigError)),
            ),
            (
                "io inside a source chain",
                HandlerError::new(ServiceError(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    ConfigError,
                ))),
            ),
            (
                "anyhow",
                HandlerError::from_anyhow(anyhow::Error::new(ConfigError)),
            ),
            (
                "anyhow with context",
                HandlerError::from_anyhow(
                    anyhow::Error::new(ConfigError)
                        .context("loading")
                        .context("starting"),
                ),
            ),
            ("boxed", HandlerError::from_boxed(Box::new(ConfigError))),
            (
                "boxed in a chain",
                HandlerError::new(Outer(Box::new(ConfigError))),
            ),
            (
                "anyhow context over io over custom",
                HandlerError::from_anyhow(
                    anyhow::Error::new(std::io::Error::other(ConfigError))
                        .context("calling rules service"),
                ),
            ),
        ]
    }

    #[test]
    fn a_listed_type_matches_anywhere_in_the_chain() {
        for (name, err) in flavours() {
            assert!(CONFIG[0].matches(&err), "{name}: {err:?}");
            assert_eq!(
                Policy::DEFAULT.fatal(&CONFIG).classify(&err),
                Classification::Fatal,
                "{name}"
            );
        }
    }

    #[test]
    fn fatal_is_checked_before_retry() {
        let err = HandlerError::new(std::io::Error::other(ConfigError));
        let policy = Policy::DEFAULT.retry(&IO).fatal(&CONFIG);
        assert_eq!(policy.classify(&err), Classification::Fatal);
        assert_eq!(
            Policy::DEFAULT.retry(&IO).classify(&err),
            Classification::Retry
        );
    }

    #[test]
    fn defaults_retry_io_and_timeouts_and_dead_letter_the_rest() {
        let p = Policy::DEFAULT;
        assert_eq!(
            p.classify(&HandlerError::new(std::io::Error::other("reset"))),
            Classification::Retry
        );
        assert_eq!(
            p.classify(&HandlerError::new(HandlerTimeout {
                limit: Duration::from_secs(1)
            })),
            Classification::Retry
        );
        assert_eq!(
            p.classify(&HandlerError::new(ConfigError)),
            Classification::DeadLetter
        );
        let decode = HandlerError::new(crate::DecodeError::new("Json<T>", "bad"));
        assert_eq!(
            Policy::DEFAULT.retry(&IO).classify(&decode),
            Classification::DeadLetter
        );
        // A listed retry list replaces the default one.
        assert_eq!(
            Policy::DEFAULT
                .retry(&CONFIG)
                .classify(&HandlerError::new(std::io::Error::other("x"))),
            Classification::DeadLetter
        );
        // ... but a timeout retries whatever the list says, unless fatal.
        let timeout = HandlerError::new(HandlerTimeout {
            limit: Duration::from_secs(1),
        });
        assert_eq!(
            Policy::DEFAULT.retry(&CONFIG).classify(&timeout),
            Classification::Retry
        );
        static TIMEOUT: [ErrorMatcher; 1] = [ErrorMatcher::of::<HandlerTimeout>("HandlerTimeout")];
        assert_eq!(
            Policy::DEFAULT.fatal(&TIMEOUT).classify(&timeout),
            Classification::Fatal
        );
    }

    #[test]
    fn a_custom_classifier_comes_first() {
        struct AlwaysRetry;
        impl Classify for AlwaysRetry {
            fn classify(&self, error: &HandlerError) -> Option<Classification> {
                error.is::<ConfigError>().then_some(Classification::Retry)
            }
        }
        let p = Policy::DEFAULT.fatal(&CONFIG).classifier(&AlwaysRetry);
        assert_eq!(
            p.classify(&HandlerError::new(ConfigError)),
            Classification::Retry
        );
        assert_eq!(
            p.classify(&HandlerError::new(std::fmt::Error)),
            Classification::DeadLetter
        );
    }

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
}
