//! The policy of a handler: which errors retry, which stop the consumer,
//! how long to wait between attempts, how records are ordered, and the
//! limits it runs under.
//!
//! `#[kafka_handler(...)]` builds a [`Policy`] from its attribute; build
//! one by hand for a [`HandlerSpec`](crate::handler::HandlerSpec) with the
//! `with_*` methods.

mod backoff;
mod classify;

pub use backoff::{Backoff, RetrySchedule};
pub use classify::{Classification, Classify, ErrorMatcher, ListedError};

use crate::handler::{HandlerError, HandlerTimeout};
use std::time::Duration;

/// How records of one handler are ordered when they run concurrently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OrderingMode {
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

/// The policy of one handler, built by `#[kafka_handler]` from its
/// attribute and kept in a static table.
///
/// Values are kept as given; [`DispatcherBuilder::build`] rejects the ones
/// the attribute rejects (say, zero attempts), with the same words.
///
/// [`DispatcherBuilder::build`]: crate::DispatcherBuilder::build
///
/// ```
/// use dispatcher::policy::{Backoff, OrderingMode, Policy};
/// use std::time::Duration;
///
/// let policy = Policy::DEFAULT
///     .with_max_attempts(5)
///     .with_backoff(Backoff::fixed(Duration::from_millis(200)))
///     .with_ordering(OrderingMode::Partition);
/// assert_eq!(policy.max_attempts(), 5);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    retry: Option<&'static [ErrorMatcher]>,
    fatal: &'static [ErrorMatcher],
    classifier: Option<&'static dyn Classify>,
    schedule: RetrySchedule,
    timeout: Option<Duration>,
    ordering: OrderingMode,
    concurrency: Option<usize>,
    dead_letter_topic: Option<&'static str>,
    retry_topics: &'static [Duration],
    retry_topic_name: Option<&'static str>,
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
    /// 3 attempts; [`Backoff::DEFAULT`]; no timeout; [`OrderingMode::Key`].
    pub const DEFAULT: Policy = Policy {
        retry: None,
        fatal: &[],
        classifier: None,
        schedule: RetrySchedule::new(3, Backoff::DEFAULT),
        timeout: None,
        ordering: OrderingMode::Key,
        concurrency: None,
        dead_letter_topic: None,
        retry_topics: &[],
        retry_topic_name: None,
    };

    /// Errors that retry (replaces the default, `std::io::Error`; a
    /// timeout retries either way unless it is classified as fatal).
    #[must_use]
    pub const fn with_retry(mut self, types: &'static [ErrorMatcher]) -> Self {
        self.retry = Some(types);
        self
    }

    /// Errors that stop the consumer.
    #[must_use]
    pub const fn with_fatal(mut self, types: &'static [ErrorMatcher]) -> Self {
        self.fatal = types;
        self
    }

    /// A custom classifier, consulted before the lists.
    #[must_use]
    pub const fn with_classifier(mut self, classifier: &'static dyn Classify) -> Self {
        self.classifier = Some(classifier);
        self
    }

    /// Total attempts per record, the first included (at least 1).
    #[must_use]
    pub const fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.schedule = self.schedule.with_attempts(attempts);
        self
    }

    /// The wait between attempts.
    #[must_use]
    pub const fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.schedule = self.schedule.with_backoff(backoff);
        self
    }

    /// A limit on each attempt; exceeding it is a [`HandlerTimeout`] error.
    #[must_use]
    pub const fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The ordering mode.
    #[must_use]
    pub const fn with_ordering(mut self, ordering: OrderingMode) -> Self {
        self.ordering = ordering;
        self
    }

    /// At most this many records of this handler run at once (per process;
    /// at least 1).
    #[must_use]
    pub const fn with_concurrency(mut self, limit: usize) -> Self {
        self.concurrency = Some(limit);
        self
    }

    /// Retry topics: a record that failed with a retryable error
    /// `max_attempts` times is written to the next level's topic
    /// (`<topic>.<group>.retry.<delay>`, see [`HandlerSpec::retry_topic`]) and its
    /// offset committed once the write is acknowledged, so a slow retry
    /// never holds up its partition; it is handled again when its delay
    /// has passed, and after the last level it is dead-lettered with its
    /// whole history. At least one delay, strictly ascending. Records that
    /// go through retry topics lose their order with the records of the
    /// same key: when order matters, retry in place (a longer `backoff`
    /// and more `max_attempts`) instead.
    ///
    /// [`HandlerSpec::retry_topic`]: crate::handler::HandlerSpec::retry_topic
    #[must_use]
    pub const fn with_retry_topics(mut self, delays: &'static [Duration]) -> Self {
        self.retry_topics = delays;
        self
    }

    /// How the retry topics are named instead of
    /// `{topic}.{group}.retry.{delay}`: `{topic}`, `{group}` (the consumer
    /// group), `{level}` (1 for the first) and `{delay}` (e.g. `30s`) are
    /// replaced, e.g. `"{topic}-retry-{level}"`. Leave `{group}` out only
    /// when no other group reads the topic with retry topics: two groups
    /// sharing a retry topic would handle each other's retries.
    #[must_use]
    pub const fn with_retry_topic_name(mut self, pattern: &'static str) -> Self {
        self.retry_topic_name = Some(pattern);
        self
    }

    /// The pattern retry topics are named by.
    pub fn retry_topic_name(&self) -> &'static str {
        self.retry_topic_name
            .unwrap_or(dispatcher_rules::topic::DEFAULT_RETRY_TOPIC_NAME)
    }

    /// The delays of the retry levels (empty: retries only in place).
    pub fn retry_topics(&self) -> &'static [Duration] {
        self.retry_topics
    }

    /// Where this handler's dead letters go, instead of `<topic>.DLT`.
    #[must_use]
    pub const fn with_dead_letter_topic(mut self, topic: &'static str) -> Self {
        self.dead_letter_topic = Some(topic);
        self
    }

    /// The errors that retry; `None` for the default (I/O errors and
    /// timeouts).
    pub fn retry(&self) -> Option<&'static [ErrorMatcher]> {
        self.retry
    }

    /// The errors that stop the consumer.
    pub fn fatal(&self) -> &'static [ErrorMatcher] {
        self.fatal
    }

    /// The custom classifier, if any.
    pub fn classifier(&self) -> Option<&'static dyn Classify> {
        self.classifier
    }

    /// Total attempts per record, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.schedule.attempts()
    }

    /// The wait between attempts.
    pub fn backoff(&self) -> &Backoff {
        self.schedule.backoff()
    }

    /// Attempts and backoff together.
    pub fn retry_schedule(&self) -> &RetrySchedule {
        &self.schedule
    }

    /// The per-attempt limit, if any.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The ordering mode.
    pub fn ordering(&self) -> OrderingMode {
        self.ordering
    }

    /// The per-handler concurrency limit, if any.
    pub fn concurrency(&self) -> Option<usize> {
        self.concurrency
    }

    /// The configured dead-letter topic, if any.
    pub fn dead_letter_topic(&self) -> Option<&'static str> {
        self.dead_letter_topic
    }

    /// Checks every value with the attribute's rules; the error is the
    /// attribute's own message.
    pub(crate) fn check(&self) -> Result<(), String> {
        use dispatcher_rules::policy as rules;
        self.schedule.check()?;
        if let Some(n) = self.concurrency {
            rules::check_concurrency(u64::try_from(n).unwrap_or(u64::MAX))?;
        }
        if let Some(t) = self.timeout {
            rules::check_timeout(u64::try_from(t.as_millis()).unwrap_or(u64::MAX))?;
        }
        if !self.retry_topics.is_empty() {
            let ms: Vec<u64> = self
                .retry_topics
                .iter()
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .collect();
            rules::check_retry_delays(&ms).map_err(|(i, m)| format!("retry_topics[{i}]: {m}"))?;
        }
        Ok(())
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
    use std::error::Error as StdError;

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
                Policy::DEFAULT.with_fatal(&CONFIG).classify(&err),
                Classification::Fatal,
                "{name}"
            );
        }
    }

    #[test]
    fn fatal_is_checked_before_retry() {
        let err = HandlerError::new(std::io::Error::other(ConfigError));
        let policy = Policy::DEFAULT.with_retry(&IO).with_fatal(&CONFIG);
        assert_eq!(policy.classify(&err), Classification::Fatal);
        assert_eq!(
            Policy::DEFAULT.with_retry(&IO).classify(&err),
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
        let decode = HandlerError::new(crate::extract::DecodeError::new("Json<T>", "bad"));
        assert_eq!(
            Policy::DEFAULT.with_retry(&IO).classify(&decode),
            Classification::DeadLetter
        );
        // A listed retry list replaces the default one.
        assert_eq!(
            Policy::DEFAULT
                .with_retry(&CONFIG)
                .classify(&HandlerError::new(std::io::Error::other("x"))),
            Classification::DeadLetter
        );
        // ... but a timeout retries whatever the list says, unless fatal.
        let timeout = HandlerError::new(HandlerTimeout {
            limit: Duration::from_secs(1),
        });
        assert_eq!(
            Policy::DEFAULT.with_retry(&CONFIG).classify(&timeout),
            Classification::Retry
        );
        static TIMEOUT: [ErrorMatcher; 1] = [ErrorMatcher::of::<HandlerTimeout>("HandlerTimeout")];
        assert_eq!(
            Policy::DEFAULT.with_fatal(&TIMEOUT).classify(&timeout),
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
        let p = Policy::DEFAULT
            .with_fatal(&CONFIG)
            .with_classifier(&AlwaysRetry);
        assert_eq!(
            p.classify(&HandlerError::new(ConfigError)),
            Classification::Retry
        );
        assert_eq!(
            p.classify(&HandlerError::new(std::fmt::Error)),
            Classification::DeadLetter
        );
    }
}
