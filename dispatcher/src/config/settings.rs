//! The validated settings: every value checked, with where it came from.

use super::layers::Layers;
use super::model::{BackoffTable, HandlerTable, Model, BACKOFF_FORMS};
use super::secret::{self, PropertyValue};
use super::ConfigError;
use crate::handler::HandlerSpec;
use crate::policy::{Backoff, OrderingMode, RetrySchedule};
use dispatcher_rules::duration;
use std::collections::BTreeMap;
use std::time::Duration;

type Result<T> = std::result::Result<T, ConfigError>;

/// A value and where it came from, so errors can name the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sourced<T> {
    pub(crate) value: T,
    pub(crate) origin: String,
}

/// librdkafka properties with their origins.
pub(crate) type Properties = BTreeMap<String, (PropertyValue, String)>;

/// The librdkafka properties of every client, of the consumers, of the
/// dead-letter producer.
#[derive(Debug, Clone, Default)]
pub(crate) struct Kafka {
    pub(crate) common: Properties,
    pub(crate) consumer: Properties,
    pub(crate) producer: Properties,
}

impl Kafka {
    /// Whether the consumers get `key` from the configuration.
    pub(crate) fn consumer_sets(&self, key: &str) -> bool {
        self.common.contains_key(key) || self.consumer.contains_key(key)
    }
}

/// Whether to check, or create, the topics on a real cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TopicSetup {
    /// Create missing topics instead of stopping.
    pub(crate) create: bool,
    pub(crate) partitions: i32,
    pub(crate) replication: i32,
}

/// The dispatcher's settings after merging and validating every layer.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) brokers: Option<Sourced<String>>,
    pub(crate) group_id: Sourced<String>,
    pub(crate) client_id: Sourced<String>,
    pub(crate) kafka: Kafka,
    pub(crate) max_in_flight: usize,
    pub(crate) partition_buffer: usize,
    pub(crate) partition_buffer_bytes: usize,
    pub(crate) poll_batch: usize,
    pub(crate) embedded_partitions: i32,
    pub(crate) commit_interval: Duration,
    pub(crate) commit_timeout: Duration,
    pub(crate) drain_timeout: Duration,
    pub(crate) error_timeout: Duration,
    pub(crate) topics: TopicSetup,
    /// Where to serve metrics and health checks; `None`: no server.
    pub(crate) metrics_address: Option<std::net::SocketAddr>,
    /// How long a partition's oldest unfinished record may hold up its
    /// commits before the partition counts as stalled.
    pub(crate) stall_timeout: Duration,
    /// Handler tables by handler name, checked values only.
    pub(crate) handlers: BTreeMap<String, HandlerOverride>,
    pub(crate) dead_letter_retry: RetrySchedule,
    pub(crate) commit_retry: RetrySchedule,
}

/// What a handler table changes, with where the table came from.
#[derive(Debug, Clone, Default)]
pub(crate) struct HandlerOverride {
    pub(crate) origin: String,
    pub(crate) topics: Option<Vec<String>>,
    pub(crate) concurrency: Option<usize>,
    pub(crate) max_attempts: Option<u32>,
    pub(crate) backoff: Option<Backoff>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) ordering: Option<OrderingMode>,
    pub(crate) dead_letter_topic: Option<String>,
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

