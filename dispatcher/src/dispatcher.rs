//! Building and running the dispatcher.

use crate::broker::EmbeddedBroker;
use crate::config::{self, Field, Knob, RawConfig, Settings};
use crate::consumer::{self, GroupContext, GroupOptions};
use crate::dead_letter::{DeadLetterSink, KafkaDeadLetters};
use crate::error::{Error, Result};
use crate::event::{EventListener, RecordEvent};
use crate::execute::HandlerRuntime;
use crate::limit::Limit;
use crate::partition::FatalSlot;
use crate::HandlerSpec;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureProducer;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Runs every `#[kafka_handler]` in the program with configuration from the
/// environment, until SIGINT/SIGTERM (returns `Ok`) or a fatal error
/// (returns `Err`). Installs a log subscriber if the program has none.
///
/// With `KAFKA_BROKERS` unset it starts an embedded development broker.
pub async fn run() -> Result<()> {
    crate::logging::init_logging();
    Dispatcher::builder().build()?.run().await
}

/// Stops a running dispatcher: fetching stops, in-flight records drain
/// (bounded by the drain timeout), offsets are committed, consumers close,
/// and `run()` returns `Ok`.
#[derive(Debug, Clone)]
pub struct ShutdownHandle(CancellationToken);

impl ShutdownHandle {
    /// Asks the dispatcher to stop.
    pub fn shutdown(&self) {
        self.0.cancel();
    }

    /// Whether a shutdown was asked for (or a fatal error stopped it).
    pub fn is_shutdown(&self) -> bool {
        self.0.is_cancelled()
    }
}

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
    raw: RawConfig,
    read_env: bool,
    registered: bool,
    extra: Vec<HandlerSpec>,
    filters: Vec<(String, HandlerFilter)>,
    listeners: Vec<EventListener>,
    signals: bool,
    broker: Option<Arc<EmbeddedBroker>>,
    sink: Option<Arc<dyn DeadLetterSink>>,
}

impl std::fmt::Debug for DispatcherBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DispatcherBuilder")
            .field("raw", &self.raw)
            .finish_non_exhaustive()
    }
}

impl DispatcherBuilder {
    /// Bootstrap servers, e.g. `broker1:9092,broker2:9092` (env `KAFKA_BROKERS`).
    pub fn brokers(mut self, servers: impl Into<String>) -> Self {
        self.raw.set(Field::Brokers, servers.into());
        self
    }

    /// The consumer group (env `KAFKA_GROUP_ID`; default: the program name).
    pub fn group_id(mut self, group: impl Into<String>) -> Self {
        self.raw.set(Field::GroupId, group.into());
        self
    }

