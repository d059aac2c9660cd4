//! Reading a topic back, for assertions: dead letters, say.

use crate::error::{Error, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message as _};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::time::{Duration, Instant};

/// One record read back from a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReadRecord {
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its key.
    pub key: Option<Vec<u8>>,
    /// Its payload.
    pub payload: Option<Vec<u8>>,
    /// Its headers, in order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl ReadRecord {
    /// The value of the last header called `name`, as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// What its `dlt.*` headers say, when it is a dead letter.
    pub fn dead_letter(
        &self,
    ) -> std::result::Result<crate::dead_letter::DeadLetterInfo, crate::dead_letter::NotADeadLetter>
    {
        crate::dead_letter::DeadLetterInfo::from_headers(
            self.headers.iter().map(|(n, v)| (n.as_str(), v.as_deref())),
        )
    }
}

/// Reads `topic` from the beginning of every partition until at least
/// `count` records arrived, or fails after `timeout`. It does not rely on
/// the end offsets a broker reports.
pub fn read_topic(
    brokers: &str,
    topic: &str,
    count: usize,
    timeout: Duration,
) -> Result<Vec<ReadRecord>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        // Assigned partitions need a group; this one never commits.
        .set(
            "group.id",
            format!("dispatcher-reader-{}", std::process::id()),
        )
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "20")
        .create()
        .map_err(|e| Error::kafka("creating a reader", e))?;
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| Error::kafka(format!("reading metadata of {topic}"), e))?;
    let mut tpl = TopicPartitionList::new();
    for p in md.topics().iter().flat_map(|t| t.partitions()) {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .map_err(|e| Error::kafka(format!("assigning {topic}"), e))?;
    }
    consumer
        .assign(&tpl)
        .map_err(|e| Error::kafka(format!("assigning {topic}"), e))?;
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < count {
        if Instant::now() >= deadline {
            return Err(Error::runtime(format!(
                "read {} of the {count} records expected in {topic} within {timeout:?}",
                out.len()
            )));
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => out.push(ReadRecord {
                partition: m.partition(),
                offset: m.offset(),
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
            }),
            Some(Err(e)) => return Err(Error::kafka(format!("reading {topic}"), e)),
            None => {}
        }
    }
    Ok(out)
}