/// Validates `model` (merged from `layers`) into settings.
pub(crate) fn validate(
    model: Model,
    layers: &Layers,
    program: &str,
    retries: (Option<RetrySchedule>, Option<RetrySchedule>),
) -> Result<Settings> {
    let origin = |key: &str| layers.origin(&[key.to_owned()]);
    let invalid = |key: &str, value: &str, reason: String| {
        ConfigError::new(
            &layers.key_name(&[key.to_owned()]),
            value,
            &origin(key),
            reason,
        )
    };
    let brokers = match model.brokers {
        Some(b) if b.trim().is_empty() => None,
        Some(b) => {
            for server in b.split(',') {
                let server = server.trim();
                let ok = server
                    .rsplit_once(':')
                    .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
                if !ok {
                    return Err(invalid("brokers", &b, format!("{server:?} is not host:port; write e.g. KAFKA_BROKERS=broker1:9092,broker2:9092")));
                }
            }
            Some(Sourced {
                value: b,
                origin: origin("brokers"),
            })
        }
        None => None,
    };
    let id = |key: &str, value: Option<String>| -> Result<Sourced<String>> {
        match value {
            Some(v) if v.trim().is_empty() || v.len() > 255 => {
                Err(invalid(key, &v, "must be 1 to 255 characters".to_owned()))
            }
            Some(v) => Ok(Sourced {
                value: v,
                origin: origin(key),
            }),
            None => Ok(Sourced {
                value: program.to_owned(),
                origin: format!(
                    "the program's name (set KAFKA_{} to choose)",
                    key.to_ascii_uppercase()
                ),
            }),
        }
    };
    let group_id = id("group_id", model.group_id)?;
    let client_id = id("client_id", model.client_id)?;

    let number =
        |key: &str, value: Option<u64>, default: u64, (lo, hi): (u64, u64)| -> Result<u64> {
            match value {
                None => Ok(default),
                Some(v) if (lo..=hi).contains(&v) => Ok(v),
                Some(v) => Err(invalid(
                    key,
                    &v.to_string(),
                    format!("expected a whole number from {lo} to {hi}"),
                )),
            }
        };
    let time = |key: &str,
                value: Option<String>,
                default: Duration,
                (lo, hi): (Duration, Duration)|
     -> Result<Duration> {
        let Some(text) = value else {
            return Ok(default);
        };
        let d = duration::parse(&text).map_err(|e| invalid(key, &text, e))?;
        if d < lo || d > hi {
            return Err(invalid(
                key,
                &text,
                format!(
                    "expected a duration from {} to {}",
                    duration::format(lo),
                    duration::format(hi)
                ),
            ));
        }
        Ok(d)
    };
    let as_usize = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    let ms = Duration::from_millis;
    let kafka = properties(model.kafka, layers)?;
    let drain_timeout = time(
        "drain_timeout",
        model.drain_timeout,
        ms(10_000),
        (ms(0), ms(3_600_000)),
    )?;
    let commit_timeout = time(
        "commit_timeout",
        model.commit_timeout,
        ms(5_000),
        (ms(100), ms(3_600_000)),
    )?;
    check_poll_interval(&kafka, drain_timeout, commit_timeout, layers)?;
    let handlers = model
        .handlers
        .into_iter()
        .map(|(name, table)| handler_override(&name, table, layers).map(|o| (name, o)))
        .collect::<Result<_>>()?;
    let topics = TopicSetup {
        create: model.create_topics.unwrap_or(false),
        partitions: i32::try_from(number(
            "topic_partitions",
            model.topic_partitions,
            1,
            (1, 100_000),
        )?)
        .unwrap_or(1),
        replication: i32::try_from(number(
            "topic_replication",
            model.topic_replication,
            1,
            (1, 1_000),
        )?)
        .unwrap_or(1),
    };
    Ok(Settings {
        brokers,
        group_id,
        client_id,
        kafka,
        max_in_flight: as_usize(number(
            "max_in_flight",
            model.max_in_flight,
            10_000,
            (1, 1_000_000),
        )?),
        partition_buffer: as_usize(number(
            "partition_buffer",
            model.partition_buffer,
            5_000,
            (1, 10_000_000),
        )?),
        partition_buffer_bytes: as_usize(number(
            "partition_buffer_bytes",
            model.partition_buffer_bytes,
            16 << 20,
            (1_024, 1 << 40),
        )?),
        poll_batch: as_usize(number("poll_batch", model.poll_batch, 2_048, (1, 100_000))?),
        embedded_partitions: i32::try_from(number(
            "embedded_partitions",
            model.embedded_partitions,
            4,
            (1, 1_000),
        )?)
        .unwrap_or(4),
        commit_interval: time(
            "commit_interval",
            model.commit_interval,
            ms(1_000),
            (ms(10), ms(3_600_000)),
        )?,
        commit_timeout,
        drain_timeout,
        error_timeout: time(
            "error_timeout",
            model.error_timeout,
            ms(300_000),
            (ms(1_000), ms(86_400_000)),
        )?,
        topics,
        metrics_address: match model.metrics_address {
            None => None,
            Some(a) => {
                Some(metrics_address(&a).map_err(|reason| invalid("metrics_address", &a, reason))?)
            }
        },
        stall_timeout: time(
            "stall_timeout",
            model.stall_timeout,
            ms(60_000),
            (ms(100), ms(86_400_000)),
        )?,
        handlers,
        dead_letter_retry: retries.0.unwrap_or(DEFAULT_DEAD_LETTER_RETRY),
        commit_retry: retries.1.unwrap_or(DEFAULT_COMMIT_RETRY),
    })
}

/// The address of the metrics and health server: `host:port`, or a port
/// alone for 127.0.0.1.
fn metrics_address(text: &str) -> std::result::Result<std::net::SocketAddr, String> {
    let text = text.trim();
    if let Ok(port) = text.parse::<u16>() {
        return Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    }
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    match text.rsplit_once(':') {
        Some(("localhost", port)) => port
            .parse::<u16>()
            .map(|p| std::net::SocketAddr::from(([127, 0, 0, 1], p)))
            .map_err(|_| format!("{port:?} is not a port")),
        _ => Err("expected an IP address and port such as \"127.0.0.1:9898\" (\"0.0.0.0:9898\" for every interface), or a port alone for 127.0.0.1".to_owned()),
    }
}