    /// The client id (env `KAFKA_CLIENT_ID`; default: the program name).
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.raw.set(Field::ClientId, id.into());
        self
    }

    /// Any librdkafka property, passed to the consumers and the producer
    /// (env `DISPATCHER_RDKAFKA_<NAME>`, dots written as underscores).
    pub fn kafka_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.raw.set_rdkafka(key.into(), value.into());
        self
    }

    /// At most this many records run at once in the process (env
    /// `DISPATCHER_MAX_IN_FLIGHT`; default 10 000).
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.raw.set_knob(Knob::MaxInFlight, n as u64);
        self
    }

    /// Records buffered per partition before its fetching pauses (env
    /// `DISPATCHER_PARTITION_BUFFER`; default 5 000).
    pub fn partition_buffer(mut self, n: usize) -> Self {
        self.raw.set_knob(Knob::PartitionBuffer, n as u64);
        self
    }

    /// How often finished offsets are committed (env
    /// `DISPATCHER_COMMIT_INTERVAL_MS`; default 1 s).
    pub fn commit_interval(mut self, every: Duration) -> Self {
        self.raw
            .set_knob(Knob::CommitIntervalMs, every.as_millis() as u64);
        self
    }

    /// How long in-flight records may run on revoke and shutdown (env
    /// `DISPATCHER_DRAIN_TIMEOUT_MS`; default 10 s).
    pub fn drain_timeout(mut self, limit: Duration) -> Self {
        self.raw
            .set_knob(Knob::DrainTimeoutMs, limit.as_millis() as u64);
        self
    }

    /// At most `limit` records of the handler `name` (its function name or
    /// `module::name`) run at once, overriding the attribute's `concurrency`
    /// (env `DISPATCHER_HANDLER_CONCURRENCY=name=limit,...`).
    pub fn handler_concurrency(mut self, name: &str, limit: usize) -> Self {
        self.raw.set_handler_concurrency(name, limit);
        self
    }

    /// Partitions of each topic created on the embedded broker (env
    /// `DISPATCHER_EMBEDDED_PARTITIONS`; default 4).
    pub fn embedded_partitions(mut self, n: i32) -> Self {
        self.raw
            .set_knob(Knob::EmbeddedPartitions, u64::try_from(n).unwrap_or(0));
        self
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
        let mut handlers: Vec<HandlerSpec> = if self.registered {
            crate::registered_handlers()
        } else {
            Vec::new()
        };
        handlers.extend(self.extra);
        let before = handlers.len();
        handlers.retain(|h| self.filters.iter().all(|(_, f)| f(h)));
        if handlers.is_empty() {
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
            return Err(Error::NoHandlers { filter });
        }
        let raw = if self.read_env {
            RawConfig::from_env(std::env::vars()).merge(self.raw)
        } else {
            self.raw
        };
        let settings = raw.validate(&config::program_name())?;
        for (name, limit, origin) in &settings.handler_concurrency {
            let mut found = false;
            for h in handlers
                .iter_mut()
                .filter(|h| h.name == name || h.qualified_name() == *name)
            {
                h.policy = h.policy.concurrency(*limit);
                found = true;
            }
            if !found {
                let known: Vec<String> = handlers.iter().map(HandlerSpec::qualified_name).collect();
                return Err(Error::config(
                    config::ENV_HANDLER_CONCURRENCY,
                    &format!("{name}={limit}"),
                    origin,
                    format!(
                        "no handler is called {name:?}; the handlers are {}",
                        known.join(", ")
                    ),
                ));
            }
        }
        // One handler per topic per group.
        let mut groups: BTreeMap<String, Vec<HandlerSpec>> = BTreeMap::new();
        for h in handlers {
            let group = h
                .group
                .map(str::to_owned)
                .unwrap_or_else(|| settings.group_id.value.clone());
            groups.entry(group).or_default().push(h);
        }
        for (group, specs) in &groups {
            let mut seen: HashMap<&str, &HandlerSpec> = HashMap::new();
            for h in specs {
                for t in h.topics {
                    if let Some(first) = seen.insert(t, h) {
                        return Err(Error::DuplicateTopic {
                            topic: (*t).to_owned(),
                            group: group.clone(),
                            first: format!("{} ({})", first.qualified_name(), first.location()),
                            second: format!("{} ({})", h.qualified_name(), h.location()),
                        });
                    }
                }
            }
        }
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
            for specs in groups.values() {
                for h in specs {
                    for t in h.topics {
                        b.create_topic(t, settings.embedded_partitions)?;
                        let dlt = h
                            .policy
                            .dead_letter_topic_name()
                            .map(str::to_owned)
                            .unwrap_or_else(|| format!("{t}.DLT"));
                        b.create_topic(&dlt, settings.embedded_partitions)?;
                    }
                }
            }
        }
        tracing::info!(group = %settings.group_id.value, origin = %settings.group_id.origin, "consumer group");
        Ok(Dispatcher {
            settings,
            brokers,
            broker,
            groups,
            listeners: self.listeners.into(),
            signals: self.signals,
            shutdown: CancellationToken::new(),
            sink: self.sink,
        })
    }
}

