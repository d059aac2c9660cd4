//! Dead letters: records no retry can fix, written to a topic with the
//! headers an operator needs to act on them.

use crate::Message;
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Header names on a dead-letter record. The original key, payload and
/// headers are kept; these are added.
pub mod headers {
    /// Topic the record was read from.
    pub const ORIGINAL_TOPIC: &str = "dlt.original.topic";
    /// Partition it was read from.
    pub const ORIGINAL_PARTITION: &str = "dlt.original.partition";
    /// Its offset there.
    pub const ORIGINAL_OFFSET: &str = "dlt.original.offset";
    /// Its timestamp (ms since the epoch), when it had one.
    pub const ORIGINAL_TIMESTAMP: &str = "dlt.original.timestamp";
    /// The consumer group that gave up on it.
    pub const CONSUMER_GROUP: &str = "dlt.consumer.group";
    /// The handler that failed.
    pub const HANDLER: &str = "dlt.handler";
    /// Why it was dead-lettered: `not-retryable`, `retries-exhausted` or `undecodable`.
    pub const REASON: &str = "dlt.reason";
    /// The kind of the outermost error: decode, timeout, panic, io or handler.
    pub const ERROR_KIND: &str = "dlt.error.kind";
    /// The Rust type the handler returned as its error.
    pub const ERROR_TYPE: &str = "dlt.error.type";
    /// The outermost error's message.
    pub const ERROR_MESSAGE: &str = "dlt.error.message";
    /// The whole cause chain, `outer: cause: root`.
    pub const ERROR_CHAIN: &str = "dlt.error.chain";
    /// Attempts made.
    pub const ATTEMPTS: &str = "dlt.attempts";
    /// First failure time (ms since the epoch).
    pub const FIRST_FAILURE: &str = "dlt.first.failure";
    /// Last failure time (ms since the epoch).
    pub const LAST_FAILURE: &str = "dlt.last.failure";
}

/// Everything the dead-letter record says about the failure.
pub(crate) struct DeadLetter<'a> {
    pub(crate) topic: &'a str,
    pub(crate) handler: &'a str,
    pub(crate) reason: &'static str,
    pub(crate) error_kind: &'static str,
    pub(crate) error_type: &'a str,
    pub(crate) error_message: String,
    pub(crate) error_chain: String,
    pub(crate) attempts: u32,
    pub(crate) first_failure: SystemTime,
    pub(crate) last_failure: SystemTime,
}

/// Writes dead letters and waits for the broker's acknowledgement.
pub(crate) struct DeadLetterProducer {
    producer: FutureProducer,
    group: String,
}

fn millis(t: SystemTime) -> String {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
        .to_string()
}

impl DeadLetterProducer {
    pub(crate) fn new(producer: FutureProducer, group: String) -> Self {
        DeadLetterProducer { producer, group }
    }

    /// Writes one dead letter, retrying a failed write a few times with
    /// backoff. An error means it could not be written: the caller must not
    /// finish the record.
    pub(crate) async fn publish(
        &self,
        msg: &Message,
        dl: &DeadLetter<'_>,
    ) -> Result<(), rdkafka::error::KafkaError> {
        let partition = msg.partition().to_string();
        let offset = msg.offset().to_string();
        let timestamp = msg.timestamp().map(|t| t.to_string());
        let attempts = dl.attempts.to_string();
        let (first, last) = (millis(dl.first_failure), millis(dl.last_failure));
        let mut headers = OwnedHeaders::new_with_capacity(msg.headers().len() + 14);
        for h in msg.headers() {
            headers = headers.insert(KafkaHeader {
                key: &h.name,
                value: h.value.as_deref(),
            });
        }
        let added: [(&str, Option<&str>); 14] = [
            (headers::ORIGINAL_TOPIC, Some(msg.topic())),
            (headers::ORIGINAL_PARTITION, Some(&partition)),
            (headers::ORIGINAL_OFFSET, Some(&offset)),
            (headers::ORIGINAL_TIMESTAMP, timestamp.as_deref()),
            (headers::CONSUMER_GROUP, Some(&self.group)),
            (headers::HANDLER, Some(dl.handler)),
            (headers::REASON, Some(dl.reason)),
            (headers::ERROR_KIND, Some(dl.error_kind)),
            (headers::ERROR_TYPE, Some(dl.error_type)),
            (headers::ERROR_MESSAGE, Some(&dl.error_message)),
            (headers::ERROR_CHAIN, Some(&dl.error_chain)),
            (headers::ATTEMPTS, Some(&attempts)),
            (headers::FIRST_FAILURE, Some(&first)),
            (headers::LAST_FAILURE, Some(&last)),
        ];
        for (key, value) in added {
            if let Some(v) = value {
                headers = headers.insert(KafkaHeader {
                    key,
                    value: Some(v),
                });
            }
        }
        let mut delay = Duration::from_millis(200);
        let mut tries = 0;
        loop {
            tries += 1;
            let mut record: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(dl.topic).headers(headers.clone());
            if let Some(k) = msg.key() {
                record = record.key(k);
            }
            if let Some(p) = msg.payload() {
                record = record.payload(p);
            }
            match self.producer.send(record, Duration::from_secs(5)).await {
                Ok(_) => return Ok(()),
                Err((e, _)) if tries >= 5 => return Err(e),
                Err((e, _)) => {
                    tracing::warn!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), dead_letter_topic = dl.topic, error = %e, attempt = tries, "dead-letter write failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}