/// The three property tables, checked: names librdkafka could know, and
/// none of those the dispatcher sets itself.
fn properties(tables: super::model::KafkaTables, layers: &Layers) -> Result<Kafka> {
    let mut kafka = Kafka::default();
    for (table, entries, out) in [
        (None, tables.common, &mut kafka.common),
        (Some("consumer"), tables.consumer, &mut kafka.consumer),
        (Some("producer"), tables.producer, &mut kafka.producer),
    ] {
        for (key, value) in entries {
            let path: Vec<String> = ["kafka"]
                .into_iter()
                .chain(table)
                .map(str::to_owned)
                .chain([key.clone()])
                .collect();
            let origin = layers.origin(&path);
            let shown = secret::shown(&key, &value);
            if key.is_empty()
                || !key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
            {
                return Err(ConfigError::new(&key, shown, &origin, "not a librdkafka property name (lower-case words joined by dots, e.g. security.protocol)"));
            }
            if table != Some("producer") && crate::engine::commit::RESERVED.contains(&key.as_str())
            {
                return Err(ConfigError::new(&key, shown, &origin, "this property is managed by the dispatcher to keep offsets safe and cannot be overridden; set brokers, group_id or commit_interval instead"));
            }
            out.insert(key.clone(), (PropertyValue::new(&key, value), origin));
        }
    }
    Ok(kafka)
}

/// A revoke blocks the poll thread while in-flight records drain and their
/// offsets are committed; librdkafka leaves the group if that takes longer
/// than `max.poll.interval.ms`.
fn check_poll_interval(
    kafka: &Kafka,
    drain: Duration,
    commit: Duration,
    layers: &Layers,
) -> Result<()> {
    const KEY: &str = "max.poll.interval.ms";
    let set = kafka.consumer.get(KEY).or_else(|| kafka.common.get(KEY));
    let interval = match set {
        None => Duration::from_millis(300_000),
        Some((v, origin)) => v
            .expose()
            .trim()
            .parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|_| {
                ConfigError::new(
                    KEY,
                    v.shown(),
                    origin,
                    "expected a whole number of milliseconds",
                )
            })?,
    };
    if drain + commit < interval {
        return Ok(());
    }
    let (key, value, origin) = match set {
        Some((v, origin)) if layers.origin(&["drain_timeout".to_owned()]) == "the default" => {
            (KEY.to_owned(), v.shown().to_owned(), origin.clone())
        }
        _ => (
            layers.key_name(&["drain_timeout".to_owned()]),
            duration::format(drain),
            layers.origin(&["drain_timeout".to_owned()]),
        ),
    };
    Err(ConfigError::new(&key, &value, &origin, format!(
        "the drain timeout ({}) plus the commit timeout ({}) must be shorter than max.poll.interval.ms ({} ms): a revoke that takes longer makes librdkafka leave the group; shorten the drain timeout or raise max.poll.interval.ms",
        duration::format(drain),
        duration::format(commit),
        interval.as_millis()
    )))
}

