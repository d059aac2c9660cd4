//! A dispatcher's life: start every consumer group, run until shutdown or
//! a fatal error, and say how it ended.
//!
//! Shutdown order, for every way a run ends (a signal, a
//! [`ShutdownHandle`], a fatal record or a fatal client error, dropping the
//! `run()` future): the stop token is cancelled; each group's poll loop
//! stops taking records; every partition stops starting records, its
//! records in flight get up to the drain timeout, and its watermark is
//! committed synchronously within the commit timeout; the consumer leaves
//! the group (`run()` waits up to the commit timeout for that, then lets it
//! go on in the background); `run()` returns the first fatal error, or
//! `Ok`.

use crate::broker::EmbeddedBroker;
use crate::client::{ClientHooks, HooksContext};
use crate::config::Settings;
use crate::dead_letter::DeadLetterSink;
use crate::engine::group::{self, RunShared};
use crate::engine::limit::Limit;
use crate::engine::stop::Stop;
use crate::error::{Error, Result};
use crate::event::EventListener;
use crate::handler::HandlerSpec;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Runs every `#[kafka_handler]` in the program with configuration from the
/// environment, until SIGINT/SIGTERM (returns `Ok`) or a fatal error
/// (returns `Err`). With the `logging` feature (on by default) it installs
/// a log subscriber if the program has none.
///
/// With `KAFKA_BROKERS` unset it starts an embedded development broker.
pub async fn run() -> Result<()> {
    #[cfg(feature = "logging")]
    crate::logging::init();
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
    pub(crate) hooks: ClientHooks,
    pub(crate) states: Arc<crate::state::States>,
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

    /// What every client of the run is configured with.
    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.settings.client_id.value);
        for (k, (v, _)) in &self.settings.kafka.common {
            c.set(k, v.expose());
        }
        crate::client::set_log_level(&mut c);
        c
    }

    /// Consumes until shutdown (returns `Ok`) or a fatal error (returns the
    /// error with the record's coordinates and the cause chain). A shutdown
    /// asked for while the startup checks still wait on the brokers
    /// returns `Ok` at once, without consuming.
    pub async fn run(self) -> Result<()> {
        // Dropping this future (say, as the losing branch of a `select!`)
        // shuts the consumers down instead of leaving them running unowned.
        let _stop_on_drop = self.shutdown.clone().drop_guard();
        // Signals are listened for from the start: a SIGTERM during the
        // startup checks (which can wait seconds on a broker) stops the run
        // cleanly instead of killing the process.
        let _signals = self
            .signals
            .then(|| listen_for_signals(self.shutdown.clone()));
        let stop = Arc::new(Stop::new(self.shutdown.clone()));
        if self.broker.is_none() {
            let checks = async {
                self.check_reachable().await?;
                crate::topics::check(
                    &self.client_config(),
                    HooksContext::new(self.hooks.clone()),
                    crate::topics::Needed::of(
                        self.groups
                            .iter()
                            .flat_map(|(g, hs)| hs.iter().map(move |h| (g, h))),
                    ),
                    self.settings.topics,
                )
                .await
            };
            tokio::select! {
                checked = checks => checked?,
                () = self.shutdown.cancelled() => {
                    tracing::info!("shut down during the startup checks; nothing was consumed");
                    return Ok(());
                }
            }
        }
        // The recorder first: every series registered after goes to it.
        let metrics = match self.settings.metrics_address {
            Some(address) => Some((address, crate::telemetry::server::recorder()?)),
            None => None,
        };
        let health = Arc::new(crate::telemetry::health::Health::new(
            stop.clone(),
            self.groups.keys().cloned(),
        ));
        crate::telemetry::metrics::describe();
        health.refresh();
        let _server = match metrics {
            Some((address, handle)) => {
                Some(crate::telemetry::server::start(address, handle, health.clone()).await?)
            }
            None => None,
        };
        let mut client = self.client_config();
        if self.settings.metrics_address.is_some()
            && !self.settings.kafka.consumer_sets("statistics.interval.ms")
        {
            // Consumer lag comes from librdkafka's statistics.
            client.set("statistics.interval.ms", "5000");
        }
        let shared = RunShared {
            health: health.clone(),
            rt: tokio::runtime::Handle::current(),
            global: Arc::new(Limit::new(self.settings.max_in_flight)),
            stop: stop.clone(),
            listeners: self.listeners.clone(),
            sink: self.sink.clone(),
            hooks: self.hooks.clone(),
            states: self.states_for_run(&client)?,
        };
        let mut running = Vec::new();
        for (group, specs) in &self.groups {
            match group::start(group, specs, &self.settings, &client, &shared) {
                Ok(done) => running.push(done),
                Err(e) => {
                    stop.token().cancel();
                    join_all(running, self.settings.commit_timeout).await;
                    return Err(e);
                }
            }
        }
        join_all(running, self.settings.commit_timeout).await;
        match stop.take_error() {
            Some(e) => Err(e),
            None => {
                tracing::info!("dispatcher stopped cleanly");
                Ok(())
            }
        }
    }

    /// The builder's states, and a [`Publisher`] when a handler takes one.
    ///
    /// [`Publisher`]: crate::extract::Publisher
    fn states_for_run(&self, client: &ClientConfig) -> Result<Arc<crate::state::States>> {
        let publishes = self
            .groups
            .values()
            .flatten()
            .any(|h| h.states.iter().any(|k| k.is::<crate::extract::Publisher>()));
        if !publishes {
            return Ok(self.states.clone());
        }
        let producer = crate::engine::group::producer(
            client,
            &self.settings,
            &self.hooks,
            "the handlers' producer",
            "pub-delivery",
        )?;
        let mut states = (*self.states).clone();
        states.insert(crate::publish::Publisher::new(producer));
        Ok(Arc::new(states))
    }

    async fn check_reachable(&self) -> Result<()> {
        let config = self.client_config();
        let brokers = self.brokers.clone();
        let hooks = self.hooks.clone();
        tokio::task::spawn_blocking(move || {
            let client: BaseConsumer<HooksContext> = config
                .create_with_context(HooksContext::new(hooks))
                .map_err(|e| Error::kafka("creating the metadata client", e))?;
            client
                .fetch_metadata(None, Duration::from_secs(10))
                .map(|_| ())
                .map_err(|source| {
                    // The client's log lines, which say why its connections
                    // failed, wait on its queue until it is served: serve
                    // it for a moment (each error event ends one poll).
                    for _ in 0..100 {
                        if client.poll(Duration::from_millis(50)).is_none() {
                            break;
                        }
                    }
                    Error::Unreachable {
                        brokers,
                        reason: client.context().last_error().map(String::into_boxed_str),
                        source,
                    }
                })
        })
        .await
        .map_err(|e| Error::Runtime {
            context: "the broker check failed".into(),
            source: Some(Box::new(e)),
        })?
    }
}

