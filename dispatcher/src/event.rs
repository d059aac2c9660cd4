//! What happened to each record, for observers: tests, summaries, metrics.

use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

/// One step in the life of a record: it was handled, is being retried, was
/// dead-lettered, or stopped the consumer.
#[derive(Debug, Clone)]
pub struct RecordEvent {
    /// The record's topic.
    pub topic: Arc<str>,
    /// The record's partition.
    pub partition: i32,
    /// The record's offset.
    pub offset: i64,
    /// The record's key.
    pub key: Option<Bytes>,
    /// The qualified name of the handler.
    pub handler: Arc<str>,
    /// What happened.
    pub outcome: Outcome,
}

/// What happened to a record.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Outcome {
    /// The handler succeeded on attempt number `attempts`.
    Handled {
        /// Attempts made, the successful one included.
        attempts: u32,
    },
    /// Attempt `attempt` failed with a retryable error; the next attempt
    /// starts after `delay`.
    Retrying {
        /// The attempt that failed (1 for the first).
        attempt: u32,
        /// The backoff before the next attempt.
        delay: Duration,
        /// The error and its cause chain.
        error: String,
    },
    /// The record was written to the dead-letter topic and the broker
    /// acknowledged it.
    DeadLettered {
        /// Attempts made.
        attempts: u32,
        /// Why: the classification and the error chain.
        reason: String,
        /// Where it was written.
        dead_letter_topic: String,
    },
    /// Attempt `attempts` (counted over every level) failed with a
    /// retryable error and the record was written to the retry topic of
    /// `level`; it is handled again there after `delay`. This read of it
    /// is finished.
    RetryScheduled {
        /// Attempts made so far, at every level.
        attempts: u32,
        /// The retry level written to (1 for the first).
        level: usize,
        /// The retry topic.
        topic: String,
        /// How long it waits there.
        delay: Duration,
    },
    /// The handler failed with a fatal error (or the dead letter could not
    /// be written); the consumer stops and the record is not committed.
    Fatal {
        /// Attempts made.
        attempts: u32,
        /// The error and its cause chain.
        error: String,
    },
}

impl Outcome {
    /// Whether the record is finished (handled or dead-lettered); a retrying
    /// record is not, and a fatal one never is.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Outcome::Handled { .. }
                | Outcome::DeadLettered { .. }
                | Outcome::RetryScheduled { .. }
                | Outcome::Fatal { .. }
        )
    }
}

/// A function called for every [`RecordEvent`]. It runs on the handler's
/// task: keep it short and never block.
pub type EventListener = Arc<dyn Fn(&RecordEvent) + Send + Sync>;