/// A handler table's values, checked with the attribute's rules.
fn handler_override(name: &str, table: HandlerTable, layers: &Layers) -> Result<HandlerOverride> {
    use dispatcher_rules::policy as rules;
    let path = |field: &str| vec!["handlers".to_owned(), name.to_owned(), field.to_owned()];
    let invalid = |field: &str, value: &str, reason: String| {
        ConfigError::new(
            &layers.key_name(&path(field)),
            value,
            &layers.origin(&path(field)),
            reason,
        )
    };
    let mut o = HandlerOverride {
        origin: layers.origin(&["handlers".to_owned(), name.to_owned()]),
        ..HandlerOverride::default()
    };
    if let Some(topics) = table.topics {
        if topics.0.is_empty() {
            return Err(invalid(
                "topics",
                "",
                "a handler needs at least one topic".to_owned(),
            ));
        }
        for t in &topics.0 {
            dispatcher_rules::topic::check(t).map_err(|e| invalid("topics", t, e))?;
        }
        o.topics = Some(topics.0);
    }
    if let Some(n) = table.concurrency {
        rules::check_concurrency(n).map_err(|e| invalid("concurrency", &n.to_string(), e))?;
        o.concurrency = Some(usize::try_from(n).unwrap_or(usize::MAX));
    }
    if let Some(n) = table.max_attempts {
        rules::check_max_attempts(n).map_err(|e| invalid("max_attempts", &n.to_string(), e))?;
        o.max_attempts = Some(u32::try_from(n).unwrap_or(u32::MAX));
    }
    let parse =
        |field: &str, text: &str| duration::parse(text).map_err(|e| invalid(field, text, e));
    if let Some(text) = table.timeout {
        let d = parse("timeout", &text)?;
        rules::check_timeout(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .map_err(|e| invalid("timeout", &text, e))?;
        o.timeout = Some(d);
    }
    if let Some(b) = table.backoff {
        let backoff = match b {
            BackoffTable::Fixed(text) => {
                Backoff::Fixed(parse("backoff", &text).map_err(|e| ConfigError {
                    reason: format!("{}; {BACKOFF_FORMS}", e.reason),
                    ..e
                })?)
            }
            BackoffTable::Exponential {
                initial,
                max,
                factor,
                jitter,
            } => {
                let Backoff::Exponential {
                    initial: i0,
                    max: m0,
                    factor: f0,
                    jitter: j0,
                } = Backoff::DEFAULT
                else {
                    unreachable!("the default backoff is exponential")
                };
                Backoff::Exponential {
                    initial: initial
                        .map(|t| parse("backoff", &t))
                        .transpose()?
                        .unwrap_or(i0),
                    max: max.map(|t| parse("backoff", &t)).transpose()?.unwrap_or(m0),
                    factor: factor.unwrap_or(f0),
                    jitter: jitter.unwrap_or(j0),
                }
            }
        };
        backoff.check().map_err(|e| invalid("backoff", "", e))?;
        o.backoff = Some(backoff);
    }
    if let Some(text) = table.ordering {
        o.ordering = Some(match text.as_str() {
            "key" => OrderingMode::Key,
            "partition" => OrderingMode::Partition,
            "unordered" => OrderingMode::Unordered,
            _ => {
                return Err(invalid(
                    "ordering",
                    &text,
                    "expected `key`, `partition` or `unordered`".to_owned(),
                ))
            }
        });
    }
    if let Some(t) = table.dead_letter_topic {
        dispatcher_rules::topic::check(&t).map_err(|e| invalid("dead_letter_topic", &t, e))?;
        o.dead_letter_topic = Some(t);
    }
    Ok(o)
}

impl Settings {
    /// Applies the handler tables to `handlers` (by function name or
    /// `module::name`); a table naming no handler is an error with a
    /// did-you-mean. A deployment renames topics here without recompiling.
    pub(crate) fn apply_handler_tables(
        &self,
        mut handlers: Vec<HandlerSpec>,
    ) -> Result<Vec<HandlerSpec>> {
        for (name, o) in &self.handlers {
            let mut found = false;
            for h in handlers
                .iter_mut()
                .filter(|h| h.name == name || h.qualified_name() == *name)
            {
                found = true;
                let mut policy = h.policy;
                if let Some(topics) = &o.topics {
                    let leaked: Vec<&'static str> = topics
                        .iter()
                        .map(|t| &*Box::leak(t.clone().into_boxed_str()))
                        .collect();
                    h.topics = Box::leak(leaked.into_boxed_slice());
                }
                if let Some(n) = o.concurrency {
                    policy = policy.with_concurrency(n);
                }
                if let Some(n) = o.max_attempts {
                    policy = policy.with_max_attempts(n);
                }
                if let Some(b) = o.backoff {
                    policy = policy.with_backoff(b);
                }
                if let Some(t) = o.timeout {
                    policy = policy.with_timeout(t);
                }
                if let Some(m) = o.ordering {
                    policy = policy.with_ordering(m);
                }
                if let Some(t) = &o.dead_letter_topic {
                    policy = policy.with_dead_letter_topic(Box::leak(t.clone().into_boxed_str()));
                }
                h.policy = policy;
            }
            if !found {
                let known: Vec<String> = handlers.iter().map(HandlerSpec::qualified_name).collect();
                let candidates = known
                    .iter()
                    .map(String::as_str)
                    .chain(handlers.iter().map(|h| h.name));
                let hint = dispatcher_rules::suggest::hint(name, candidates);
                return Err(ConfigError::new(
                    &format!("handlers.{name}"),
                    "",
                    &o.origin,
                    format!(
                        "no handler is called {name:?}{hint}; the handlers are {}",
                        known.join(", ")
                    ),
                ));
            }
        }
        Ok(handlers)
    }

    /// The librdkafka properties and values as they may be logged: secrets
    /// redacted.
    pub(crate) fn shown_properties(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (prefix, table) in [
            ("", &self.kafka.common),
            ("consumer:", &self.kafka.consumer),
            ("producer:", &self.kafka.producer),
        ] {
            for (k, (v, _)) in table {
                out.insert(format!("{prefix}{k}"), v.shown().to_owned());
            }
        }
        out
    }
}
