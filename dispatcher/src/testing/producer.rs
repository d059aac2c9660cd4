//! A small producer for tests and examples.

use crate::error::{Error, Result};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use std::time::Duration;

/// A small producer for tests and examples: publishes one record and waits
/// for the broker's acknowledgement.
pub struct Producer {
    inner: FutureProducer,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Producer")
    }
}

impl Producer {
    /// A producer for `brokers` (bootstrap servers).
    pub fn new(brokers: &str) -> Result<Self> {
        let inner = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("linger.ms", "1")
            // Idempotent, so a write whose acknowledgement is lost in a
            // broker outage is not stored twice when the producer retries.
            .set("enable.idempotence", "true")
            .create()
            .map_err(|e| Error::kafka("creating the test producer", e))?;
        Ok(Producer { inner })
    }

    /// Publishes one record and returns its partition and offset.
    pub async fn publish(
        &self,
        topic: &str,
        key: Option<&str>,
        payload: impl AsRef<[u8]>,
    ) -> Result<(i32, i64)> {
        self.send(
            topic,
            None,
            key.map(str::as_bytes),
            Some(payload.as_ref()),
            &[],
        )
        .await
    }

    /// Publishes one record with every field chosen: a partition (or the
    /// partitioner's choice), a key, a payload (`None` for a tombstone) and
    /// headers.
    pub async fn send(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: &[(&str, &[u8])],
    ) -> Result<(i32, i64)> {
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic);
        if let Some(p) = partition {
            record = record.partition(p);
        }
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(p) = payload {
            record = record.payload(p);
        }
        if !headers.is_empty() {
            let mut h = rdkafka::message::OwnedHeaders::new_with_capacity(headers.len());
            for (name, value) in headers {
                h = h.insert(rdkafka::message::Header {
                    key: name,
                    value: Some(*value),
                });
            }
            record = record.headers(h);
        }
        self.inner
            .send(record, Duration::from_secs(10))
            .await
            .map(|d| (d.partition, d.offset))
            .map_err(|(e, _)| Error::kafka(format!("publishing to {topic}"), e))
    }
}
