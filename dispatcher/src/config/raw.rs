//! Raw configuration inputs, their merge (builder over environment) and
//! their validation into [`Settings`].

use super::{
    ConfigError, ENV_BROKERS, ENV_CLIENT_ID, ENV_GROUP_ID, ENV_HANDLER_CONCURRENCY,
    ENV_RDKAFKA_PREFIX,
};
use crate::policy::{Backoff, RetrySchedule};
use std::collections::BTreeMap;
use std::time::Duration;

type Result<T> = std::result::Result<T, ConfigError>;
/// A value and where it came from, so errors can name the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sourced<T> {
    pub(crate) value: T,
    pub(crate) origin: String,
}

impl<T> Sourced<T> {
    pub(crate) fn new(value: T, origin: impl Into<String>) -> Self {
        Sourced {
            value,
            origin: origin.into(),
        }
    }
}

/// The dispatcher's settings after merging the environment and the builder
/// (the builder wins).
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) brokers: Option<Sourced<String>>,
    pub(crate) group_id: Sourced<String>,
    pub(crate) client_id: Sourced<String>,
    pub(crate) rdkafka: BTreeMap<String, Sourced<String>>,
    pub(crate) max_in_flight: usize,
    pub(crate) partition_buffer: usize,
    pub(crate) commit_interval: Duration,
    pub(crate) drain_timeout: Duration,
    pub(crate) embedded_partitions: i32,
    pub(crate) poll_batch: usize,
    /// Bytes a partition may hold fetched and uncommitted.
    pub(crate) partition_buffer_bytes: usize,
    /// The limit of a final (revoke, shutdown) commit.
    pub(crate) commit_timeout: Duration,
    /// How long errors may repeat with nothing consumed before run() stops.
    pub(crate) error_timeout: Duration,
    /// Per-handler concurrency limits by handler name, with their origin.
    pub(crate) handler_concurrency: Vec<(String, usize, String)>,
    /// Retries of a dead-letter write.
    pub(crate) dead_letter_retry: RetrySchedule,
    /// Retries of a final commit, within `commit_timeout`.
    pub(crate) commit_retry: RetrySchedule,
}

/// Dead-letter writes: 5 attempts, from 200 ms doubling up to 5 s.
pub(crate) const DEFAULT_DEAD_LETTER_RETRY: RetrySchedule = RetrySchedule::new(
    5,
    Backoff::exponential(Duration::from_millis(200), Duration::from_secs(5)),
);

/// Final commits: 3 attempts, 100 ms then 200 ms apart (all within the
/// commit timeout).
pub(crate) const DEFAULT_COMMIT_RETRY: RetrySchedule = RetrySchedule::new(
    3,
    Backoff::exponential(Duration::from_millis(100), Duration::from_secs(1)),
);

/// The numeric settings, with their names for the environment
/// (`DISPATCHER_<NAME>`) and the builder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Knob {
    MaxInFlight,
    PartitionBuffer,
    PartitionBufferBytes,
    CommitIntervalMs,
    CommitTimeoutMs,
    DrainTimeoutMs,
    ErrorTimeoutMs,
    EmbeddedPartitions,
    PollBatch,
}

impl Knob {
    pub(crate) const ALL: [Knob; 9] = [
        Knob::MaxInFlight,
        Knob::PartitionBuffer,
        Knob::PartitionBufferBytes,
        Knob::CommitIntervalMs,
        Knob::CommitTimeoutMs,
        Knob::DrainTimeoutMs,
        Knob::ErrorTimeoutMs,
        Knob::EmbeddedPartitions,
        Knob::PollBatch,
    ];