/// Waits for every group to drain and commit (each bounds that itself),
/// then up to `close_timeout` for the consumers to leave their groups:
/// past it they go on closing in the background.
async fn join_all(running: Vec<group::Running>, close_timeout: Duration) {
    let mut closing = Vec::with_capacity(running.len());
    for r in running {
        let _ = r.drained.await;
        closing.push(r.closed);
    }
    let all_closed = futures::future::join_all(closing);
    if tokio::time::timeout(close_timeout, all_closed)
        .await
        .is_err()
    {
        tracing::warn!(timeout = ?close_timeout, "a consumer did not finish leaving its group within the commit timeout (are the brokers down?); it goes on closing in the background");
    }
}

/// The task that turns SIGTERM or SIGINT (Ctrl-C) into a shutdown;
/// stopped when dropped.
struct SignalListener(tokio::task::JoinHandle<()>);

impl Drop for SignalListener {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts listening for SIGTERM and SIGINT (Ctrl-C elsewhere). On unix the
/// handlers are installed before this returns, so a signal that arrives
/// right after is not the default one that kills the process; elsewhere
/// Ctrl-C is listened for once the task first runs.
fn listen_for_signals(token: CancellationToken) -> SignalListener {
    #[cfg(unix)]
    let waiting = {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            let (mut term, mut int) = match (term, int) {
                (Ok(term), Ok(int)) => (term, int),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM and SIGINT");
                    return;
                }
            };
            tokio::select! {
                _ = int.recv() => tracing::info!("SIGINT received; shutting down"),
                _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
                () = token.cancelled() => return,
            }
            token.cancel();
        }
    };
    #[cfg(not(unix))]
    let waiting = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C received; shutting down"),
            () = token.cancelled() => return,
        }
        token.cancel();
    };
    SignalListener(tokio::spawn(waiting))
}
