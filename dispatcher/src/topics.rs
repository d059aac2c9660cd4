//! At startup on a real cluster: the topics the handlers read and the
//! dead-letter topics they write exist, or are created when the
//! configuration says so, and the dead-letter topics keep what is written
//! to them. The embedded broker creates what it needs instead.

use crate::client::HooksContext;
use crate::config::TopicSetup;
use crate::error::{Error, Result};
use crate::handler::HandlerSpec;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::error::RDKafkaErrorCode;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The topics the handlers need: what they read, and where each read
/// topic's dead letters go.
pub(crate) struct Needed {
    /// Topics handlers read.
    pub(crate) sources: BTreeSet<String>,
    /// Dead-letter topic -> the topics whose dead letters go there.
    pub(crate) dead_letters: BTreeMap<String, BTreeSet<String>>,
}

impl Needed {
    pub(crate) fn of<'a>(
        handlers: impl IntoIterator<Item = (&'a String, &'a HandlerSpec)>,
    ) -> Self {
        let mut needed = Needed {
            sources: BTreeSet::new(),
            dead_letters: BTreeMap::new(),
        };
        for (group, h) in handlers {
            for (t, _, _) in h.read_topics(group) {
                needed.sources.insert(t);
            }
            for t in h.topics {
                needed
                    .dead_letters
                    .entry(h.dead_letter_topic(t))
                    .or_default()
                    .insert((*t).to_owned());
            }
        }
        needed
    }

    fn all(&self) -> BTreeSet<&str> {
        self.sources
            .iter()
            .chain(self.dead_letters.keys())
            .map(String::as_str)
            .collect()
    }
}

/// Checks (and, when asked, creates) the topics on the cluster.
pub(crate) async fn check(
    config: &ClientConfig,
    context: HooksContext,
    needed: Needed,
    setup: TopicSetup,
) -> Result<()> {
    let admin: AdminClient<HooksContext> = config
        .create_with_context(context)
        .map_err(|e| Error::kafka("creating the admin client for the topic checks", e))?;
    let admin = std::sync::Arc::new(admin);
    let partitions = {
        let admin = admin.clone();
        tokio::task::spawn_blocking(move || existing_partitions(&admin))
            .await
            .map_err(|e| Error::Runtime {
                context: "the topic check failed".into(),
                source: Some(Box::new(e)),
            })??
    };
    let missing: Vec<&str> = needed
        .all()
        .into_iter()
        .filter(|t| !partitions.contains_key(*t))
        .collect();
    if !missing.is_empty() {
        if !setup.create {
            return Err(Error::MissingTopics {
                topics: missing.iter().map(|t| (*t).to_owned()).collect(),
            });
        }
        create(&admin, &missing, setup).await?;
    }
    check_dead_letter_topics(&admin, &needed, &partitions).await
}

/// Partitions of every topic on the cluster.
fn existing_partitions(admin: &AdminClient<HooksContext>) -> Result<BTreeMap<String, usize>> {
    let md = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .map_err(|e| Error::kafka("reading the cluster's topics", e))?;
    Ok(md
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| (t.name().to_owned(), t.partitions().len()))
        .collect())
}

async fn create(
    admin: &AdminClient<HooksContext>,
    missing: &[&str],
    setup: TopicSetup,
) -> Result<()> {
    let new: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|t| {
            NewTopic::new(
                t,
                setup.partitions,
                TopicReplication::Fixed(setup.replication),
            )
        })
        .collect();
    let results = admin
        .create_topics(
            &new,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .map_err(|e| Error::kafka("creating the missing topics", e))?;
    for result in results {
        match result {
            Ok(topic) => tracing::info!(
                topic,
                partitions = setup.partitions,
                replication = setup.replication,
                "created topic"
            ),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(Error::Kafka {
                    context: format!("creating topic {topic:?}"),
                    source: rdkafka::error::KafkaError::AdminOp(code),
                })
            }
        }
    }
    Ok(())
}

/// A compacted dead-letter topic would keep only the last dead letter of
/// each key: an error. One with fewer partitions than a topic it serves is
/// reported (its dead letters are spread over fewer partitions).
async fn check_dead_letter_topics(
    admin: &AdminClient<HooksContext>,
    needed: &Needed,
    partitions: &BTreeMap<String, usize>,
) -> Result<()> {
    for (dlt, sources) in &needed.dead_letters {
        for source in sources {
            if let (Some(d), Some(s)) = (partitions.get(dlt), partitions.get(source)) {
                if d < s {
                    tracing::warn!(dead_letter_topic = %dlt, partitions = d, source_topic = %source, source_partitions = s, "the dead-letter topic has fewer partitions than the topic it serves");
                }
            }
        }
    }
    let specifiers: Vec<ResourceSpecifier<'_>> = needed
        .dead_letters
        .keys()
        .map(|t| ResourceSpecifier::Topic(t))
        .collect();
    // A best-effort check, so a short wait: a cluster that has just
    // answered the metadata request answers this in milliseconds, and
    // librdkafka's mock cluster (the embedded broker reached by address,
    // `dlq dev-broker`) names no controller, so DescribeConfigs waits out
    // its whole timeout there on every start.
    let described = admin
        .describe_configs(
            &specifiers,
            &AdminOptions::new().request_timeout(Some(Duration::from_secs(3))),
        )
        .await;
    let results = match described {
        Ok(results) => results,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the dead-letter topics' configuration; their cleanup.policy is not checked");
            return Ok(());
        }
    };
    for (topic, result) in needed.dead_letters.keys().zip(results) {
        match result {
            Ok(resource) => {
                let policy = resource
                    .get("cleanup.policy")
                    .and_then(|e| e.value.clone())
                    .unwrap_or_default();
                if policy.split(',').any(|p| p.trim() == "compact") {
                    return Err(Error::CompactedDeadLetterTopic {
                        topic: topic.clone(),
                        policy,
                    });
                }
            }
            Err(code) => {
                tracing::warn!(topic = %topic, error = %code, "cannot read the dead-letter topic's configuration; its cleanup.policy is not checked");
            }
        }
    }
    Ok(())
}