    pub(crate) fn env_name(self) -> &'static str {
        match self {
            Knob::MaxInFlight => "DISPATCHER_MAX_IN_FLIGHT",
            Knob::PartitionBuffer => "DISPATCHER_PARTITION_BUFFER",
            Knob::PartitionBufferBytes => "DISPATCHER_PARTITION_BUFFER_BYTES",
            Knob::CommitIntervalMs => "DISPATCHER_COMMIT_INTERVAL_MS",
            Knob::CommitTimeoutMs => "DISPATCHER_COMMIT_TIMEOUT_MS",
            Knob::DrainTimeoutMs => "DISPATCHER_DRAIN_TIMEOUT_MS",
            Knob::ErrorTimeoutMs => "DISPATCHER_ERROR_TIMEOUT_MS",
            Knob::EmbeddedPartitions => "DISPATCHER_EMBEDDED_PARTITIONS",
            Knob::PollBatch => "DISPATCHER_POLL_BATCH",
        }
    }

    fn range(self) -> (u64, u64) {
        match self {
            Knob::MaxInFlight => (1, 1_000_000),
            Knob::PartitionBuffer => (1, 10_000_000),
            Knob::PartitionBufferBytes => (1_024, 1 << 40),
            Knob::CommitIntervalMs => (10, 3_600_000),
            Knob::CommitTimeoutMs => (100, 3_600_000),
            Knob::DrainTimeoutMs => (0, 3_600_000),
            Knob::ErrorTimeoutMs => (1_000, 86_400_000),
            Knob::EmbeddedPartitions => (1, 1_000),
            Knob::PollBatch => (1, 100_000),
        }
    }
}

/// Raw inputs before validation.
#[derive(Debug, Clone, Default)]
pub(crate) struct RawConfig {
    pub(crate) brokers: Option<Sourced<String>>,
    pub(crate) group_id: Option<Sourced<String>>,
    pub(crate) client_id: Option<Sourced<String>>,
    pub(crate) rdkafka: BTreeMap<String, Sourced<String>>,
    pub(crate) knobs: BTreeMap<&'static str, Sourced<String>>,
    /// `name=n` entries, each with its origin.
    pub(crate) handler_concurrency: Vec<Sourced<String>>,
    /// Builder-only: dead-letter write retries.
    pub(crate) dead_letter_retry: Option<RetrySchedule>,
    /// Builder-only: final commit retries.
    pub(crate) commit_retry: Option<RetrySchedule>,
}

impl RawConfig {
    /// Reads the environment.
    pub(crate) fn from_env(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut raw = RawConfig::default();
        for (name, value) in vars {
            let origin = format!("environment variable {name}");
            match name.as_str() {
                ENV_BROKERS => raw.brokers = Some(Sourced::new(value, origin)),
                ENV_GROUP_ID => raw.group_id = Some(Sourced::new(value, origin)),
                ENV_CLIENT_ID => raw.client_id = Some(Sourced::new(value, origin)),
                ENV_HANDLER_CONCURRENCY => raw.handler_concurrency.extend(
                    value
                        .split(',')
                        .filter(|e| !e.trim().is_empty())
                        .map(|e| Sourced::new(e.trim().to_owned(), origin.clone())),
                ),
                _ => {
                    if let Some(prop) = name.strip_prefix(ENV_RDKAFKA_PREFIX) {
                        let key = prop.to_ascii_lowercase().replace('_', ".");
                        raw.rdkafka.insert(key, Sourced::new(value, origin));
                    } else if let Some(knob) = Knob::ALL.iter().find(|k| k.env_name() == name) {
                        raw.knobs
                            .insert(knob.env_name(), Sourced::new(value, origin));
                    }
                }
            }
        }
        raw
    }

    /// Lays `over` on top of `self`.
    pub(crate) fn merge(mut self, over: RawConfig) -> Self {
        if over.brokers.is_some() {
            self.brokers = over.brokers;
        }
        if over.group_id.is_some() {
            self.group_id = over.group_id;
        }
        if over.client_id.is_some() {
            self.client_id = over.client_id;
        }
        self.rdkafka.extend(over.rdkafka);
        self.knobs.extend(over.knobs);
        // Later entries win: the builder's come after the environment's.
        self.handler_concurrency.extend(over.handler_concurrency);
        self.dead_letter_retry = over.dead_letter_retry.or(self.dead_letter_retry);
        self.commit_retry = over.commit_retry.or(self.commit_retry);
        self
    }

    pub(crate) fn set_handler_concurrency(&mut self, handler: &str, limit: usize) {
        let origin = format!("Dispatcher::builder().handler_concurrency({handler:?}, ..)");
        self.handler_concurrency
            .push(Sourced::new(format!("{handler}={limit}"), origin));
    }

