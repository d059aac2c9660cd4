//! The errors `run()` and the builder return.

use crate::handler_error::HandlerError;

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why the dispatcher could not start, or why it stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is invalid. Names the key and where it came from.
    #[error("invalid configuration: {key} = {value:?} (from {origin}): {reason}")]
    Config {
        /// The configuration key, e.g. `KAFKA_BROKERS` or `max_in_flight`.
        key: String,
        /// The offending value.
        value: String,
        /// Where the value came from: an environment variable or the builder.
        origin: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// No `#[kafka_handler]` function is linked into the program.
    #[error("no handlers are registered: annotate an `async fn` with `#[kafka_handler(topic = \"...\")]` in a module that is compiled into this program{filter}")]
    NoHandlers {
        /// Explains a builder filter that removed every handler, if any.
        filter: String,
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
    /// The brokers could not be reached at startup.
    #[error("cannot reach Kafka at {brokers:?}: {source}; check KAFKA_BROKERS and that the brokers are up")]
    Unreachable {
        /// The configured bootstrap servers.
        brokers: String,
        /// The client's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The Kafka client failed outside any one record.
    #[error("Kafka client error while {context}: {source}")]
    Kafka {
        /// What the runtime was doing.
        context: String,
        /// The client's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The embedded development broker could not be started.
    #[error("cannot start the embedded development broker: {0}")]
    EmbeddedBroker(String),
    /// A handler returned an error its policy classifies as fatal, or a dead
    /// letter could not be written. The record's offset was not committed: it
    /// is delivered again after a restart.
    #[error(transparent)]
    Fatal(Box<FatalError>),
    /// A background part of the runtime stopped unexpectedly.
    #[error("dispatcher runtime failure: {0}")]
    Runtime(String),
}

/// A fatal error: the handler, the record's coordinates and the error.
#[derive(Debug, thiserror::Error)]
#[error("fatal error in handler {handler} on {topic}[{partition}] at offset {offset} (key {key}): {error:?}; offsets were committed up to, not past, this record")]
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
    /// The error and its cause chain (shown in the message).
    pub error: HandlerError,
}

impl Error {
    pub(crate) fn config(key: &str, value: &str, origin: &str, reason: impl Into<String>) -> Self {
        Error::Config {
            key: key.to_owned(),
            value: value.to_owned(),
            origin: origin.to_owned(),
            reason: reason.into(),
        }
    }

    pub(crate) fn kafka(context: impl Into<String>, source: rdkafka::error::KafkaError) -> Self {
        Error::Kafka {
            context: context.into(),
            source,
        }
    }
}
