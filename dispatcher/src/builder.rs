//! Configuring a dispatcher: handlers, settings, listeners, the broker.

use crate::broker::EmbeddedBroker;
use crate::client::{ClientHooks, OAuthToken, TokenError};
use crate::config::{self, Inputs, Layer};
use crate::dead_letter::DeadLetterSink;
use crate::error::{Error, Result};
use crate::event::{EventListener, RecordEvent};
use crate::handler::{self, HandlerSpec};
use crate::policy::RetrySchedule;
use crate::run::Dispatcher;
use dispatcher_rules::duration;
use figment::value::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

mod groups;
use groups::{by_consumer_group, create_topics};

/// Keeps a handler when it returns true.
type HandlerFilter = Box<dyn Fn(&HandlerSpec) -> bool + Send + Sync>;

/// Configures a [`Dispatcher`]. Settings given here win over the
/// environment.
///
/// ```no_run
/// # async fn demo() -> dispatcher::Result<()> {
/// let dispatcher = dispatcher::Dispatcher::builder()
///     .brokers("kafka-1:9092,kafka-2:9092")
///     .group_id("billing")
///     .kafka_property("security.protocol", "SSL")
///     .max_in_flight(512)
///     .build()?;
/// dispatcher.run().await
/// # }
/// ```
#[must_use]
pub struct DispatcherBuilder {
    layer: Layer,
    file: Option<PathBuf>,
    retries: (Option<RetrySchedule>, Option<RetrySchedule>),
    read_env: bool,
    registered: bool,
    extra: Vec<HandlerSpec>,
    filters: Vec<(String, HandlerFilter)>,
    listeners: Vec<EventListener>,
    signals: bool,
    broker: Option<Arc<EmbeddedBroker>>,
    sink: Option<Arc<dyn DeadLetterSink>>,
    hooks: ClientHooks,
    states: crate::state::States,
}

impl std::fmt::Debug for DispatcherBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DispatcherBuilder")
            .field("settings", &self.layer)
            .field("config_file", &self.file)
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// A builder; see [`DispatcherBuilder`].
    pub fn builder() -> DispatcherBuilder {
        DispatcherBuilder::new()
    }
}

impl Default for DispatcherBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl DispatcherBuilder {
    /// A builder with nothing set: the environment and the registered
    /// handlers are read at [`build`](Self::build).
    pub fn new() -> Self {
        DispatcherBuilder {
            layer: Layer::default(),
            file: None,
            retries: (None, None),
            read_env: true,
            registered: true,
            extra: Vec::new(),
            filters: Vec::new(),
            listeners: Vec::new(),
            signals: true,
            broker: None,
            sink: None,
            hooks: ClientHooks::default(),
            states: Default::default(),
        }
    }

    fn set(mut self, key: &str, value: Value, method: &str) -> Self {
        self.layer
            .set(&[key], value, format!("Dispatcher::builder().{method}(..)"));
        self
    }

    fn set_duration(self, key: &str, d: Duration) -> Self {
        self.set(key, Value::from(duration::format(d)), key)
    }