    pub(crate) fn set_knob(&mut self, knob: Knob, value: u64) {
        let name = knob.env_name();
        let builder = format!(
            "Dispatcher::builder() ({})",
            name.trim_start_matches("DISPATCHER_").to_ascii_lowercase()
        );
        self.knobs
            .insert(name, Sourced::new(value.to_string(), builder));
    }

    pub(crate) fn set(&mut self, field: Field, value: String) {
        let origin = format!("Dispatcher::builder() ({})", field.builder_name());
        let v = Some(Sourced::new(value, origin));
        match field {
            Field::Brokers => self.brokers = v,
            Field::GroupId => self.group_id = v,
            Field::ClientId => self.client_id = v,
        }
    }

    pub(crate) fn set_rdkafka(&mut self, key: String, value: String) {
        let origin = format!("Dispatcher::builder().kafka_property({key:?}, ..)");
        self.rdkafka.insert(key, Sourced::new(value, origin));
    }

    /// Validates everything, reporting the first problem with its source.
    pub(crate) fn validate(self, program: &str) -> Result<Settings> {
        let brokers = match self.brokers {
            Some(b) if b.value.trim().is_empty() => None,
            Some(b) => {
                for server in b.value.split(',') {
                    let server = server.trim();
                    let ok = server.rsplit_once(':').is_some_and(|(host, port)| {
                        !host.is_empty() && port.parse::<u16>().is_ok()
                    });
                    if !ok {
                        return Err(ConfigError::new(ENV_BROKERS, &b.value, &b.origin, format!("{server:?} is not host:port; write e.g. KAFKA_BROKERS=broker1:9092,broker2:9092")));
                    }
                }
                Some(b)
            }
            None => None,
        };
        let group_id = match self.group_id {
            Some(g) => {
                check_id(ENV_GROUP_ID, &g)?;
                g
            }
            None => Sourced::new(
                program.to_owned(),
                "the program name (set KAFKA_GROUP_ID to choose)",
            ),
        };
        let client_id = match self.client_id {
            Some(c) => {
                check_id(ENV_CLIENT_ID, &c)?;
                c
            }
            None => Sourced::new(
                program.to_owned(),
                "the program name (set KAFKA_CLIENT_ID to choose)",
            ),
        };
        for (key, value) in &self.rdkafka {
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '.') {
                return Err(ConfigError::new(key, &value.value, &value.origin, "not a librdkafka property name (lower-case words joined by dots, e.g. security.protocol)"));
            }
            if crate::engine::commit::RESERVED.contains(&key.as_str()) {
                return Err(ConfigError::new(key, &value.value, &value.origin, "this property is managed by the dispatcher to keep offsets safe and cannot be overridden"));
            }
        }
        let knob = |k: Knob, default: u64| -> Result<u64> {
            let Some(raw) = self.knobs.get(k.env_name()) else {
                return Ok(default);
            };
            let (lo, hi) = k.range();
            match raw.value.trim().parse::<u64>() {
                Ok(v) if (lo..=hi).contains(&v) => Ok(v),
                _ => Err(ConfigError::new(
                    k.env_name(),
                    &raw.value,
                    &raw.origin,
                    format!("expected a whole number from {lo} to {hi}"),
                )),
            }
        };
        let as_usize = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        // A revoke blocks the poll thread while in-flight records drain and
        // their offsets are committed; librdkafka leaves the group if that
        // takes longer than max.poll.interval.ms.
        let drain_timeout = Duration::from_millis(knob(Knob::DrainTimeoutMs, 10_000)?);
        let commit_timeout = Duration::from_millis(knob(Knob::CommitTimeoutMs, 5_000)?);
        let poll_interval = max_poll_interval(&self.rdkafka)?;
        if drain_timeout + commit_timeout >= poll_interval {
            let (name, raw) = match self.knobs.get(Knob::DrainTimeoutMs.env_name()) {
                Some(raw) => (Knob::DrainTimeoutMs.env_name(), raw.clone()),
                None => (
                    "max.poll.interval.ms",
                    self.rdkafka
                        .get("max.poll.interval.ms")
                        .cloned()
                        .unwrap_or_else(|| {
                            Sourced::new(
                                poll_interval.as_millis().to_string(),
                                "librdkafka's default",
                            )
                        }),
                ),
            };
            return Err(ConfigError::new(
                name,
                &raw.value,
                &raw.origin,
                format!(
                    "the drain timeout ({} ms) plus the commit timeout ({} ms) must be shorter than max.poll.interval.ms ({} ms): a revoke that takes longer makes librdkafka leave the group; shorten the drain timeout or raise max.poll.interval.ms",
                    drain_timeout.as_millis(),
                    commit_timeout.as_millis(),
                    poll_interval.as_millis()
                ),
            ));
        }
        let mut handler_concurrency = Vec::new();
        for entry in &self.handler_concurrency {
            let parsed = entry
                .value
                .split_once('=')
                .and_then(|(name, n)| {
                    Some((
                        name.trim(),
                        n.trim().parse::<usize>().ok().filter(|n| *n > 0)?,
                    ))
                })
                .filter(|(name, _)| !name.is_empty());
            match parsed {
                Some((name, n)) => {
                    handler_concurrency.push((name.to_owned(), n, entry.origin.clone()))
                }
                None => {
                    return Err(ConfigError::new(
                        ENV_HANDLER_CONCURRENCY,
                        &entry.value,
                        &entry.origin,
                        "expected handler=limit with a limit of at least 1, e.g. on_order=8",
                    ))
                }
            }
        }
        Ok(Settings {
            handler_concurrency,
            brokers,
            group_id,
            client_id,
            rdkafka: self.rdkafka,
            max_in_flight: as_usize(knob(Knob::MaxInFlight, 10_000)?),
            partition_buffer: as_usize(knob(Knob::PartitionBuffer, 5_000)?),
            commit_interval: Duration::from_millis(knob(Knob::CommitIntervalMs, 1_000)?),
            drain_timeout,
            embedded_partitions: i32::try_from(knob(Knob::EmbeddedPartitions, 4)?).unwrap_or(4),
            poll_batch: as_usize(knob(Knob::PollBatch, 2_048)?),
            partition_buffer_bytes: as_usize(knob(Knob::PartitionBufferBytes, 16 << 20)?),
            commit_timeout,
            error_timeout: Duration::from_millis(knob(Knob::ErrorTimeoutMs, 300_000)?),
            dead_letter_retry: self.dead_letter_retry.unwrap_or(DEFAULT_DEAD_LETTER_RETRY),
            commit_retry: self.commit_retry.unwrap_or(DEFAULT_COMMIT_RETRY),
        })
    }
}

