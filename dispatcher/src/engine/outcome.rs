//! Where a record goes when its handler is done with it: events for
//! listeners, and the dead-letter hand-off for records no retry can fix.

use super::execute::{Done, Executor, Finish};
use crate::dead_letter::retry::{Handoff, History, RetryWriteFailed};
use crate::dead_letter::{DeadLetter, DeadLetterWriteFailed};
use crate::event::{Outcome, RecordEvent};
use crate::handler::{panic_message, HandlerError};
use crate::message::{KeyDisplay, Message};
use futures::FutureExt;
use std::panic::AssertUnwindSafe;
use std::time::SystemTime;

impl Executor {
    /// Tells the listeners what happened to `msg`.
    pub(crate) fn emit(&self, msg: &Message, outcome: Outcome) {
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
            // A listener is observability: its panic must not take the
            // partition's worker (and the record's outcome) down with it.
            if std::panic::catch_unwind(AssertUnwindSafe(|| l(&event))).is_err() {
                tracing::error!(
                    topic = msg.topic(),
                    partition = msg.partition(),
                    offset = msg.offset(),
                    handler = &*self.name,
                    "an event listener panicked; the record's outcome is unaffected"
                );
            }
        }
    }

    /// Records that `msg` was handled after `attempts` attempts in this
    /// read (plus those of earlier reads, for a record of a retry topic).
    pub(crate) fn handled(&self, msg: &Message, attempts: u32) {
        let attempts = if self.retry_level > 0 {
            History::of(msg, self.retry_level)
                .attempts
                .saturating_add(attempts)
        } else {
            attempts
        };
        tracing::debug!(
            topic = msg.topic(),
            partition = msg.partition(),
            offset = msg.offset(),
            handler = &*self.name,
            attempts,
            "record handled"
        );
        self.emit(msg, Outcome::Handled { attempts });
    }

    /// A dead-letter or retry-topic write failed for good: the record is
    /// fatal, uncommitted.
    fn hand_off_failed(&self, msg: &Message, attempts: u32, error: HandlerError) -> Finish {
        self.emit(
            msg,
            Outcome::Fatal {
                attempts,
                error: error.chain_message(),
            },
        );
        Finish::Fatal(error)
    }

    /// Writes `msg` to the next retry level's topic, when the handler has
    /// one left for it, and waits for the broker's acknowledgement. `None`
    /// when there is no next level: the caller dead-letters the record. A
    /// write that fails for good is fatal, with the record uncommitted.
    pub(crate) async fn to_retry_topic(
        &self,
        msg: &Message,
        history: &History,
        error: &HandlerError,
        attempts: u32,
        first_failure: SystemTime,
    ) -> Option<Finish> {
        let writer = self.retry_writer.as_ref()?;
        let level = history.level + 1;
        let topic = self
            .spec
            .retry_topic(&self.group, &self.source_topic, level)?;
        let delay = *self.spec.policy.retry_topics().get(level - 1)?;
        let chain = error.chain_message();
        let handoff = Handoff {
            topic: &topic,
            history,
            attempts,
            first_failure,
            error_chain: &chain,
            delay,
        };
        let key = KeyDisplay(msg.key());
        match writer.write(msg, &handoff).await {
            Ok(()) => {
                tracing::warn!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), key = %key, handler = &*self.name, attempts, retry_topic = %topic, level, due_in = ?delay, error = %chain, "retryable error; record sent to the retry topic");
                self.emit(
                    msg,
                    Outcome::RetryScheduled {
                        attempts,
                        level,
                        topic: topic.clone(),
                        delay,
                    },
                );
                Some(Finish::Done(Done::RetryTopic))
            }
            Err(e) => {
                tracing::error!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), key = %key, handler = &*self.name, retry_topic = %topic, error = %e, "cannot write to the retry topic; stopping so the record is not lost");
                Some(self.hand_off_failed(
                    msg,
                    attempts,
                    HandlerError::new(RetryWriteFailed {
                        topic,
                        original: chain,
                        source: e,
                    }),
                ))
            }
        }
    }

    /// Writes `msg` to its dead-letter topic and waits for the write to be
    /// acknowledged. The record is finished only then; a write that fails
    /// for good is fatal, with the record uncommitted.
    pub(crate) async fn dead_letter(
        &self,
        msg: &Message,
        error: &HandlerError,
        reason: &'static str,
        attempts: u32,
        first_failure: SystemTime,
        last_failure: SystemTime,
    ) -> Finish {
        let topic = self.spec.dead_letter_topic(&self.source_topic);
        let dl = DeadLetter {
            topic: &topic,
            consumer_group: &self.group,
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
        // A sink that panics failed to write, like one that returns an error.
        let published = AssertUnwindSafe(self.dead_letters.publish(msg, &dl))
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| {
                Err(format!("the dead-letter sink panicked: {}", panic_message(&*panic)).into())
            });
        match published {
            Ok(()) => {
                // An expected outcome of the policy, not a failure of ours.
                tracing::warn!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), key = %key, handler = &*self.name, attempts, reason, dead_letter_topic = %topic, error = %dl.error_chain, "record sent to the dead-letter topic");
                self.metrics.dead_letter_writes.increment(1);
                self.emit(
                    msg,
                    Outcome::DeadLettered {
                        attempts,
                        reason: format!("{reason}: {}", dl.error_chain),
                        dead_letter_topic: topic.clone(),
                    },
                );
                Finish::Done(Done::DeadLettered)
            }
            Err(e) => {
                self.metrics.dead_letter_failures.increment(1);
                tracing::error!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), key = %key, handler = &*self.name, dead_letter_topic = %topic, error = %e, "cannot write the dead letter; stopping so the record is not lost");
                self.hand_off_failed(
                    msg,
                    attempts,
                    HandlerError::new(DeadLetterWriteFailed {
                        topic: topic.clone(),
                        original: dl.error_chain,
                        source: e,
                    }),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::dead_letter::{DeadLetter, DeadLetterSink, SinkError};
    use crate::engine::execute::{Executor, Finish};
    use crate::extract::{FromMessage, Json};
    use crate::handler::{Handler, HandlerError, HandlerFuture, HandlerSpec};
    use crate::message::Message;
    use futures::future::BoxFuture;
    use std::sync::{Arc, Mutex};
    use tokio_util::sync::CancellationToken;

    #[derive(Debug, serde::Deserialize)]
    struct Order {
        #[allow(dead_code)]
        id: u64,
    }

    /// Decodes the payload as `Json<Order>`, like a generated handler.
    struct Decoding;
    impl Handler for Decoding {
        fn call(&self, msg: Message) -> HandlerFuture<'static> {
            Box::pin(async move {
                Json::<Order>::from_message(&msg).map_err(HandlerError::new)?;
                Ok(())
            })
        }
    }
    static DECODING: Decoding = Decoding;

    /// Keeps the headers' values of every dead letter.
    #[derive(Default)]
    struct Recording(Mutex<Vec<(String, String, String, String)>>);
    impl DeadLetterSink for Recording {
        fn publish<'a>(
            &'a self,
            _: &'a Message,
            l: &'a DeadLetter<'a>,
        ) -> BoxFuture<'a, Result<(), SinkError>> {
            Box::pin(async move {
                self.0.lock().expect("lock").push((
                    l.reason.to_owned(),
                    l.error_type.to_owned(),
                    l.error_message.clone(),
                    l.error_chain.clone(),
                ));
                Ok(())
            })
        }
    }

    #[tokio::test]
    async fn an_undecodable_record_names_each_cause_once_with_the_users_type_names() {
        let sink = Arc::new(Recording::default());
        let executor = Executor::for_test(
            HandlerSpec::new("on_order", &["orders"], &DECODING),
            "app::on_order",
            sink.clone(),
        );
        let msg = Message::new("orders", 0, 3).with_payload(r#"{"id": 1, "amount": "#);
        let first = executor.start(&msg);
        let finish = executor
            .process(&msg, first, &CancellationToken::new())
            .await;
        assert!(matches!(finish, Finish::Done(_)));
        let letters = sink.0.lock().expect("lock").clone();
        assert_eq!(
            letters,
            vec![(
                "undecodable".to_owned(),
                "dispatcher::extract::DecodeError".to_owned(),
                "payload is not a valid Json<Order>".to_owned(),
                "payload is not a valid Json<Order>: EOF while parsing a value at line 1 column 20"
                    .to_owned(),
            )]
        );
    }
}