    /// Reads configuration from this TOML file instead of the one named by
    /// `DISPATCHER_CONFIG` or `dispatcher.toml` in the working directory
    /// (see [`config`](crate::config)); it must exist.
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.file = Some(path.into());
        self
    }

    /// Bootstrap servers, e.g. `broker1:9092,broker2:9092` (env `KAFKA_BROKERS`).
    pub fn brokers(self, servers: impl Into<String>) -> Self {
        self.set("brokers", Value::from(servers.into()), "brokers")
    }

    /// The consumer group (env `KAFKA_GROUP_ID`; default: the program's
    /// name, the executable's file name).
    pub fn group_id(self, group: impl Into<String>) -> Self {
        self.set("group_id", Value::from(group.into()), "group_id")
    }

    /// The client id (env `KAFKA_CLIENT_ID`; default: the program name).
    pub fn client_id(self, id: impl Into<String>) -> Self {
        self.set("client_id", Value::from(id.into()), "client_id")
    }

    /// A librdkafka property of every client: the consumers and the
    /// dead-letter producer (file `[kafka]`, env
    /// `DISPATCHER_RDKAFKA_<NAME>`, dots written as underscores). The values
    /// of secret-bearing properties (`sasl.password`, say) are never shown.
    pub fn kafka_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        self.layer.set(
            &["kafka", &key],
            Value::from(value.into()),
            format!("Dispatcher::builder().kafka_property({key:?}, ..)"),
        );
        self
    }

    /// A librdkafka property of the consumers only (file
    /// `[kafka.consumer]`, env `DISPATCHER_RDKAFKA_CONSUMER_<NAME>`).
    pub fn consumer_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        self.layer.set(
            &["kafka", "consumer", &key],
            Value::from(value.into()),
            format!("Dispatcher::builder().consumer_property({key:?}, ..)"),
        );
        self
    }

    /// A librdkafka property of the dead-letter producer only (file
    /// `[kafka.producer]`, env `DISPATCHER_RDKAFKA_PRODUCER_<NAME>`).
    pub fn producer_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        self.layer.set(
            &["kafka", "producer", &key],
            Value::from(value.into()),
            format!("Dispatcher::builder().producer_property({key:?}, ..)"),
        );
        self
    }

    /// At most this many records run at once in the process (env
    /// `DISPATCHER_MAX_IN_FLIGHT`; default 10 000).
    pub fn max_in_flight(self, n: usize) -> Self {
        self.set("max_in_flight", Value::from(n as u64), "max_in_flight")
    }

    /// Records a partition may hold taken from Kafka and not yet committed
    /// (waiting, running, or finished behind a slower record); the
    /// partition is not read from while it holds that many (env
    /// `DISPATCHER_PARTITION_BUFFER`; default 5 000).
    ///
    /// After a crash, the records delivered again are those after the last
    /// committed offset: at most this many per partition, plus those
    /// finished within the last commit interval.
    pub fn partition_buffer(self, n: usize) -> Self {
        self.set(
            "partition_buffer",
            Value::from(n as u64),
            "partition_buffer",
        )
    }

    /// Bytes (keys, payloads, headers) a partition may hold taken from
    /// Kafka and not yet committed; the partition is not read from while it
    /// holds that much, so the last record taken may pass the limit (env
    /// `DISPATCHER_PARTITION_BUFFER_BYTES`; default 16 MiB). Besides this,
    /// librdkafka prefetches up to `queued.max.messages.kbytes` (4 MiB by
    /// default here) plus one fetch per assigned partition.
    pub fn partition_buffer_bytes(self, n: usize) -> Self {
        self.set(
            "partition_buffer_bytes",
            Value::from(n as u64),
            "partition_buffer_bytes",
        )
    }

    /// How often finished offsets are committed (env
    /// `DISPATCHER_COMMIT_INTERVAL`, e.g. `1s`; default 1 s).
    pub fn commit_interval(self, every: Duration) -> Self {
        self.set_duration("commit_interval", every)
    }

    /// How long the synchronous commit on revoke and shutdown may take
    /// before it is given up, with a warning (env
    /// `DISPATCHER_COMMIT_TIMEOUT`; default 5 s). A shutdown takes at most
    /// the drain timeout plus twice this, whatever the brokers do.
    pub fn commit_timeout(self, limit: Duration) -> Self {
        self.set_duration("commit_timeout", limit)
    }

    /// How long in-flight records may run on revoke and shutdown (env
    /// `DISPATCHER_DRAIN_TIMEOUT`; default 10 s). With the commit timeout
    /// it must fit within librdkafka's `max.poll.interval.ms`.
    pub fn drain_timeout(self, limit: Duration) -> Self {
        self.set_duration("drain_timeout", limit)
    }

    /// How long an error of the Kafka client (not of a record) may last
    /// with nothing consumed before `run()` stops with it (env
    /// `DISPATCHER_ERROR_TIMEOUT`; default 5 min). Fatal client errors stop
    /// it at once.
    pub fn error_timeout(self, limit: Duration) -> Self {
        self.set_duration("error_timeout", limit)
    }

    /// Serves Prometheus metrics at `/metrics` and health checks at
    /// `/health/live` and `/health/ready` on this address: `host:port`, or
    /// a port alone for 127.0.0.1 (env `DISPATCHER_METRICS_ADDRESS`; off by
    /// default). See [`telemetry`](crate::telemetry) for the series.
    pub fn metrics_address(self, address: impl Into<String>) -> Self {
        self.set(
            "metrics_address",
            Value::from(address.into()),
            "metrics_address",
        )
    }

    /// How long a partition's oldest unfinished record may hold up its
    /// commits, with records in flight, before the partition counts as
    /// stalled: a warning names the record, the
    /// `dispatcher_partition_stalled` gauge turns 1 and readiness turns
    /// off until the partition moves again (env `DISPATCHER_STALL_TIMEOUT`;
    /// default 60 s).
    pub fn stall_timeout(self, limit: Duration) -> Self {
        self.set_duration("stall_timeout", limit)
    }

    /// On a real cluster, create missing handler and dead-letter topics
    /// with this many partitions and replicas instead of stopping at
    /// startup (env `DISPATCHER_CREATE_TOPICS=true`,
    /// `DISPATCHER_TOPIC_PARTITIONS`, `DISPATCHER_TOPIC_REPLICATION`).
    pub fn create_topics(self, partitions: i32, replication: i32) -> Self {
        self.set("create_topics", Value::from(true), "create_topics")
            .set(
                "topic_partitions",
                Value::from(u64::try_from(partitions).unwrap_or(0)),
                "create_topics",
            )
            .set(
                "topic_replication",
                Value::from(u64::try_from(replication).unwrap_or(0)),
                "create_topics",
            )
    }

    /// How a dead-letter write is retried before the record is declared
    /// fatal (default: 5 attempts, from 200 ms doubling up to 5 s).
    pub fn dead_letter_retry(mut self, schedule: RetrySchedule) -> Self {
        self.retries.0 = Some(schedule);
        self
    }

    /// How the synchronous commit on revoke and shutdown is retried, within
    /// the commit timeout (default: 3 attempts, 100 ms then 200 ms apart).
    pub fn commit_retry(mut self, schedule: RetrySchedule) -> Self {
        self.retries.1 = Some(schedule);
        self
    }

    /// At most `limit` records of the handler `name` (its function name or
    /// `module::name`) run at once, overriding the attribute's `concurrency`
    /// (file `[handlers.<name>] concurrency = n`, env
    /// `DISPATCHER_HANDLERS__<NAME>__CONCURRENCY`).
    pub fn handler_concurrency(mut self, name: &str, limit: usize) -> Self {
        self.layer.set(
            &["handlers", name, "concurrency"],
            Value::from(limit as u64),
            format!("Dispatcher::builder().handler_concurrency({name:?}, ..)"),
        );
        self
    }

    /// The topics the handler `name` consumes, instead of the attribute's
    /// (file `[handlers.<name>] topics = [...]`, env
    /// `DISPATCHER_HANDLERS__<NAME>__TOPICS=a,b`): the same program reads
    /// `staging.orders` in staging and `orders` in production.
    pub fn handler_topics<I, S>(mut self, name: &str, topics: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let topics: Vec<Value> = topics.into_iter().map(|t| Value::from(t.into())).collect();
        self.layer.set(
            &["handlers", name, "topics"],
            Value::from(topics),
            format!("Dispatcher::builder().handler_topics({name:?}, ..)"),
        );
        self
    }

    /// Partitions of each topic created on the embedded broker (env
    /// `DISPATCHER_EMBEDDED_PARTITIONS`; default 4).
    pub fn embedded_partitions(self, n: i32) -> Self {
        self.set(
            "embedded_partitions",
            Value::from(u64::try_from(n).unwrap_or(0)),
            "embedded_partitions",
        )
    }

    /// Ignore the environment; use only what the builder sets.
    pub fn ignore_environment(mut self) -> Self {
        self.read_env = false;
        self
    }

    /// Leave out the `#[kafka_handler]` functions; use only handlers added
    /// with [`handler`](Self::handler).
    pub fn without_registered_handlers(mut self) -> Self {
        self.registered = false;
        self
    }

    /// Adds a handler programmatically.
    pub fn handler(mut self, spec: HandlerSpec) -> Self {
        self.extra.push(spec);
        self
    }

    /// Runs only the handlers consuming one of `topics`.
    pub fn topics<I, S>(mut self, topics: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let topics: Vec<String> = topics.into_iter().map(Into::into).collect();
        let label = format!("topics({topics:?})");
        self.filters.push((
            label,
            Box::new(move |h| h.topics.iter().any(|t| topics.iter().any(|x| x == t))),
        ));
        self
    }

    /// Runs only the handlers for which `keep` returns true.
    pub fn handlers_matching(
        mut self,
        keep: impl Fn(&HandlerSpec) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.filters
            .push(("handlers_matching(..)".into(), Box::new(keep)));
        self
    }

    /// Calls `listener` for every record event (handled, retrying,
    /// dead-lettered, fatal). Keep it short: it runs on the handler's task.
    pub fn on_event(mut self, listener: impl Fn(&RecordEvent) + Send + Sync + 'static) -> Self {
        self.listeners.push(Arc::new(listener));
        self
    }

    /// Gives librdkafka OAUTHBEARER tokens (`sasl.mechanism=OAUTHBEARER`),
    /// for Amazon MSK IAM and other token-based logins: called with
    /// `sasl.oauthbearer.config` whenever librdkafka needs a new token.
    ///
    /// ```no_run
    /// use dispatcher::client::OAuthToken;
    /// use std::time::{Duration, SystemTime};
    ///
    /// # fn fetch_token() -> Result<String, std::io::Error> { Ok(String::new()) }
    /// let builder = dispatcher::Dispatcher::builder()
    ///     .kafka_property("security.protocol", "SASL_SSL")
    ///     .kafka_property("sasl.mechanism", "OAUTHBEARER")
    ///     .oauth_token_provider(|_config| {
    ///         let token = fetch_token()?;
    ///         Ok(OAuthToken::new(token, "billing", SystemTime::now() + Duration::from_secs(900)))
    ///     });
    /// ```
    pub fn oauth_token_provider(
        mut self,
        provider: impl Fn(Option<&str>) -> Result<OAuthToken, TokenError> + Send + Sync + 'static,
    ) -> Self {
        self.hooks.token_provider = Some(Arc::new(provider));
        self
    }

    /// Receives librdkafka's statistics (JSON) from every client, every
    /// `statistics.interval.ms` (set that property; it is off by default).
    pub fn on_statistics(mut self, listener: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.hooks.statistics.push(Arc::new(listener));
        self
    }

    /// Gives handlers a value (a connection pool, a client, a cache): a
    /// handler takes it as a [`State<T>`](crate::extract::State) argument.
    /// One value per type; a second `state` of the same type replaces the
    /// first.
    pub fn state<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.states.insert(value);
        self
    }

    /// Whether SIGINT/SIGTERM stop the dispatcher (default true).
    pub fn handle_signals(mut self, on: bool) -> Self {
        self.signals = on;
        self
    }

    /// Sends dead letters to `sink` instead of the `<topic>.DLT` Kafka topics.
    pub fn dead_letter_sink(mut self, sink: Arc<dyn DeadLetterSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Uses this embedded broker instead of starting one, when no brokers
    /// are configured.
    pub fn embedded_broker(mut self, broker: Arc<EmbeddedBroker>) -> Self {
        self.broker = Some(broker);
        self
    }

    /// Validates the handlers and the configuration and, when no brokers are
    /// configured, starts the embedded broker and creates the topics.
    pub fn build(self) -> Result<Dispatcher> {
        let handlers = self.selected_handlers()?;
        let settings = config::load(
            Inputs {
                builder: self.layer,
                read_env: self.read_env,
                file: self.file.as_deref(),
                retries: self.retries,
            },
            &config::program_name(),
        )?;
        let handlers = settings.apply_handler_tables(handlers)?;
        for h in &handlers {
            h.check()?;
            if let Some(missing) = h
                .states
                .iter()
                .find(|k| !self.states.contains(k) && !k.is::<crate::extract::Publisher>())
            {
                return Err(Error::MissingState {
                    handler: format!("{} ({})", h.qualified_name(), h.location()),
                    state: missing.type_name().to_owned(),
                });
            }
        }
        let groups = by_consumer_group(handlers, &settings)?;
        let (brokers, broker) = match (&settings.brokers, self.broker) {
            (Some(b), _) => (b.value.clone(), None),
            (None, Some(shared)) => (shared.bootstrap_servers().to_owned(), Some(shared)),
            (None, None) => {
                let b = EmbeddedBroker::shared()?;
                tracing::warn!(bootstrap = b.bootstrap_servers(), "KAFKA_BROKERS is not set: running on an embedded development broker (in memory, gone when the process exits); set KAFKA_BROKERS=host:port to use a real cluster");
                (b.bootstrap_servers().to_owned(), Some(b))
            }
        };
        if let Some(b) = &broker {
            create_topics(b, &groups, settings.embedded_partitions)?;
        }
        tracing::info!(group = %settings.group_id.value, origin = %settings.group_id.origin, "consumer group");
        tracing::debug!(properties = ?settings.shown_properties(), "librdkafka properties from the configuration");
        Ok(Dispatcher {
            settings,
            brokers,
            broker,
            groups,
            listeners: self.listeners.into(),
            signals: self.signals,
            shutdown: CancellationToken::new(),
            sink: self.sink,
            hooks: self.hooks,
            states: Arc::new(self.states),
        })
    }

    /// The registered handlers and the added ones, through the filters;
    /// an error when none is left.
    fn selected_handlers(&self) -> Result<Vec<HandlerSpec>> {
        let mut handlers = if self.registered {
            handler::registered()
        } else {
            Vec::new()
        };
        handlers.extend(self.extra.iter().copied());
        let before = handlers.len();
        handlers.retain(|h| self.filters.iter().all(|(_, f)| f(h)));
        if !handlers.is_empty() {
            return Ok(handlers);
        }
        let filter = if before > 0 {
            format!(
                " (the builder filters {} removed all {before})",
                self.filters
                    .iter()
                    .map(|(l, _)| l.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            String::new()
        };
        Err(Error::NoHandlers { filter })
    }
}