/// A configured dispatcher, ready to [`run`](Dispatcher::run).
pub struct Dispatcher {
    settings: Settings,
    brokers: String,
    broker: Option<Arc<EmbeddedBroker>>,
    groups: BTreeMap<String, Vec<HandlerSpec>>,
    listeners: Arc<[EventListener]>,
    signals: bool,
    shutdown: CancellationToken,
    sink: Option<Arc<dyn DeadLetterSink>>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("brokers", &self.brokers)
            .field("groups", &self.groups.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// A builder; see [`DispatcherBuilder`].
    pub fn builder() -> DispatcherBuilder {
        DispatcherBuilder {
            raw: RawConfig::default(),
            read_env: true,
            registered: true,
            extra: Vec::new(),
            filters: Vec::new(),
            listeners: Vec::new(),
            signals: true,
            broker: None,
            sink: None,
        }
    }

    /// The bootstrap servers in use (the embedded broker's when it runs).
    pub fn bootstrap_servers(&self) -> &str {
        &self.brokers
    }

    /// The embedded broker, when the dispatcher runs on one.
    pub fn embedded_broker(&self) -> Option<&Arc<EmbeddedBroker>> {
        self.broker.as_ref()
    }

    /// A handle that stops the dispatcher.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shutdown.clone())
    }

