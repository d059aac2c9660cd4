//! One record through its handler: attempts, timeout, panic capture,
//! classification, backoff, dead letter.

use crate::dead_letter::{DeadLetter, DeadLetterProducer};
use crate::event::{EventListener, Outcome, RecordEvent};
use crate::handler_error::{HandlerError, HandlerTimeout};
use crate::message::KeyDisplay;
use crate::policy::Classification;
use crate::{HandlerSpec, Message};
use futures::FutureExt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::Semaphore;

/// A handler as the runtime runs it: its spec plus what it shares with the
/// rest of the runtime.
pub(crate) struct HandlerRuntime {
    pub(crate) spec: HandlerSpec,
    pub(crate) name: Arc<str>,
    pub(crate) concurrency: Option<Arc<Semaphore>>,
    pub(crate) listeners: Arc<[EventListener]>,
    pub(crate) dead_letters: Arc<DeadLetterProducer>,
}

/// How a record ended.
pub(crate) enum Finish {
    /// Handled or dead-lettered: the offset may be committed.
    Done,
    /// Fatal: the offset must not be committed and the consumer stops.
    Fatal(HandlerError),
}

impl HandlerRuntime {
    fn emit(&self, msg: &Message, outcome: Outcome) {
        if self.listeners.is_empty() {
            return;
        }
        let event = RecordEvent {
            topic: msg.topic_arc().clone(),
            partition: msg.partition(),
            offset: msg.offset(),
            key: msg.key_bytes().cloned(),
            handler: self.name.clone(),
            outcome,
        };
        for l in self.listeners.iter() {
            l(&event);
        }
    }

    /// The dead-letter topic of a record of `topic`.
    pub(crate) fn dead_letter_topic(&self, topic: &str) -> String {
        match self.spec.policy.dead_letter_topic_name() {
            Some(t) => t.to_owned(),
            None => format!("{topic}.DLT"),
        }
    }

    async fn attempt(&self, msg: &Message) -> Result<(), HandlerError> {
        let call = AssertUnwindSafe(self.spec.handler.call(msg)).catch_unwind();
        let result = match self.spec.policy.attempt_timeout() {
            Some(limit) => match tokio::time::timeout(limit, call).await {
                Ok(r) => r,
                Err(_) => return Err(HandlerError::new(HandlerTimeout { limit })),
            },
            None => call.await,
        };
        result.unwrap_or_else(|panic| Err(HandlerError::from_panic(panic)))
    }

    /// Runs `msg` through the policy until it is handled, dead-lettered or
    /// fatal.
    pub(crate) async fn process(&self, msg: &Message) -> Finish {
        let policy = &self.spec.policy;
        let mut attempt = 1u32;
        let mut first_failure = None;
        loop {
            let error = match self.attempt(msg).await {
                Ok(()) => {
                    tracing::debug!(
                        topic = msg.topic(),
                        partition = msg.partition(),
                        offset = msg.offset(),
                        handler = &*self.name,
                        attempts = attempt,
                        "record handled"
                    );
                    self.emit(msg, Outcome::Handled { attempts: attempt });
                    return Finish::Done;
                }
                Err(e) => e,
            };
            let now = SystemTime::now();
            let first = *first_failure.get_or_insert(now);
            let class = policy.classify(&error);
            let key = KeyDisplay(msg.key());
            match class {
                Classification::Fatal => {
                    tracing::error!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), key = %key, handler = &*self.name, attempt, error = %error.chain_message(), "fatal error: stopping the consumer; this record is not committed and will be delivered again after a restart");
                    self.emit(
                        msg,
                        Outcome::Fatal {
                            attempts: attempt,
                            error: error.chain_message(),
                        },
                    );
                    return Finish::Fatal(error);
                }
                Classification::Retry if attempt < policy.attempts() => {
                    let delay = policy
                        .backoff_policy()
                        .delay(attempt, rand::random::<f64>());
                    tracing::warn!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), key = %key, handler = &*self.name, attempt, max_attempts = policy.attempts(), retry_in = ?delay, error = %error.chain_message(), "retryable error; retrying after backoff");
                    self.emit(
                        msg,
                        Outcome::Retrying {
                            attempt,
                            delay,
                            error: error.chain_message(),
                        },
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Classification::Retry | Classification::DeadLetter => {
                    let reason = if error.is_decode_error() {
                        "undecodable"
                    } else if class == Classification::Retry {
                        "retries-exhausted"
                    } else {
                        "not-retryable"
                    };
                    return self
                        .dead_letter(msg, &error, reason, attempt, first, now)
                        .await;
                }
            }
        }
    }

    async fn dead_letter(
        &self,
        msg: &Message,
        error: &HandlerError,
        reason: &'static str,
        attempts: u32,
        first_failure: SystemTime,
        last_failure: SystemTime,
    ) -> Finish {
        let topic = self.dead_letter_topic(msg.topic());
        let dl = DeadLetter {
            topic: &topic,
            handler: &self.name,
            reason,
            error_kind: error.kind_name(),
            error_type: error.type_name(),
            error_message: error.to_string(),
            error_chain: error.chain_message(),
            attempts,
            first_failure,
            last_failure,
        };
        let key = KeyDisplay(msg.key());
        match self.dead_letters.publish(msg, &dl).await {
            Ok(()) => {
                tracing::error!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), key = %key, handler = &*self.name, attempts, reason, dead_letter_topic = %topic, error = %dl.error_chain, "record sent to the dead-letter topic");
                self.emit(
                    msg,
                    Outcome::DeadLettered {
                        attempts,
                        reason: format!("{reason}: {}", dl.error_chain),
                        dead_letter_topic: topic.clone(),
                    },
                );
                Finish::Done
            }
            Err(e) => {
                tracing::error!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), key = %key, handler = &*self.name, dead_letter_topic = %topic, error = %e, "cannot write the dead letter; stopping so the record is not lost");
                let error = HandlerError::new(DeadLetterWriteFailed {
                    topic: topic.clone(),
                    original: dl.error_chain,
                    source: e,
                });
                self.emit(
                    msg,
                    Outcome::Fatal {
                        attempts,
                        error: error.chain_message(),
                    },
                );
                Finish::Fatal(error)
            }
        }
    }
}

/// A dead letter could not be written, so the record could not be finished.
#[derive(Debug, thiserror::Error)]
#[error("cannot write dead letter to {topic} (the record failed with: {original})")]
pub struct DeadLetterWriteFailed {
    topic: String,
    original: String,
    #[source]
    source: rdkafka::error::KafkaError,
}
