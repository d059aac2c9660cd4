//! Dead letters: records no retry can fix, written to a topic with the
//! headers an operator needs to act on them.

use crate::Message;
use futures::future::BoxFuture;
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
    /// The whole cause chain, `outer: cause: root`.
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

/// Writes dead letters to Kafka and waits for the broker's acknowledgement,
/// retrying a failed write a few times with backoff.
pub(crate) struct KafkaDeadLetters {
    producer: FutureProducer,
}

fn millis(t: SystemTime) -> String {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
        .to_string()
}

impl KafkaDeadLetters {
    pub(crate) fn new(producer: FutureProducer) -> Self {
        KafkaDeadLetters { producer }
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

impl KafkaDeadLetters {
    async fn write(
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
            (headers::CONSUMER_GROUP, Some(dl.consumer_group)),
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
