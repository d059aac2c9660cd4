//! Helpers of the dlq tests: dead letters with the headers the dispatcher
//! writes, and the commands run through the library.

#![allow(dead_code, unreachable_pub)]

use clap::Parser;
use dispatcher::dead_letter::headers as h;
use dispatcher::testing::Producer;
use dispatcher_dlq::replay::ReplaySummary;
use dispatcher_dlq::{Cli, Command};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// The bootstrap servers of the shared embedded broker.
pub fn brokers() -> String {
    dispatcher::broker::EmbeddedBroker::shared()
        .expect("the embedded broker")
        .bootstrap_servers()
        .to_owned()
}

/// Creates `topic` with `partitions` partitions on the shared broker.
pub fn create_topic(topic: &str, partitions: i32) {
    dispatcher::broker::EmbeddedBroker::shared()
        .expect("the embedded broker")
        .create_topic(topic, partitions)
        .expect("create the topic");
}

/// A dead letter as the dispatcher writes it.
#[derive(Debug, Clone)]
pub struct Letter {
    pub original_topic: &'static str,
    pub original_partition: i32,
    pub original_offset: i64,
    pub handler: &'static str,
    pub reason: &'static str,
    pub error_kind: &'static str,
    pub error_type: &'static str,
    pub error_message: &'static str,
    pub attempts: u32,
    pub last_failure_ms: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    /// `dlt.payload.omitted`, for a dead letter written without its payload.
    pub payload_omitted: Option<&'static str>,
}

impl Letter {
    /// A dead letter of `billing::on_order` from `topic`.
    pub fn new(original_topic: &'static str, offset: i64, key: &str, payload: &str) -> Letter {
        Letter {
            original_topic,
            original_partition: 0,
            original_offset: offset,
            handler: "billing::on_order",
            reason: "not-retryable",
            error_kind: "handler",
            error_type: "billing::Rejected",
            error_message: "the order was rejected",
            attempts: 1,
            last_failure_ms: 1_700_000_000_000,
            key: Some(key.as_bytes().to_vec()),
            payload: payload.as_bytes().to_vec(),
            payload_omitted: None,
        }
    }

    /// Writes it to `partition` of `dead_letter_topic`; returns its offset.
    pub async fn write(&self, producer: &Producer, dead_letter_topic: &str, partition: i32) -> i64 {
        let mut values: Vec<(&str, String)> = vec![
            ("trace-id", "abc-123".into()),
            (h::ORIGINAL_TOPIC, self.original_topic.into()),
            (h::ORIGINAL_PARTITION, self.original_partition.to_string()),
            (h::ORIGINAL_OFFSET, self.original_offset.to_string()),
            (
                h::ORIGINAL_TIMESTAMP,
                (self.last_failure_ms - 5_000).to_string(),
            ),
            (h::CONSUMER_GROUP, "billing".into()),
            (h::HANDLER, self.handler.into()),
            (h::REASON, self.reason.into()),
            (h::ERROR_KIND, self.error_kind.into()),
            (h::ERROR_TYPE, self.error_type.into()),
            (h::ERROR_MESSAGE, self.error_message.into()),
            (
                h::ERROR_CHAIN,
                format!("{}: caused by the rules", self.error_message),
            ),
            (h::ATTEMPTS, self.attempts.to_string()),
            (h::FIRST_FAILURE, (self.last_failure_ms - 1_000).to_string()),
            (h::LAST_FAILURE, self.last_failure_ms.to_string()),
        ];
        if let Some(omitted) = self.payload_omitted {
            values.push((h::PAYLOAD_OMITTED, omitted.into()));
        }
        let headers: Vec<(&str, &[u8])> = values.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
        let (p, o) = producer
            .send(
                dead_letter_topic,
                Some(partition),
                self.key.as_deref(),
                Some(&self.payload),
                &headers,
            )
            .await
            .expect("write a dead letter");
        assert_eq!(p, partition);
        o
    }
}

