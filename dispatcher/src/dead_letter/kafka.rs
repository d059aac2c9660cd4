//! The default sink: dead letters to Kafka, acknowledged before the source
//! offset may move on.

use super::headers::{self, bounded};
use super::{DeadLetter, DeadLetterSink, SinkError};
use crate::message::Message;
use crate::policy::RetrySchedule;
use crate::producer::Producer;
use futures::future::BoxFuture;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Writes dead letters to Kafka and waits for the broker's acknowledgement,
/// retrying a failed write on its [`RetrySchedule`].
pub(crate) struct KafkaDeadLetters {
    producer: Producer,
    retry: RetrySchedule,
}

/// The largest key a dead letter without its payload keeps.
const MAX_KEY_WITHOUT_PAYLOAD: usize = 4 * 1024;

fn millis(t: SystemTime) -> String {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
        .to_string()
}

/// Whether a write failed because the record is too large for the topic
/// (by the producer's `message.max.bytes` or the broker's limit).
fn too_large(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::MessageBatchTooLarge)
    )
}

/// Which parts of the original record a dead letter carries.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Body {
    /// Key, payload and headers, as read.
    Whole,
    /// Only the key (when small) and the `dlt.*` headers: the record was
    /// too large.
    WithoutPayload,
}

impl KafkaDeadLetters {
    pub(crate) fn new(producer: Producer, retry: RetrySchedule) -> Self {
        KafkaDeadLetters { producer, retry }
    }

    fn headers(msg: &Message, dl: &DeadLetter<'_>, body: Body) -> OwnedHeaders {
        // A record of a retry topic names the record it started as.
        let from_retry_topic = msg.header(headers::RETRY_ORIGINAL_TOPIC).is_some();
        let origin = super::retry::History::of(msg, usize::from(from_retry_topic));
        let partition = origin.original_partition.to_string();
        let offset = origin.original_offset.to_string();
        let timestamp = origin.original_timestamp.map(|t| t.to_string());
        let attempts = dl.attempts.to_string();
        let (first, last) = (millis(dl.first_failure), millis(dl.last_failure));
        let omitted = (body == Body::WithoutPayload).then(|| {
            format!(
                "the record ({} bytes of payload, {} in all) was too large for {}; read the original at {}[{}] offset {}",
                msg.payload().map_or(0, <[u8]>::len),
                msg.size(),
                dl.topic,
                msg.topic(),
                msg.partition(),
                msg.offset()
            )
        });
        // The trace context of the handler's span replaces the record's.
        let context = crate::telemetry::trace::current_context_headers();
        let mut out = OwnedHeaders::new_with_capacity(msg.headers().len() + 17);
        for (key, value) in &context {
            out = out.insert(KafkaHeader {
                key,
                value: Some(value.as_bytes()),
            });
        }
        if body == Body::Whole {
            for h in msg.headers() {
                if context.iter().any(|(name, _)| *name == h.name) {
                    continue;
                }
                out = out.insert(KafkaHeader {
                    key: &h.name,
                    value: h.value.as_deref(),
                });
            }
        }
        let (message, chain) = (bounded(&dl.error_message), bounded(&dl.error_chain));
        let added: [(&str, Option<&str>); 15] = [
            (headers::ORIGINAL_TOPIC, Some(&origin.original_topic)),
            (headers::ORIGINAL_PARTITION, Some(&partition)),
            (headers::ORIGINAL_OFFSET, Some(&offset)),
            (headers::ORIGINAL_TIMESTAMP, timestamp.as_deref()),
            (headers::CONSUMER_GROUP, Some(dl.consumer_group)),
            (headers::HANDLER, Some(dl.handler)),
            (headers::REASON, Some(dl.reason)),
            (headers::ERROR_KIND, Some(dl.error_kind)),
            (headers::ERROR_TYPE, Some(dl.error_type)),
            (headers::ERROR_MESSAGE, Some(&message)),
            (headers::ERROR_CHAIN, Some(&chain)),
            (headers::ATTEMPTS, Some(&attempts)),
            (headers::FIRST_FAILURE, Some(&first)),
            (headers::LAST_FAILURE, Some(&last)),
            (headers::PAYLOAD_OMITTED, omitted.as_deref()),
        ];
        for (key, value) in added {
            if let Some(v) = value {
                out = out.insert(KafkaHeader {
                    key,
                    value: Some(&*bounded(v)),
                });
            }
        }
        out
    }

    async fn send(&self, msg: &Message, dl: &DeadLetter<'_>, body: Body) -> Result<(), KafkaError> {
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(dl.topic).headers(Self::headers(msg, dl, body));
        if let Some(k) = msg.key() {
            if body == Body::Whole || k.len() <= MAX_KEY_WITHOUT_PAYLOAD {
                record = record.key(k);
            }
        }
        if body == Body::Whole {
            if let Some(p) = msg.payload() {
                record = record.payload(p);
            }
        }
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map(|_| ())
    }

    async fn write(&self, msg: &Message, dl: &DeadLetter<'_>) -> Result<(), KafkaError> {
        let mut body = Body::Whole;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let error = match self.send(msg, dl, body).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if too_large(&error) && body == Body::Whole {
                // Every record must leave a dead letter: without its
                // payload, the letter still names the original's place.
                tracing::warn!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), dead_letter_topic = dl.topic, bytes = msg.size(), error = %error, "the record is too large for its dead-letter topic; writing the dead letter without the payload");
                body = Body::WithoutPayload;
                attempt -= 1;
                continue;
            }
            match self.retry.delay_before(attempt) {
                Some(delay) if !too_large(&error) => {
                    tracing::warn!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), dead_letter_topic = dl.topic, error = %error, attempt, retry_in = ?delay, "dead-letter write failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                _ => return Err(error),
            }
        }
    }
}

impl DeadLetterSink for KafkaDeadLetters {
    fn publish<'a>(
        &'a self,
        msg: &'a Message,
        dl: &'a DeadLetter<'a>,
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            self.write(msg, dl)
                .await
                .map_err(|e| Box::new(e) as SinkError)
        })
    }
}
