//! The shape of the configuration, the same in every layer: a file, the
//! environment and the builder all fill in this model.

use serde::de::{self, Deserializer};
use serde::Deserialize;
use std::collections::BTreeMap;

/// Every setting, all optional: a layer sets what it sets.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Model {
    pub(crate) brokers: Option<String>,
    pub(crate) group_id: Option<String>,
    pub(crate) client_id: Option<String>,
    pub(crate) max_in_flight: Option<u64>,
    pub(crate) partition_buffer: Option<u64>,
    pub(crate) partition_buffer_bytes: Option<u64>,
    pub(crate) poll_batch: Option<u64>,
    pub(crate) embedded_partitions: Option<u64>,
    pub(crate) commit_interval: Option<String>,
    pub(crate) commit_timeout: Option<String>,
    pub(crate) drain_timeout: Option<String>,
    pub(crate) error_timeout: Option<String>,
    pub(crate) create_topics: Option<bool>,
    pub(crate) topic_partitions: Option<u64>,
    pub(crate) topic_replication: Option<u64>,
    pub(crate) metrics_address: Option<String>,
    pub(crate) stall_timeout: Option<String>,
    #[serde(default)]
    pub(crate) kafka: KafkaTables,
    #[serde(default)]
    pub(crate) handlers: BTreeMap<String, HandlerTable>,
}

/// The settings with a duration, written as `"10s"`.
pub(crate) const DURATION_KEYS: [&str; 5] = [
    "commit_interval",
    "commit_timeout",
    "drain_timeout",
    "error_timeout",
    "stall_timeout",
];

/// librdkafka properties: for every client, for the consumers only, and for
/// the dead-letter producer only.
#[derive(Debug, Default)]
pub(crate) struct KafkaTables {
    pub(crate) common: BTreeMap<String, String>,
    pub(crate) consumer: BTreeMap<String, String>,
    pub(crate) producer: BTreeMap<String, String>,
}

/// A property value as a file may write it: librdkafka takes text.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    fn into_text(self) -> String {
        match self {
            Scalar::Text(s) => s,
            Scalar::Integer(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PropertyOrTable {
    Table(BTreeMap<String, Scalar>),
    Property(Scalar),
}

impl<'de> Deserialize<'de> for KafkaTables {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let entries = BTreeMap::<String, PropertyOrTable>::deserialize(d)?;
        let mut tables = KafkaTables::default();
        for (key, entry) in entries {
            match (key.as_str(), entry) {
                ("consumer", PropertyOrTable::Table(t)) => {
                    tables.consumer = t.into_iter().map(|(k, v)| (k, v.into_text())).collect()
                }
                ("producer", PropertyOrTable::Table(t)) => {
                    tables.producer = t.into_iter().map(|(k, v)| (k, v.into_text())).collect()
                }
                (_, PropertyOrTable::Property(v)) => {
                    tables.common.insert(key, v.into_text());
                }
                (other, PropertyOrTable::Table(_)) => {
                    return Err(de::Error::custom(format!(
                        "`kafka.{other}` is a table; the tables of `kafka` are `consumer` and `producer`, and every other key is a librdkafka property such as \"security.protocol\""
                    )))
                }
            }
        }
        Ok(tables)
    }
}

/// What a deployment may change of one handler, by the handler's name.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HandlerTable {
    pub(crate) topics: Option<TopicList>,
    pub(crate) concurrency: Option<u64>,
    pub(crate) max_attempts: Option<u64>,
    pub(crate) backoff: Option<BackoffTable>,
    pub(crate) timeout: Option<String>,
    pub(crate) ordering: Option<String>,
    pub(crate) dead_letter_topic: Option<String>,
}

/// The keys of a handler table, for did-you-mean hints.
pub(crate) const HANDLER_KEYS: [&str; 7] = [
    "topics",
    "concurrency",
    "max_attempts",
    "backoff",
    "timeout",
    "ordering",
    "dead_letter_topic",
];

/// Topics: a list, one name, or names separated by commas (as the
/// environment writes them).
#[derive(Debug)]
pub(crate) struct TopicList(pub(crate) Vec<String>);

impl<'de> Deserialize<'de> for TopicList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            One(String),
            Many(Vec<String>),
        }
        Ok(TopicList(match Form::deserialize(d)? {
            Form::One(s) => s
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect(),
            Form::Many(v) => v,
        }))
    }
}

/// A backoff: `"200ms"` for a fixed one, or a table for an exponential
/// one, every key optional: `{ initial = "100ms", max = "10s", factor =
/// 2.0, jitter = 0.2 }`.
#[derive(Debug)]
pub(crate) enum BackoffTable {
    Fixed(String),
    Exponential {
        initial: Option<String>,
        max: Option<String>,
        factor: Option<f64>,
        jitter: Option<f64>,
    },
}

/// How a backoff is written, for error messages.
pub(crate) const BACKOFF_FORMS: &str = "a backoff is \"200ms\" (fixed) or a table { initial = \"100ms\", max = \"10s\", factor = 2.0, jitter = 0.2 } (exponential, every key optional)";

impl<'de> Deserialize<'de> for BackoffTable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Exponential {
            initial: Option<String>,
            max: Option<String>,
            factor: Option<f64>,
            jitter: Option<f64>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Fixed(String),
            Exponential(Exponential),
        }
        match Form::deserialize(d) {
            Ok(Form::Fixed(s)) => Ok(BackoffTable::Fixed(s)),
            Ok(Form::Exponential(e)) => Ok(BackoffTable::Exponential {
                initial: e.initial,
                max: e.max,
                factor: e.factor,
                jitter: e.jitter,
            }),
            Err(_) => Err(de::Error::custom(BACKOFF_FORMS)),
        }
    }
}