/// The longest librdkafka lets a consumer go without polling before it
/// leaves the group, `max.poll.interval.ms` (librdkafka's default: 5 min).
fn max_poll_interval(rdkafka: &BTreeMap<String, Sourced<String>>) -> Result<Duration> {
    const KEY: &str = "max.poll.interval.ms";
    match rdkafka.get(KEY) {
        None => Ok(Duration::from_millis(300_000)),
        Some(v) => v
            .value
            .trim()
            .parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|_| {
                ConfigError::new(
                    KEY,
                    &v.value,
                    &v.origin,
                    "expected a whole number of milliseconds",
                )
            }),
    }
}

fn check_id(key: &str, v: &Sourced<String>) -> Result<()> {
    if v.value.trim().is_empty() || v.value.len() > 255 {
        return Err(ConfigError::new(
            key,
            &v.value,
            &v.origin,
            "must be 1 to 255 characters",
        ));
    }
    Ok(())
}

/// The string settings a builder can set.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Field {
    Brokers,
    GroupId,
    ClientId,
}

impl Field {
    fn builder_name(self) -> &'static str {
        match self {
            Field::Brokers => "brokers",
            Field::GroupId => "group_id",
            Field::ClientId => "client_id",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> RawConfig {
        RawConfig::from_env(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn defaults_derive_group_from_program() {
        let s = env(&[]).validate("billing").expect("valid");
        assert_eq!(s.group_id.value, "billing");
        assert!(s.brokers.is_none());
        assert_eq!(s.max_in_flight, 10_000);
    }

    #[test]
    fn environment_and_passthrough() {
        let s = env(&[
            ("KAFKA_BROKERS", "a:9092,b:9093"),
            ("KAFKA_GROUP_ID", "g"),
            ("DISPATCHER_RDKAFKA_SECURITY_PROTOCOL", "SSL"),
            ("DISPATCHER_MAX_IN_FLIGHT", "64"),
        ])
        .validate("p")
        .expect("valid");
        assert_eq!(s.brokers.expect("set").value, "a:9092,b:9093");
        assert_eq!(s.rdkafka["security.protocol"].value, "SSL");
        assert_eq!(s.max_in_flight, 64);
    }

    #[test]
    fn errors_name_key_and_origin() {
        let err = env(&[("DISPATCHER_MAX_IN_FLIGHT", "lots")])
            .validate("p")
            .expect_err("invalid");
        let msg = err.to_string();
        assert!(
            msg.contains("DISPATCHER_MAX_IN_FLIGHT") && msg.contains("environment variable"),
            "{msg}"
        );
        let err = env(&[("KAFKA_BROKERS", "localhost")])
            .validate("p")
            .expect_err("invalid");
        assert!(err.to_string().contains("host:port"), "{err}");
        let mut raw = env(&[]);
        raw.set_rdkafka("enable.auto.commit".into(), "false".into());
        let err = raw.validate("p").expect_err("reserved");
        assert!(err.to_string().contains("kafka_property"), "{err}");
    }

    #[test]
    fn a_drain_timeout_must_fit_within_max_poll_interval() {
        let err = env(&[("DISPATCHER_DRAIN_TIMEOUT_MS", "300000")])
            .validate("p")
            .expect_err("longer than the poll interval");
        let msg = err.to_string();
        assert!(
            msg.contains("DISPATCHER_DRAIN_TIMEOUT_MS") && msg.contains("max.poll.interval.ms"),
            "{msg}"
        );
        let err = env(&[("DISPATCHER_RDKAFKA_MAX_POLL_INTERVAL_MS", "12000")])
            .validate("p")
            .expect_err("the default drain timeout does not fit");
        assert!(err.to_string().contains("max.poll.interval.ms"), "{err}");
        let ok = env(&[
            ("DISPATCHER_RDKAFKA_MAX_POLL_INTERVAL_MS", "12000"),
            ("DISPATCHER_DRAIN_TIMEOUT_MS", "2000"),
        ])
        .validate("p")
        .expect("2 s + 5 s fit in 12 s");
        assert_eq!(ok.drain_timeout, Duration::from_secs(2));
    }

    #[test]
    fn handler_concurrency_entries() {
        let mut over = RawConfig::default();
        over.set_handler_concurrency("on_refund", 2);
        let s = env(&[(
            "DISPATCHER_HANDLER_CONCURRENCY",
            "on_order=8, billing::on_refund=3",
        )])
        .merge(over)
        .validate("p")
        .expect("valid");
        let got: Vec<(&str, usize)> = s
            .handler_concurrency
            .iter()
            .map(|(n, l, _)| (n.as_str(), *l))
            .collect();
        assert_eq!(
            got,
            vec![("on_order", 8), ("billing::on_refund", 3), ("on_refund", 2)]
        );
        for bad in ["on_order", "on_order=0", "=3", "on_order=many"] {
            let err = env(&[("DISPATCHER_HANDLER_CONCURRENCY", bad)])
                .validate("p")
                .expect_err(bad);
            assert!(
                err.to_string().contains("DISPATCHER_HANDLER_CONCURRENCY"),
                "{err}"
            );
        }
    }

    #[test]
    fn builder_overrides_environment() {
        let mut over = RawConfig::default();
        over.set(Field::GroupId, "from-builder".into());
        let s = env(&[("KAFKA_GROUP_ID", "from-env")])
            .merge(over)
            .validate("p")
            .expect("valid");
        assert_eq!(s.group_id.value, "from-builder");
    }
}
