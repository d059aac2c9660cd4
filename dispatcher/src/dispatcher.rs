//! Building and running the dispatcher.

use crate::broker::EmbeddedBroker;
use crate::builder::DispatcherBuilder;
use crate::config::{RawConfig, Settings};
use crate::consumer::{self, GroupContext, GroupOptions};
use crate::dead_letter::{DeadLetterSink, KafkaDeadLetters};
use crate::error::{Error, Result};
use crate::event::EventListener;
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

/// A configured dispatcher, ready to [`run`](Dispatcher::run).
pub struct Dispatcher {
    pub(crate) settings: Settings,
    pub(crate) brokers: String,
    pub(crate) broker: Option<Arc<EmbeddedBroker>>,
    pub(crate) groups: BTreeMap<String, Vec<HandlerSpec>>,
    pub(crate) listeners: Arc<[EventListener]>,
    pub(crate) signals: bool,
    pub(crate) shutdown: CancellationToken,
    pub(crate) sink: Option<Arc<dyn DeadLetterSink>>,
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
        // Dropping this future (say, as the losing branch of a `select!`)
        // shuts the consumers down instead of leaving them running unowned.
        let _stop_on_drop = self.shutdown.clone().drop_guard();
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
