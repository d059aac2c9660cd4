//! Why the dispatcher could not start, or why it stopped.

use crate::config::ConfigError;
use crate::handler::HandlerError;
use std::error::Error as StdError;
use std::fmt;

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A boxed error kept as a cause.
pub(crate) type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Why the dispatcher could not start, or why it stopped.
///
/// Every variant keeps its cause as [`source`](StdError::source). Its
/// `Debug` output, which is what a `main` returning this error prints, is
/// the message followed by the causes:
///
/// ```text
/// Error: cannot reach Kafka at "localhost:9092"; check KAFKA_BROKERS and that the brokers are up
///
/// Caused by:
///     0: Meta data fetch error: BrokerTransportFailure (Local: Broker transport failure)
/// ```
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is invalid. Names the key, where the value
    /// came from and how to fix it.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No `#[kafka_handler]` function is linked into the program.
    #[error("no handlers are registered: annotate an `async fn` with `#[kafka_handler(topic = \"...\")]` in a module that is compiled into this program{filter}")]
    NoHandlers {
        /// Explains a builder filter that removed every handler, if any.
        filter: String,
    },
    /// A hand-built handler breaks a rule the attribute enforces.
    #[error("handler {handler} ({location}): {reason}")]
    InvalidHandler {
        /// The handler's qualified name.
        handler: String,
        /// Where it was declared.
        location: String,
        /// The rule it breaks, in the attribute's words.
        reason: String,
    },
    /// Two handlers consume the same topic in the same consumer group.
    #[error("topic {topic:?} in consumer group {group:?} is claimed by two handlers: {first} and {second}; give one of them `group = \"...\"` or remove one")]
    DuplicateTopic {
        /// The topic.
        topic: String,
        /// The consumer group.
        group: String,
        /// The first handler and where it is declared.
        first: String,
        /// The second handler and where it is declared.
        second: String,
    },
    /// A handler takes a `State<T>` that was not given to the builder.
    #[error("handler {handler} takes State<{state}>, which was not provided; give it with Dispatcher::builder().state(..)")]
    MissingState {
        /// The handler and where it is declared.
        handler: String,
        /// The state's type, as the handler wrote it.
        state: String,
    },
    /// The brokers could not be reached at startup.
    #[error(
        "cannot reach Kafka at {brokers:?}{}; check KAFKA_BROKERS, that the brokers are up, and that security.protocol, ssl.* and sasl.* match the listener",
        reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
    )]
    Unreachable {
        /// The configured bootstrap servers.
        brokers: String,
        /// The client's last error, when it said why (a refused TLS
        /// handshake, a failed SASL login, a refused connection).
        reason: Option<Box<str>>,
        /// The client's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// Topics the handlers read or write are not on the cluster.
    #[error("topics missing on the cluster: {}; create them, or let the dispatcher create them with create_topics = true (and topic_partitions, topic_replication)", topics.join(", "))]
    MissingTopics {
        /// The missing topics.
        topics: Vec<String>,
    },
    /// A dead-letter topic is compacted: it would keep only the last dead
    /// letter of each key.
    #[error("dead-letter topic {topic:?} has cleanup.policy={policy}: compaction would delete dead letters that share a key; use cleanup.policy=delete (with a long retention)")]
    CompactedDeadLetterTopic {
        /// The topic.
        topic: String,
        /// Its cleanup policy.
        policy: String,
    },
    /// The Kafka client failed outside any one record.
    #[error("Kafka client error while {context}")]
    Kafka {
        /// What the runtime was doing.
        context: String,
        /// The client's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The embedded development broker failed.
    #[error("the embedded development broker failed while {context}")]
    EmbeddedBroker {
        /// What it was doing.
        context: String,
        /// Why it failed.
        #[source]
        source: BoxError,
    },
    /// A handler returned an error its policy classifies as fatal, or a dead
    /// letter could not be written. The record's offset was not committed: it
    /// is delivered again after a restart.
    #[error(transparent)]
    Fatal(Box<FatalError>),
    /// The Kafka client of a consumer group failed for good (a fatal client
    /// error), or kept failing with no progress for the configured time.
    #[error(transparent)]
    Consumer(Box<ConsumerError>),
    /// A part of the runtime failed unexpectedly.
    #[error("{context}")]
    Runtime {
        /// What failed.
        context: String,
        /// The cause, when there is one.
        #[source]
        source: Option<BoxError>,
    },
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")?;
        let mut causes = causes(self).skip(1).peekable();
        if causes.peek().is_some() {
            f.write_str("\n\nCaused by:")?;
            for (i, cause) in causes.enumerate() {
                write!(f, "\n    {i}: {cause}")?;
            }
        }
        Ok(())
    }
}

