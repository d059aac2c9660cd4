//! The handlers grouped by consumer group, with the checks only the whole
//! set can make (topics and retry topics claimed twice, offsets reset to
//! the latest with retry topics), and their topics on the embedded broker.

use crate::broker::EmbeddedBroker;
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::handler::HandlerSpec;
use std::collections::{BTreeMap, HashMap};

/// The handlers of each consumer group; two handlers claiming one topic in
/// one group is an error naming both.
pub(super) fn by_consumer_group(
    handlers: Vec<HandlerSpec>,
    settings: &Settings,
) -> Result<BTreeMap<String, Vec<HandlerSpec>>> {
    let mut groups: BTreeMap<String, Vec<HandlerSpec>> = BTreeMap::new();
    for h in handlers {
        let group = h
            .group
            .map(str::to_owned)
            .unwrap_or_else(|| settings.group_id.value.clone());
        groups.entry(group).or_default().push(h);
    }
    // A retry topic's partition that this group has not committed yet must
    // be read from its beginning: a record written there before the first
    // read would be skipped, and its source offset is committed already.
    let reset = settings
        .kafka
        .consumer
        .get("auto.offset.reset")
        .or_else(|| settings.kafka.common.get("auto.offset.reset"));
    if let Some((value, origin)) = reset {
        let value = value.expose().to_ascii_lowercase();
        if matches!(value.as_str(), "latest" | "largest" | "end") {
            if let Some(h) = groups
                .values()
                .flatten()
                .find(|h| !h.policy.retry_topics().is_empty())
            {
                return Err(h.invalid(format!(
                    "it uses retry topics, and auto.offset.reset={value} ({origin}) would skip the records written to a retry topic before this group first reads it; leave auto.offset.reset at earliest"
                )));
            }
        }
    }
    // Retry topics and the group reading each, for the check across groups.
    let mut retry_readers: HashMap<String, (&str, &HandlerSpec)> = HashMap::new();
    for (group, specs) in &groups {
        let mut seen: HashMap<String, &HandlerSpec> = HashMap::new();
        for h in specs {
            h.check_retry_topics(group)?;
            for (t, level, _) in h.read_topics(group) {
                if level > 0 {
                    if let Some((other_group, other)) = retry_readers.get(&t) {
                        if other_group != group {
                            return Err(h.invalid(format!(
                                "its retry topic {t} is also read by {} ({}) in consumer group {other_group:?}: the groups would handle each other's retries; put {{group}} in retry_topic_name",
                                other.qualified_name(),
                                other.location()
                            )));
                        }
                    }
                    retry_readers.insert(t.clone(), (group, h));
                }
                if let Some(first) = seen.insert(t.clone(), h) {
                    return Err(Error::DuplicateTopic {
                        topic: t,
                        group: group.clone(),
                        first: format!("{} ({})", first.qualified_name(), first.location()),
                        second: format!("{} ({})", h.qualified_name(), h.location()),
                    });
                }
            }
        }
    }
    Ok(groups)
}

/// Creates every handler topic and dead-letter topic on the embedded
/// broker.
pub(super) fn create_topics(
    broker: &EmbeddedBroker,
    groups: &BTreeMap<String, Vec<HandlerSpec>>,
    partitions: i32,
) -> Result<()> {
    for (group, h) in groups
        .iter()
        .flat_map(|(g, hs)| hs.iter().map(move |h| (g, h)))
    {
        for (t, _, _) in h.read_topics(group) {
            broker.create_topic(&t, partitions)?;
        }
        for t in h.topics {
            broker.create_topic(&h.dead_letter_topic(t), partitions)?;
        }
    }
    Ok(())
}