    /// The consumer groups and the topics each consumes.
    pub fn subscriptions(&self) -> BTreeMap<String, Vec<String>> {
        self.groups
            .iter()
            .map(|(g, hs)| {
                (
                    g.clone(),
                    hs.iter()
                        .flat_map(|h| h.topics.iter().map(|t| (*t).to_owned()))
                        .collect(),
                )
            })
            .collect()
    }

    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.settings.client_id.value);
        for (k, v) in &self.settings.rdkafka {
            c.set(k, &v.value);
        }
        c
    }

    /// Consumes until shutdown (returns `Ok`) or a fatal error (returns the
    /// error with the record's coordinates and the cause chain).
    pub async fn run(self) -> Result<()> {
        let rt = tokio::runtime::Handle::current();
        let fatal = Arc::new(FatalSlot {
            error: Default::default(),
            shutdown: self.shutdown.clone(),
        });
        if self.broker.is_none() {
            self.check_reachable().await?;
        }
        let global = Arc::new(Limit::new(self.settings.max_in_flight));
        let mut threads = Vec::new();
        let signals = self
            .signals
            .then(|| tokio::spawn(wait_for_signal(self.shutdown.clone())));
        for (group, specs) in &self.groups {
            let consumer = match self.start_group(group, specs, &rt, &global, &fatal) {
                Ok(c) => c,
                Err(e) => {
                    self.shutdown.cancel();
                    join_all(threads).await;
                    return Err(e);
                }
            };
            let token = self.shutdown.clone();
            let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
            let name = format!("poll-{group}");
            let (group_name, failed) = (group.clone(), fatal.clone());
            let spawned = std::thread::Builder::new()
                .name(name.chars().take(15).collect())
                .spawn(move || {
                    let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| consumer::poll_loop(consumer, token)));
                    if polled.is_err() {
                        // Stop everything: nothing is committed past what
                        // was finished, and run() says what happened.
                        failed.report(Error::Runtime(format!("the poll thread of consumer group {group_name:?} panicked; see the log")));
                    }
                    let _ = done_tx.send(());
                });
            match spawned {
                Ok(_) => threads.push(done_rx),
                Err(e) => {
                    self.shutdown.cancel();
                    join_all(threads).await;
                    return Err(Error::Runtime(format!("cannot start the poll thread: {e}")));
                }
            }
        }
        join_all(threads).await;
        if let Some(s) = signals {
            s.abort();
        }
        let error = fatal
            .error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        match error {
            Some(e) => Err(e),
            None => {
                tracing::info!("dispatcher stopped cleanly");
                Ok(())
            }
        }
    }

    async fn check_reachable(&self) -> Result<()> {
        let config = self.client_config();
        let brokers = self.brokers.clone();
        tokio::task::spawn_blocking(move || {
            let client: BaseConsumer = config
                .create()
                .map_err(|e| Error::kafka("creating the metadata client", e))?;
            client
                .fetch_metadata(None, Duration::from_secs(10))
                .map(|_| ())
                .map_err(|source| Error::Unreachable { brokers, source })
        })
        .await
        .map_err(|e| Error::Runtime(e.to_string()))?
    }

    fn start_group(
        &self,
        group: &str,
        specs: &[HandlerSpec],
        rt: &tokio::runtime::Handle,
        global: &Arc<Limit>,
        fatal: &Arc<FatalSlot>,
    ) -> Result<BaseConsumer<GroupContext>> {
        let mut producer_config = self.client_config();
        producer_config
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000");
        let dead_letters: Arc<dyn DeadLetterSink> = match &self.sink {
            Some(sink) => sink.clone(),
            None => {
                let producer: FutureProducer = producer_config
                    .create()
                    .map_err(|e| Error::kafka("creating the dead-letter producer", e))?;
                Arc::new(KafkaDeadLetters::new(producer))
            }
        };
        let group_name: Arc<str> = Arc::from(group);
        let mut handlers = HashMap::new();
        for spec in specs {
            let runtime = Arc::new(HandlerRuntime {
                spec: *spec,
                name: Arc::from(spec.qualified_name()),
                concurrency: spec
                    .policy
                    .concurrency_limit()
                    .map(|n| Arc::new(Limit::new(n))),
                listeners: self.listeners.clone(),
                dead_letters: dead_letters.clone(),
                group: group_name.clone(),
            });
            for t in spec.topics {
                handlers.insert(Arc::from(*t), runtime.clone());
            }
        }
        let topics: Vec<&str> = specs
            .iter()
            .flat_map(|h| h.topics.iter().copied())
            .collect();
        let mut c = self.client_config();
        c.set("group.id", group)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set(
                "auto.commit.interval.ms",
                self.settings.commit_interval.as_millis().to_string(),
            );
        // Defaults that matter for throughput and latency; any of them can be
        // overridden through kafka_property / DISPATCHER_RDKAFKA_*.
        for (k, v) in [
            ("auto.offset.reset", "earliest"),
            ("fetch.wait.max.ms", "20"),
            ("fetch.queue.backoff.ms", "10"),
        ] {
            if !self.settings.rdkafka.contains_key(k) {
                c.set(k, v);
            }
        }
        let context = GroupContext::new(
            GroupOptions {
                group: group.to_owned(),
                handlers,
                partition_buffer: self.settings.partition_buffer,
                drain_timeout: self.settings.drain_timeout,
                poll_batch: self.settings.poll_batch,
            },
            rt.clone(),
            global.clone(),
            fatal.clone(),
        );
        let consumer: BaseConsumer<GroupContext> = c
            .create_with_context(context)
            .map_err(|e| Error::kafka(format!("creating the consumer of group {group:?}"), e))?;
        consumer
            .subscribe(&topics)
            .map_err(|e| Error::kafka(format!("subscribing group {group:?} to {topics:?}"), e))?;
        tracing::info!(group, topics = ?topics, brokers = %self.brokers, handlers = %specs.iter().map(|s| s.qualified_name()).collect::<Vec<_>>().join(", "), "consumer started");
        Ok(consumer)
    }
}

async fn join_all(threads: Vec<tokio::sync::oneshot::Receiver<()>>) {
    for t in threads {
        let _ = t.await;
    }
}

async fn wait_for_signal(token: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received; shutting down"),
            _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
            () = token.cancelled() => return,
        }
    }
    #[cfg(not(unix))]
    {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C received; shutting down"),
            () = token.cancelled() => return,
        }
    }
    token.cancel();
}
