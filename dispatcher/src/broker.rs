//! The embedded development broker: librdkafka's mock cluster, in process.

use crate::error::{Error, Result};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use std::sync::{mpsc, Arc, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

type ClusterJob = Box<dyn FnOnce(&MockCluster<'static, DefaultProducerContext>) + Send>;

/// A Kafka-protocol broker running inside this process on 127.0.0.1, for
/// development and tests. Its data lives in memory and is gone when it is
/// dropped. Each partition keeps only about 5 MiB; older records are dropped.
///
/// `dispatcher::run()` starts one when `KAFKA_BROKERS` is not set.
pub struct EmbeddedBroker {
    bootstrap: String,
    jobs: Option<mpsc::Sender<ClusterJob>>,
    thread: Option<JoinHandle<()>>,
}

impl EmbeddedBroker {
    /// Starts a mock cluster with `brokers` brokers.
    pub fn start(brokers: i32) -> Result<Self> {
        let (jobs_tx, jobs_rx) = mpsc::channel::<ClusterJob>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<String>>();
        let thread = std::thread::Builder::new()
            .name("embedded-broker".into())
            .spawn(move || {
                let cluster = match MockCluster::new(brokers) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(Error::EmbeddedBroker(e.to_string())));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                // The cluster lives as long as this thread; jobs run on it
                // because the mock cluster handle cannot leave its thread.
                while let Ok(job) = jobs_rx.recv() {
                    job(&cluster);
                }
            })
            .map_err(|e| Error::EmbeddedBroker(e.to_string()))?;
        let bootstrap = ready_rx
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| {
                Error::EmbeddedBroker("the mock cluster did not start within 30 s".into())
            })??;
        Ok(EmbeddedBroker {
            bootstrap,
            jobs: Some(jobs_tx),
            thread: Some(thread),
        })
    }

    /// The embedded broker of this process, started on first use and kept
    /// until the process exits, so clients never see it go away. `run()`
    /// and the test kit use it when no brokers are configured.
    pub fn shared() -> Result<Arc<EmbeddedBroker>> {
        static SHARED: OnceLock<Arc<EmbeddedBroker>> = OnceLock::new();
        static STARTING: Mutex<()> = Mutex::new(());
        let _guard = STARTING.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(b) = SHARED.get() {
            return Ok(b.clone());
        }
        let b = Arc::new(EmbeddedBroker::start(1)?);
        Ok(SHARED.get_or_init(|| b).clone())
    }

    /// The bootstrap servers to give clients, e.g. `127.0.0.1:41234`.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// Runs `f` on the mock cluster's thread and returns its result.
    fn with_cluster<T: Send + 'static>(
        &self,
        f: impl FnOnce(&MockCluster<'static, DefaultProducerContext>) -> T + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = mpsc::channel();
        let jobs = self
            .jobs
            .as_ref()
            .ok_or_else(|| Error::EmbeddedBroker("stopped".into()))?;
        jobs.send(Box::new(move |c| {
            let _ = tx.send(f(c));
        }))
        .map_err(|_| Error::EmbeddedBroker("the broker thread has stopped".into()))?;
        rx.recv()
            .map_err(|_| Error::EmbeddedBroker("the broker thread has stopped".into()))
    }

    /// Creates `topic` with `partitions` partitions; an existing topic is
    /// left as it is.
    pub fn create_topic(&self, topic: &str, partitions: i32) -> Result<()> {
        let topic = topic.to_owned();
        self.with_cluster(move |c| c.create_topic(&topic, partitions, 1))?
            .or_else(|e| match e.rdkafka_error_code() {
                Some(rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists) => Ok(()),
                _ => Err(Error::EmbeddedBroker(format!("cannot create topic: {e}"))),
            })
    }

    /// Takes broker `id` (1-based) down, to test outages.
    pub fn broker_down(&self, id: i32) -> Result<()> {
        self.with_cluster(move |c| c.broker_down(id))?
            .map_err(|e| Error::EmbeddedBroker(e.to_string()))
    }

    /// Brings broker `id` back up.
    pub fn broker_up(&self, id: i32) -> Result<()> {
        self.with_cluster(move |c| c.broker_up(id))?
            .map_err(|e| Error::EmbeddedBroker(e.to_string()))
    }

    /// Makes the next `count` offset-commit requests fail with a retriable
    /// coordinator error, to test commit failure handling.
    pub fn fail_next_commits(&self, count: usize) -> Result<()> {
        self.with_cluster(move |c| {
            let errors = vec![
                    rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS;
                    count
                ];
            c.request_errors(rdkafka::types::RDKafkaApiKey::OffsetCommit, &errors);
        })
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("bootstrap", &self.bootstrap)
            .finish()
    }
}
