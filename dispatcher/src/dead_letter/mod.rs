//! Dead letters: records no retry can fix, written to a topic with the
//! headers an operator needs to act on them.
//!
//! The default [`DeadLetterSink`] writes to Kafka (`<topic>.DLT` unless the
//! handler sets `dead_letter_topic`) and waits for the broker's
//! acknowledgement; the source record's offset is committed only after
//! that. See [`headers`] for what a dead letter carries, and the size
//! limits that keep every dead letter writable.

pub mod headers;
mod kafka;
mod parse;
pub(crate) mod retry;

pub(crate) use kafka::KafkaDeadLetters;
pub use parse::{DeadLetterInfo, NotADeadLetter};

use crate::message::Message;
use futures::future::BoxFuture;
use std::time::SystemTime;

/// Everything a dead-letter record says about the failure, besides the
/// original record.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DeadLetter<'a> {
    /// The dead-letter topic to write to.
    pub topic: &'a str,
    /// The consumer group that gave up on the record.
    pub consumer_group: &'a str,
    /// The qualified name of the handler.
    pub handler: &'a str,
    /// `not-retryable`, `retries-exhausted` or `undecodable`.
    pub reason: &'static str,
    /// The kind of the outermost error: decode, timeout, panic, io or handler.
    pub error_kind: &'static str,
    /// The Rust type the handler returned as its error.
    pub error_type: &'a str,
    /// The outermost error's message.
    pub error_message: String,
    /// The whole cause chain, `outer: cause: root`, each cause once.
    pub error_chain: String,
    /// Attempts made.
    pub attempts: u32,
    /// When the first attempt failed.
    pub first_failure: SystemTime,
    /// When the last attempt failed.
    pub last_failure: SystemTime,
}

/// The error of a dead-letter write.
pub type SinkError = Box<dyn std::error::Error + Send + Sync>;

/// Where dead letters go. The default writes to Kafka; implement this to
/// send them elsewhere, and set it with
/// [`DispatcherBuilder::dead_letter_sink`](crate::DispatcherBuilder::dead_letter_sink).
///
/// The source record's offset is committed only after `publish` returns
/// `Ok`, so return `Ok` only once the dead letter is durable. An `Err`
/// stops the consumer as fatal: the record is not lost, it is delivered
/// again after a restart.
pub trait DeadLetterSink: Send + Sync + 'static {
    /// Writes one dead letter for `record`.
    fn publish<'a>(
        &'a self,
        record: &'a Message,
        letter: &'a DeadLetter<'a>,
    ) -> BoxFuture<'a, Result<(), SinkError>>;
}

/// A dead letter could not be written, so its record could not be
/// finished; the consumer stops with the record uncommitted.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the dead letter to {topic} (the record had failed with: {original})")]
pub struct DeadLetterWriteFailed {
    pub(crate) topic: String,
    pub(crate) original: String,
    #[source]
    pub(crate) source: SinkError,
}