/// The messages of `error` and its causes, outermost first, each once: an
/// I/O error that wraps another error shows that error's message, so the
/// wrapped error (reached through `get_ref`, which `source` skips) is
/// listed only when its message differs.
pub(crate) fn causes<'a>(error: &'a (dyn StdError + 'static)) -> impl Iterator<Item = String> + 'a {
    let mut next = Some(error);
    let mut previous: Option<String> = None;
    std::iter::from_fn(move || loop {
        let current = next?;
        next = match current.downcast_ref::<std::io::Error>() {
            Some(io) if io.get_ref().is_some() => {
                io.get_ref().map(|e| e as &(dyn StdError + 'static))
            }
            _ => current.source(),
        };
        let text = current.to_string();
        if previous.as_deref() == Some(text.as_str()) {
            continue;
        }
        previous = Some(text.clone());
        return Some(text);
    })
}

/// A record stopped the consumer: its handler and coordinates, and the
/// error (the [`source`](StdError::source)).
#[derive(Debug)]
#[non_exhaustive]
pub struct FatalError {
    /// The handler's qualified name.
    pub handler: String,
    /// The record's topic.
    pub topic: String,
    /// The record's partition.
    pub partition: i32,
    /// The record's offset.
    pub offset: i64,
    /// The record's key, shown as text.
    pub key: String,
    /// The error, with its cause chain.
    pub error: HandlerError,
}

impl fmt::Display for FatalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "handler {} stopped the consumer at {}[{}] offset {} (key {}); offsets were committed up to, not past, this record, which is delivered again after a restart",
            self.handler, self.topic, self.partition, self.offset, self.key
        )
    }
}

impl StdError for FatalError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        let error: &(dyn StdError + Send + Sync + 'static) = self.error.as_ref();
        Some(error)
    }
}

/// The Kafka client of a consumer group failed: librdkafka raised a fatal
/// error (after which it neither fetches nor commits), or an error kept
/// repeating while nothing progressed for the configured
/// [`error_timeout`](crate::DispatcherBuilder::error_timeout).
#[derive(Debug)]
#[non_exhaustive]
pub struct ConsumerError {
    /// The consumer group.
    pub group: String,
    /// Kafka's name for the error, e.g. `FENCED_INSTANCE_ID`.
    pub code: String,
    /// The client's explanation.
    pub reason: String,
    /// For how long the error repeated, when it was not fatal at once.
    pub persisted: Option<std::time::Duration>,
    /// What to check or change.
    pub fix: &'static str,
    pub(crate) source: rdkafka::error::KafkaError,
}

impl fmt::Display for ConsumerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the Kafka consumer of group {:?} ", self.group)?;
        match self.persisted {
            None => write!(f, "hit a fatal error {}: {}", self.code, self.reason)?,
            Some(d) => write!(
                f,
                "kept failing with {} for {} with nothing consumed: {}",
                self.code,
                dispatcher_rules::duration::format(d),
                self.reason
            )?,
        }
        if !self.fix.is_empty() {
            write!(f, "; {}", self.fix)?;
        }
        Ok(())
    }
}

impl StdError for ConsumerError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.source)
    }
}

impl Error {
    pub(crate) fn kafka(context: impl Into<String>, source: rdkafka::error::KafkaError) -> Self {
        Error::Kafka {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn runtime(context: impl Into<String>) -> Self {
        Error::Runtime {
            context: context.into(),
            source: None,
        }
    }

    pub(crate) fn embedded(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::EmbeddedBroker {
            context: context.into(),
            source: source.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("the rules file is missing")]
    struct Missing;

    #[test]
    fn debug_shows_the_message_and_each_cause_once() {
        let error = Error::Fatal(Box::new(FatalError {
            handler: "app::on_order".into(),
            topic: "orders".into(),
            partition: 2,
            offset: 41,
            key: "\"c-7\"".into(),
            error: HandlerError::from_anyhow(
                anyhow::Error::new(std::io::Error::other(Missing)).context("loading rules"),
            ),
        }));
        let shown = format!("{error:?}");
        assert_eq!(
            shown,
            "handler app::on_order stopped the consumer at orders[2] offset 41 (key \"c-7\"); \
             offsets were committed up to, not past, this record, which is delivered again after a restart\
             \n\nCaused by:\n    0: loading rules\n    1: the rules file is missing"
        );
        let source = StdError::source(&error).expect("a cause");
        assert_eq!(source.to_string(), "loading rules");
    }

    #[test]
    fn an_error_without_causes_is_its_message() {
        let error = Error::runtime("the poll thread panicked");
        assert_eq!(format!("{error:?}"), "the poll thread panicked");
    }
}
