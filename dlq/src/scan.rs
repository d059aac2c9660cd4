//! Reading a topic from given offsets to its end as of the start.
//!
//! Where to stop is known from the high watermarks read before reading
//! starts, so records written meanwhile (a replay's own dead letters, say)
//! are not read. A partition is finished when a record at or past its end
//! offset minus one arrives, or when the consumer reports that it reached
//! the partition's end: offsets of a compacted topic have gaps, and those
//! of a transactional one end with commit markers that are never
//! delivered, so the last offset may never be seen. An empty partition is
//! finished at once.

use crate::cli::Connection;
use anyhow::{anyhow, bail, Context};
use dispatcher::dead_letter::{DeadLetterInfo, NotADeadLetter};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// One record read from a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Record {
    /// Its topic.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its timestamp (ms since the epoch), when it has one.
    pub timestamp: Option<i64>,
    /// Its key.
    pub key: Option<Vec<u8>>,
    /// Its payload (`None` for a tombstone).
    pub payload: Option<Vec<u8>>,
    /// Its headers, in order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Record {
    /// What its `dlt.*` headers say, when it is a dead letter (read by the
    /// dispatcher library).
    pub fn dead_letter(&self) -> Result<DeadLetterInfo, NotADeadLetter> {
        DeadLetterInfo::from_headers(self.headers.iter().map(|(n, v)| (n.as_str(), v.as_deref())))
    }

    fn from_message(m: &impl Message) -> Record {
        Record {
            topic: m.topic().to_owned(),
            partition: m.partition(),
            offset: m.offset(),
            timestamp: m.timestamp().to_millis(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
            headers: m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// The configuration of a consumer that reads by assignment and never
/// commits by itself: the user's properties, then what this tool needs.
pub(crate) fn consumer_config(conn: &Connection, group: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (name, value) in &conn.properties {
        config.set(name, value);
    }
    config
        .set("bootstrap.servers", &conn.brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("allow.auto.create.topics", "false")
        .set("fetch.wait.max.ms", "100");
    config
}

/// Creates a consumer for `group` (which it never joins).
pub(crate) fn consumer(conn: &Connection, group: &str) -> anyhow::Result<BaseConsumer> {
    consumer_config(conn, group)
        .create()
        .with_context(|| format!("creating a consumer for {}", conn.brokers))
}

/// The partitions of `topic`, or `None` when it does not exist.
fn lookup(
    consumer: &BaseConsumer,
    topic: &str,
    timeout: Duration,
) -> anyhow::Result<Option<Vec<i32>>> {
    let md = consumer
        .fetch_metadata(Some(topic), timeout)
        .with_context(|| format!("reading the metadata of {topic}"))?;
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| anyhow!("the brokers returned no metadata for {topic}"))?;
    if let Some(e) = t.error() {
        let code = rdkafka::types::RDKafkaErrorCode::from(e);
        if code == rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition {
            return Ok(None);
        }
        bail!("topic {topic}: {code}");
    }
    let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
    if ids.is_empty() {
        return Ok(None);
    }
    ids.sort_unstable();
    Ok(Some(ids))
}

/// The partitions of `topic`; an error when it does not exist.
pub(crate) fn partitions(
    consumer: &BaseConsumer,
    topic: &str,
    timeout: Duration,
) -> anyhow::Result<Vec<i32>> {
    lookup(consumer, topic, timeout)?.ok_or_else(|| anyhow!("topic {topic} does not exist"))
}

/// Whether `topic` exists.
pub(crate) fn topic_exists(
    consumer: &BaseConsumer,
    topic: &str,
    timeout: Duration,
) -> anyhow::Result<bool> {
    Ok(lookup(consumer, topic, timeout)?.is_some())
}

/// The low and high watermarks of each partition.
pub(crate) fn watermarks(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: &[i32],
    timeout: Duration,
) -> anyhow::Result<BTreeMap<i32, (i64, i64)>> {
    partitions
        .iter()
        .map(|&p| {
            consumer
                .fetch_watermarks(topic, p, timeout)
                .map(|w| (p, w))
                .with_context(|| format!("reading the offsets of {topic}[{p}]"))
        })
        .collect()
}

/// Where a partition's reading starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// Its first record still kept.
    Beginning,
    /// This offset (or the first kept after it).
    At(i64),
}

/// Reads the assigned partitions of one topic up to their end offsets as
/// of the start; see the module documentation.
pub(crate) struct Scanner<'c> {
    consumer: &'c BaseConsumer,
    topic: String,
    ends: BTreeMap<i32, i64>,
    pending: BTreeSet<i32>,
    stall: Duration,
    last_progress: Instant,
    last_error: Option<KafkaError>,
    /// Records between the start and the end offsets, gaps included.
    pub(crate) span: u64,
}

impl<'c> Scanner<'c> {
    /// Starts reading `topic` at `starts` (a partition not in it is not
    /// read) up to the end offsets of now. Fails when no progress is made
    /// for `stall`.
    pub(crate) fn open(
        consumer: &'c BaseConsumer,
        topic: &str,
        starts: &BTreeMap<i32, Start>,
        stall: Duration,
    ) -> anyhow::Result<Self> {
        let parts: Vec<i32> = starts.keys().copied().collect();
        let marks = watermarks(consumer, topic, &parts, stall)?;
        let mut tpl = TopicPartitionList::new();
        let mut ends = BTreeMap::new();
        let mut pending = BTreeSet::new();
        let mut span = 0u64;
        for (&p, &(low, high)) in &marks {
            let from = match starts.get(&p) {
                Some(Start::At(o)) => (*o).max(low),
                _ => low,
            };
            ends.insert(p, high);
            if from < high {
                pending.insert(p);
                span += u64::try_from(high - from).unwrap_or(0);
                tpl.add_partition_offset(topic, p, Offset::Offset(from))
                    .with_context(|| format!("assigning {topic}[{p}]"))?;
            }
        }
        if !pending.is_empty() {
            consumer
                .assign(&tpl)
                .with_context(|| format!("assigning the partitions of {topic}"))?;
        }
        Ok(Scanner {
            consumer,
            topic: topic.to_owned(),
            ends,
            pending,
            stall,
            last_progress: Instant::now(),
            last_error: None,
            span,
        })
    }

    /// The end offset of each partition as of the start.
    pub(crate) fn ends(&self) -> &BTreeMap<i32, i64> {
        &self.ends
    }

    /// The next record, or `None` once every partition reached its end.
    pub(crate) fn next_record(&mut self) -> anyhow::Result<Option<Record>> {
        loop {
            if self.pending.is_empty() {
                return Ok(None);
            }
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    let p = m.partition();
                    if !self.pending.contains(&p) || m.topic() != self.topic {
                        continue;
                    }
                    self.last_progress = Instant::now();
                    let end = self.ends.get(&p).copied().unwrap_or(0);
                    if m.offset() >= end - 1 {
                        self.pending.remove(&p);
                    }
                    if m.offset() >= end {
                        continue;
                    }
                    return Ok(Some(Record::from_message(&m)));
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    self.last_progress = Instant::now();
                    self.pending.remove(&p);
                }
                Some(Err(e @ KafkaError::MessageConsumptionFatal(_))) => {
                    return Err(e).with_context(|| format!("reading {}", self.topic));
                }
                // Transient client errors (a broker connection lost, say):
                // librdkafka retries; a read that stops making progress
                // fails below with the last of them.
                Some(Err(e)) => self.last_error = Some(e),
                None => {}
            }
            if self.last_progress.elapsed() >= self.stall {
                let left: Vec<String> = self
                    .pending
                    .iter()
                    .map(|p| {
                        format!(
                            "{p} (end offset {})",
                            self.ends.get(p).copied().unwrap_or(0)
                        )
                    })
                    .collect();
                let cause = self
                    .last_error
                    .as_ref()
                    .map(|e| format!("; last error: {e}"))
                    .unwrap_or_default();
                bail!(
                    "reading {} made no progress for {:?}: partitions {} not read to the end{cause}",
                    self.topic,
                    self.stall,
                    left.join(", ")
                );
            }
        }
    }
}

/// Every partition of `topic` from its beginning.
pub(crate) fn from_beginning(partitions: &[i32]) -> BTreeMap<i32, Start> {
    partitions.iter().map(|&p| (p, Start::Beginning)).collect()
}

/// Reads every record of `topic` from the beginning to its end as of now.
pub fn read_all(conn: &Connection, topic: &str) -> anyhow::Result<Vec<Record>> {
    let consumer = consumer(conn, &reader_group("read"))?;
    let parts = partitions(&consumer, topic, conn.timeout)?;
    let mut scanner = Scanner::open(&consumer, topic, &from_beginning(&parts), conn.timeout)?;
    let mut out = Vec::new();
    while let Some(r) = scanner.next_record()? {
        out.push(r);
    }
    Ok(out)
}

/// A group id for a consumer that reads by assignment and never commits.
pub(crate) fn reader_group(what: &str) -> String {
    format!("dlq-{what}-{}", std::process::id())
}
