//! The embedded development broker: librdkafka's mock cluster, in process,
//! with fault injection for tests.

use crate::error::{Error, Result};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
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

/// A kind of request whose responses can be made to fail, with
/// [`EmbeddedBroker::fail_requests`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    /// Reading records.
    Fetch,
    /// Writing records (dead letters, among others).
    Produce,
    /// Committing offsets.
    OffsetCommit,
    /// Joining a consumer group.
    JoinGroup,
    /// Receiving a group assignment.
    SyncGroup,
    /// Staying in a consumer group.
    Heartbeat,
}

impl Request {
    fn api_key(self) -> RDKafkaApiKey {
        match self {
            Request::Fetch => RDKafkaApiKey::Fetch,
            Request::Produce => RDKafkaApiKey::Produce,
            Request::OffsetCommit => RDKafkaApiKey::OffsetCommit,
            Request::JoinGroup => RDKafkaApiKey::JoinGroup,
            Request::SyncGroup => RDKafkaApiKey::SyncGroup,
            Request::Heartbeat => RDKafkaApiKey::Heartbeat,
        }
    }
}

/// A Kafka protocol error a failed response carries (Kafka's name in each
/// variant's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BrokerError {
    /// `COORDINATOR_LOAD_IN_PROGRESS`: the group coordinator is still loading; retriable.
    CoordinatorLoadInProgress,
    /// `NOT_COORDINATOR`: this broker is not the group coordinator; retriable.
    NotCoordinator,
    /// `NOT_LEADER_OR_FOLLOWER`: this broker is not the partition's leader; retriable.
    NotLeaderOrFollower,
    /// `REQUEST_TIMED_OUT`: the request timed out; retriable.
    RequestTimedOut,
    /// `MESSAGE_TOO_LARGE`: the record is larger than the broker accepts.
    MessageTooLarge,
    /// `TOPIC_AUTHORIZATION_FAILED`: the client may not read or write the topic.
    TopicAuthorizationFailed,
    /// `GROUP_AUTHORIZATION_FAILED`: the client may not use the consumer group.
    GroupAuthorizationFailed,
    /// `FENCED_INSTANCE_ID`: another member uses the same `group.instance.id`; fatal for the consumer.
    FencedInstanceId,
    /// `REBALANCE_IN_PROGRESS`: the group is rebalancing; a member that gets
    /// it on a heartbeat rejoins the group (keeping its partitions until the
    /// new assignment with the cooperative protocol, revoking them with the
    /// eager one).
    RebalanceInProgress,
    /// `UNKNOWN_MEMBER_ID`: the coordinator does not know the member; one
    /// that gets it on a heartbeat loses its partitions and rejoins.
    UnknownMemberId,
    /// No answer: the broker closes the connection.
    Disconnect,
}

impl BrokerError {
    fn code(self) -> RDKafkaRespErr {
        use RDKafkaRespErr as E;
        match self {
            BrokerError::CoordinatorLoadInProgress => {
                E::RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS
            }
            BrokerError::NotCoordinator => E::RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
            BrokerError::NotLeaderOrFollower => E::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            BrokerError::RequestTimedOut => E::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            BrokerError::MessageTooLarge => E::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE,
            BrokerError::TopicAuthorizationFailed => {
                E::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED
            }
            BrokerError::GroupAuthorizationFailed => {
                E::RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED
            }
            BrokerError::FencedInstanceId => E::RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID,
            BrokerError::RebalanceInProgress => E::RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS,
            BrokerError::UnknownMemberId => E::RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID,
            BrokerError::Disconnect => E::RD_KAFKA_RESP_ERR__TRANSPORT,
        }
    }
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
                        let _ = ready_tx.send(Err(Error::embedded("starting the mock cluster", e)));
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
            .map_err(|e| Error::embedded("starting its thread", e))?;
        let bootstrap = ready_rx
            .recv_timeout(Duration::from_secs(30))
            .map_err(|e| Error::embedded("waiting 30 s for the mock cluster to start", e))??;
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
        what: &str,
        f: impl FnOnce(&MockCluster<'static, DefaultProducerContext>) -> T + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = mpsc::channel();
        let stopped = || Error::embedded(what.to_owned(), "the broker thread has stopped");
        let jobs = self.jobs.as_ref().ok_or_else(stopped)?;
        jobs.send(Box::new(move |c| {
            let _ = tx.send(f(c));
        }))
        .map_err(|_| stopped())?;
        rx.recv().map_err(|_| stopped())
    }

    /// Creates `topic` with `partitions` partitions; an existing topic is
    /// left as it is.
    pub fn create_topic(&self, topic: &str, partitions: i32) -> Result<()> {
        let name = topic.to_owned();
        self.with_cluster("creating a topic", move |c| {
            c.create_topic(&name, partitions, 1)
        })?
        .or_else(|e| match e.rdkafka_error_code() {
            Some(rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists) => Ok(()),
            _ => Err(Error::embedded(format!("creating topic {topic:?}"), e)),
        })
    }

    /// Takes broker `id` (1-based) down, to test outages.
    pub fn broker_down(&self, id: i32) -> Result<()> {
        self.with_cluster("taking a broker down", move |c| c.broker_down(id))?
            .map_err(|e| Error::embedded(format!("taking broker {id} down"), e))
    }

    /// Brings broker `id` back up.
    pub fn broker_up(&self, id: i32) -> Result<()> {
        self.with_cluster("bringing a broker up", move |c| c.broker_up(id))?
            .map_err(|e| Error::embedded(format!("bringing broker {id} up"), e))
    }

    /// Delays every response of every broker by `latency` (round-trip time),
    /// to test latency spikes; [`Duration::ZERO`] ends the delay. Every
    /// request of every client then takes at least that long.
    pub fn set_latency(&self, latency: Duration) -> Result<()> {
        self.with_cluster("setting the round-trip time", move |c| {
            c.broker_round_trip_time(-1, latency)
        })?
        .map_err(|e| Error::embedded(format!("setting the round-trip time to {latency:?}"), e))
    }

    /// Makes the next `count` requests of kind `request`, from any client,
    /// fail with `error`.
    pub fn fail_requests(&self, request: Request, error: BrokerError, count: usize) -> Result<()> {
        self.with_cluster("injecting request errors", move |c| {
            c.request_errors(request.api_key(), &vec![error.code(); count]);
        })
    }

    /// Makes the next `count` offset-commit requests fail with a retriable
    /// coordinator error, to test commit failure handling.
    pub fn fail_next_commits(&self, count: usize) -> Result<()> {
        self.fail_requests(
            Request::OffsetCommit,
            BrokerError::CoordinatorLoadInProgress,
            count,
        )
    }

    /// Ends every injected failure of `request` that has not happened yet.
    pub fn clear_failures(&self, request: Request) -> Result<()> {
        self.with_cluster("clearing request errors", move |c| {
            c.clear_request_errors(request.api_key());
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
