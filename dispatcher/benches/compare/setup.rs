//! What every run shares: the consumer settings, the environment's knobs and how the dispatcher is tuned.

use crate::support::helper::Helper;
use crate::support::knob;
use dispatcher::broker::EmbeddedBroker;
use rdkafka::ClientConfig;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// The dispatcher's own librdkafka defaults (`CONSUMER_DEFAULTS` in
/// dispatcher/src/engine/group.rs), given to the raw loops too so that all
/// fetch alike.
pub(super) const FETCH_SETTINGS: [(&str, &str); 5] = [
    ("auto.offset.reset", "earliest"),
    ("fetch.wait.max.ms", "20"),
    ("fetch.queue.backoff.ms", "10"),
    ("queued.max.messages.kbytes", "4096"),
    ("queued.min.messages", "1000"),
];

/// Group settings of every consumer, raw or not: a broker that waits about
/// half the session timeout for a group to form (tansu) joins in 3 s
/// instead of librdkafka's default 45 s / 2.
pub(super) const GROUP_SETTINGS: [(&str, &str); 2] = [
    ("session.timeout.ms", "6000"),
    ("heartbeat.interval.ms", "1000"),
];

/// How the raw loops commit, like a normal consumer: librdkafka commits
/// in the background every second (the dispatcher's default
/// `commit_interval`) the offsets the loop stored after processing.
pub(super) const RAW_COMMIT_SETTINGS: [(&str, &str); 3] = [
    ("enable.auto.commit", "true"),
    ("enable.auto.offset.store", "false"),
    ("auto.commit.interval.ms", "1000"),
];

/// What every run shares.
pub(super) struct Setup {
    pub(super) brokers: String,
    /// The embedded cluster, when no `KAFKA_BROKERS`.
    pub(super) broker: Option<Arc<EmbeddedBroker>>,
    pub(super) embedded: bool,
    pub(super) scale: f64,
    pub(super) rounds: usize,
    /// Partitions of the overhead and scaling topics.
    pub(super) partitions: i32,
    /// Partitions of the paced topics.
    pub(super) paced_partitions: i32,
    /// `BENCH_CONSUMER_PROPS`, for every consumer.
    pub(super) props: Vec<(String, String)>,
    pub(super) metrics: bool,
}

impl Setup {
    pub(super) fn from_env(
        brokers: String,
        broker: Option<Arc<EmbeddedBroker>>,
        embedded: bool,
    ) -> Setup {
        let props = std::env::var("BENCH_CONSUMER_PROPS")
            .unwrap_or_default()
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        Setup {
            brokers,
            broker,
            embedded,
            scale: knob("BENCH_SCALE").unwrap_or(1.0f64).max(1e-4),
            rounds: knob("BENCH_ROUNDS").unwrap_or(3usize).max(1),
            // The embedded cluster keeps about 5 MiB per partition (some
            // 40,000 of these records): 32 hold the overhead part's million.
            partitions: knob("BENCH_PARTITIONS").unwrap_or(if embedded { 32 } else { 4 }),
            paced_partitions: knob("BENCH_PACED_PARTITIONS").unwrap_or(4),
            props,
            metrics: std::env::var("BENCH_METRICS").is_ok_and(|v| v == "1"),
        }
    }

    /// `n` times the scale, at least `min`.
    pub(super) fn scaled(&self, n: usize, min: usize) -> usize {
        ((n as f64 * self.scale) as usize).max(min)
    }

    /// Creates a topic and its dead-letter topic `<name>.DLT` (one
    /// partition), which the dispatcher's startup checks ask for.
    pub(super) fn topic(&self, helper: &mut Helper, name: &str, partitions: i32) {
        for (topic, partitions) in [(name.to_owned(), partitions), (format!("{name}.DLT"), 1)] {
            match &self.broker {
                Some(b) => b.create_topic(&topic, partitions).expect("create a topic"),
                None => helper.topic(&topic, partitions),
            }
        }
    }

    pub(super) fn raw_config(&self, group: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("group.id", group);
        for (k, v) in FETCH_SETTINGS
            .iter()
            .chain(&GROUP_SETTINGS)
            .chain(&RAW_COMMIT_SETTINGS)
        {
            c.set(*k, *v);
        }
        for (k, v) in &self.props {
            c.set(k, v);
        }
        c
    }

    /// The settings, for results.json.
    pub(super) fn json(&self) -> Value {
        json!({"scale": self.scale, "rounds": self.rounds, "partitions": self.partitions,
               "fetch": FETCH_SETTINGS.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
               "group": GROUP_SETTINGS.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
               "raw_commit": RAW_COMMIT_SETTINGS.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
               "consumer_props": self.props.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>()})
    }
}

/// How the dispatcher runs beyond its defaults.
#[derive(Clone, Copy, Default)]
pub(super) struct Tune {
    pub(super) max_in_flight: Option<usize>,
    /// The handler's simulated I/O (zero: none).
    pub(super) io: Duration,
}
