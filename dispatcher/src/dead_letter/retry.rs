//! Retry topics: a record that used up its attempts in place is written
//! to the next level's topic, with headers that carry its history, and
//! its source offset moves on once the broker acknowledged the write.

use super::headers::{self, bounded};
use crate::message::Message;
use crate::policy::RetrySchedule;
use crate::producer::Producer;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where a record came from and what happened to it so far, as its retry
/// headers say (or, for a record of a source topic, as it is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct History {
    /// The level of the topic the record was read from (0: a source topic).
    pub(crate) level: usize,
    /// Attempts made before this read.
    pub(crate) attempts: u32,
    pub(crate) original_topic: String,
    pub(crate) original_partition: i32,
    pub(crate) original_offset: i64,
    pub(crate) original_timestamp: Option<i64>,
    /// When the first attempt failed, if one did before this read.
    pub(crate) first_failure: Option<SystemTime>,
}

fn text<'a>(msg: &'a Message, name: &str) -> Option<&'a str> {
    msg.header(name).and_then(|v| std::str::from_utf8(v).ok())
}

fn number<T: std::str::FromStr>(msg: &Message, name: &str) -> Option<T> {
    text(msg, name).and_then(|v| v.trim().parse().ok())
}

fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl History {
    /// The history of `msg`, read from a topic of retry level `level`.
    pub(crate) fn of(msg: &Message, level: usize) -> Self {
        if level == 0 {
            return History {
                level,
                attempts: 0,
                original_topic: msg.topic().to_owned(),
                original_partition: msg.partition(),
                original_offset: msg.offset(),
                original_timestamp: msg.timestamp(),
                first_failure: None,
            };
        }
        History {
            level,
            attempts: number(msg, headers::RETRY_ATTEMPTS).unwrap_or(0),
            original_topic: text(msg, headers::RETRY_ORIGINAL_TOPIC)
                .unwrap_or(msg.topic())
                .to_owned(),
            original_partition: number(msg, headers::RETRY_ORIGINAL_PARTITION)
                .unwrap_or(msg.partition()),
            original_offset: number(msg, headers::RETRY_ORIGINAL_OFFSET).unwrap_or(msg.offset()),
            original_timestamp: number(msg, headers::RETRY_ORIGINAL_TIMESTAMP),
            first_failure: number::<u64>(msg, headers::RETRY_FIRST_FAILURE)
                .map(|ms| UNIX_EPOCH + Duration::from_millis(ms)),
        }
    }
}

/// When a record of a retry topic is due, if it says.
pub(crate) fn due(msg: &Message) -> Option<SystemTime> {
    number::<u64>(msg, headers::RETRY_DUE).map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
}

/// A record could not be written to its retry topic.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the record to retry topic {topic:?} (after: {original})")]
pub(crate) struct RetryWriteFailed {
    pub(crate) topic: String,
    pub(crate) original: String,
    #[source]
    pub(crate) source: KafkaError,
}

/// What one hand-off to a retry topic writes.
pub(crate) struct Handoff<'a> {
    pub(crate) topic: &'a str,
    pub(crate) history: &'a History,
    /// Attempts made in all, this read's included.
    pub(crate) attempts: u32,
    pub(crate) first_failure: SystemTime,
    pub(crate) error_chain: &'a str,
    pub(crate) delay: Duration,
}

/// Writes records to retry topics and waits for the broker's
/// acknowledgement, retrying a failed write on its schedule.
pub(crate) struct RetryWriter {
    producer: Producer,
    retry: RetrySchedule,
}

impl RetryWriter {
    pub(crate) fn new(producer: Producer, retry: RetrySchedule) -> Self {
        RetryWriter { producer, retry }
    }

    fn headers(msg: &Message, h: &Handoff<'_>) -> OwnedHeaders {
        let level = (h.history.level + 1).to_string();
        let attempts = h.attempts.to_string();
        let due = millis(SystemTime::now() + h.delay).to_string();
        let partition = h.history.original_partition.to_string();
        let offset = h.history.original_offset.to_string();
        let timestamp = h.history.original_timestamp.map(|t| t.to_string());
        let first = millis(h.first_failure).to_string();
        let error = bounded(h.error_chain);
        let mut out = OwnedHeaders::new_with_capacity(msg.headers().len() + 9);
        for header in msg.headers() {
            if header.name.starts_with("retry.") {
                continue;
            }
            out = out.insert(KafkaHeader {
                key: &header.name,
                value: header.value.as_deref(),
            });
        }
        let added: [(&str, Option<&str>); 9] = [
            (headers::RETRY_LEVEL, Some(&level)),
            (headers::RETRY_ATTEMPTS, Some(&attempts)),
            (headers::RETRY_DUE, Some(&due)),
            (
                headers::RETRY_ORIGINAL_TOPIC,
                Some(&h.history.original_topic),
            ),
            (headers::RETRY_ORIGINAL_PARTITION, Some(&partition)),
            (headers::RETRY_ORIGINAL_OFFSET, Some(&offset)),
            (headers::RETRY_ORIGINAL_TIMESTAMP, timestamp.as_deref()),
            (headers::RETRY_FIRST_FAILURE, Some(&first)),
            (headers::RETRY_LAST_ERROR, Some(&error)),
        ];
        for (key, value) in added {
            if let Some(v) = value {
                out = out.insert(KafkaHeader {
                    key,
                    value: Some(v.as_bytes()),
                });
            }
        }
        out
    }

    /// Writes `msg` to the retry topic of `handoff`; returns once the
    /// broker acknowledged it, or with the error of the last attempt.
    pub(crate) async fn write(
        &self,
        msg: &Message,
        handoff: &Handoff<'_>,
    ) -> Result<(), KafkaError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut record: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(handoff.topic).headers(Self::headers(msg, handoff));
            if let Some(k) = msg.key() {
                record = record.key(k);
            }
            if let Some(p) = msg.payload() {
                record = record.payload(p);
            }
            let error = match self.producer.send(record, Duration::from_secs(30)).await {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            match self.retry.delay_before(attempt) {
                Some(delay) => {
                    tracing::warn!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), retry_topic = handoff.topic, error = %error, attempt, retry_in = ?delay, "retry-topic write failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                None => return Err(error),
            }
        }
    }
}
