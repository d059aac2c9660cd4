//! Reading a group's committed offsets and a topic's end offsets.

use crate::error::{Error, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::Duration;

fn metadata_client(brokers: &str, group: Option<&str>) -> Result<BaseConsumer> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    if let Some(g) = group {
        c.set("group.id", g);
    }
    c.create()
        .map_err(|e| Error::kafka("creating a metadata client", e))
}

fn partitions(client: &BaseConsumer, topic: &str) -> Result<Vec<i32>> {
    let md = client
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| Error::kafka(format!("reading metadata of {topic}"), e))?;
    Ok(md
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}

/// The committed offsets of `group` on `topic`, by partition (partitions
/// with no commit are left out).
pub fn committed_offsets(brokers: &str, group: &str, topic: &str) -> Result<BTreeMap<i32, i64>> {
    let client = metadata_client(brokers, Some(group))?;
    let mut tpl = TopicPartitionList::new();
    for p in partitions(&client, topic)? {
        tpl.add_partition(topic, p);
    }
    let committed = client
        .committed_offsets(tpl, Duration::from_secs(10))
        .map_err(|e| {
            Error::kafka(
                format!("reading committed offsets of {group} on {topic}"),
                e,
            )
        })?;
    Ok(committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect())
}

/// The end offset of each partition of `topic`.
pub fn end_offsets(brokers: &str, topic: &str) -> Result<BTreeMap<i32, i64>> {
    let client = metadata_client(brokers, None)?;
    let mut out = BTreeMap::new();
    for p in partitions(&client, topic)? {
        let (_, high) = client
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .map_err(|e| Error::kafka(format!("reading the end offset of {topic}[{p}]"), e))?;
        out.insert(p, high);
    }
    Ok(out)
}