/// Runs a dlq command line through the library; returns what it printed.
pub async fn dlq(args: &[&str]) -> anyhow::Result<String> {
    let args: Vec<String> = std::iter::once("dlq")
        .chain(args.iter().copied())
        .map(str::to_owned)
        .collect();
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        dispatcher_dlq::run_args(args, &mut out)?;
        Ok(String::from_utf8(out)?)
    })
    .await
    .expect("the command's thread")
}

/// Runs `dlq replay ...` through the library; returns its summary and
/// what it printed.
pub async fn replay(args: &[&str]) -> anyhow::Result<(ReplaySummary, String)> {
    let args: Vec<String> = ["dlq", "replay"]
        .into_iter()
        .chain(args.iter().copied())
        .map(str::to_owned)
        .collect();
    tokio::task::spawn_blocking(move || {
        let Command::Replay(args) = Cli::try_parse_from(args)?.command else {
            anyhow::bail!("not a replay");
        };
        let mut out = Vec::new();
        let summary = dispatcher_dlq::replay::replay(&args, &mut out, &AtomicBool::new(false))?;
        Ok((summary, String::from_utf8(out)?))
    })
    .await
    .expect("the command's thread")
}

/// The end offsets of `topic`.
pub async fn end_offsets(brokers: &str, topic: &str) -> BTreeMap<i32, i64> {
    let (b, t) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || dispatcher::testing::end_offsets(&b, &t))
        .await
        .expect("thread")
        .expect("end offsets")
}

/// The offsets `group` committed on `topic`.
pub async fn committed(brokers: &str, group: &str, topic: &str) -> BTreeMap<i32, i64> {
    let (b, g, t) = (brokers.to_owned(), group.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || dispatcher::testing::committed_offsets(&b, &g, &t))
        .await
        .expect("thread")
        .expect("committed offsets")
}

/// Every record of `topic`, read to its end.
pub async fn read_all(brokers: &str, topic: &str) -> Vec<dispatcher_dlq::scan::Record> {
    let conn = dispatcher_dlq::cli::Connection {
        brokers: brokers.to_owned(),
        properties: Vec::new(),
        timeout: Duration::from_secs(30),
    };
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || dispatcher_dlq::scan::read_all(&conn, &topic))
        .await
        .expect("thread")
        .expect("read the topic")
}

/// The value of the last header `name` of a record, as text.
pub fn header(record: &dispatcher_dlq::scan::Record, name: &str) -> Option<String> {
    record
        .headers
        .iter()
        .rev()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| v.as_deref())
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Writes `count` dead letters of `source` (payload `{"n":<i>}`, key
/// `key-<i % 10>`) to `dead_letter_topic`, spread over `partitions`
/// partitions, at once.
pub fn many_dead_letters(
    brokers: &str,
    source: &str,
    dead_letter_topic: &str,
    partitions: i32,
    count: usize,
) {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .create()
        .expect("producer");
    for i in 0..count {
        let (key, payload) = (format!("key-{}", i % 10), format!(r#"{{"n":{i}}}"#));
        let partition = (i % partitions as usize) as i32;
        let values = [
            (h::ORIGINAL_TOPIC, source.to_owned()),
            (h::ORIGINAL_PARTITION, "0".to_owned()),
            (h::ORIGINAL_OFFSET, i.to_string()),
            (h::HANDLER, "billing::on_order".to_owned()),
            (h::REASON, "not-retryable".to_owned()),
            (h::ERROR_TYPE, "billing::Rejected".to_owned()),
            (h::ATTEMPTS, "1".to_owned()),
            (h::LAST_FAILURE, "1700000000000".to_owned()),
        ];
        let mut headers = OwnedHeaders::new_with_capacity(values.len());
        for (name, value) in &values {
            headers = headers.insert(Header {
                key: name,
                value: Some(value.as_bytes()),
            });
        }
        let mut record = BaseRecord::to(dead_letter_topic)
            .partition(partition)
            .key(key.as_str())
            .payload(payload.as_str())
            .headers(headers);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    producer.poll(Duration::from_millis(10));
                    record = back;
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
}
