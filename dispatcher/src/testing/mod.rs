//! A test kit for handlers: run them on the embedded broker, publish
//! records, and await each record's outcome with a deadline.
//!
//! ```no_run
//! use dispatcher::testing::TestKit;
//! use std::time::Duration;
//!
//! # async fn demo() -> dispatcher::Result<()> {
//! let kit = TestKit::start(TestKit::builder().topics(["orders"])).await?;
//! let (partition, offset) = kit.publish("orders", Some("customer-1"), r#"{"id":1}"#).await?;
//! let outcome = kit.outcome("orders", partition, offset, Duration::from_secs(30)).await?;
//! assert!(matches!(outcome, dispatcher::event::Outcome::Handled { .. }));
//! kit.shutdown().await?;
//! # Ok(()) }
//! ```

mod offsets;
mod producer;
mod read;

pub use offsets::{committed_offsets, end_offsets};
pub use producer::Producer;
pub use read::{read_topic, ReadRecord};

use crate::broker::EmbeddedBroker;
use crate::error::{Error, Result};
use crate::event::Outcome;
use crate::{Dispatcher, DispatcherBuilder, ShutdownHandle};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::task::JoinHandle;

type Key = (String, i32, i64);

/// Every event seen, by record.
#[derive(Default)]
struct Journal {
    events: Mutex<HashMap<Key, Vec<Outcome>>>,
}

impl Journal {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Vec<Outcome>>> {
        self.events.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A dispatcher running in the background of a test, with a producer to
/// feed it and a journal of what happened to each record.
pub struct TestKit {
    run: Option<JoinHandle<Result<()>>>,
    shutdown: ShutdownHandle,
    producer: Producer,
    journal: Arc<Journal>,
    brokers: String,
    group: String,
}

impl std::fmt::Debug for TestKit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestKit")
            .field("brokers", &self.brokers)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

/// A unique group id for one test kit.
fn unique_group() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "test-{}-{}",
        std::process::id(),
        N.fetch_add(1, AtomicOrdering::Relaxed)
    )
}

impl TestKit {
    /// A builder set up for tests: the shared embedded broker (unless
    /// `KAFKA_BROKERS` is set), a unique group id, no signal handling, short
    /// commit interval, drain timeout and session timeout (a group that a
    /// test restarts rebalances within seconds). Narrow it to your handlers
    /// with `.topics([...])`.
    pub fn builder() -> DispatcherBuilder {
        let builder = Dispatcher::builder()
            .handle_signals(false)
            .kafka_property("session.timeout.ms", "6000")
            .kafka_property("heartbeat.interval.ms", "500")
            .group_id(unique_group())
            .commit_interval(Duration::from_millis(100))
            .drain_timeout(Duration::from_secs(5));
        match EmbeddedBroker::shared() {
            Ok(b) => builder.embedded_broker(b),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the shared embedded broker");
                builder
            }
        }
    }

    /// Builds the dispatcher and runs it in the background.
    pub async fn start(builder: DispatcherBuilder) -> Result<TestKit> {
        let journal = Arc::new(Journal::default());
        let j = journal.clone();
        let dispatcher = builder
            .on_event(move |e| {
                j.lock()
                    .entry((e.topic.to_string(), e.partition, e.offset))
                    .or_default()
                    .push(e.outcome.clone());
            })
            .build()?;
        let brokers = dispatcher.bootstrap_servers().to_owned();
        let group = dispatcher
            .subscriptions()
            .keys()
            .next()
            .cloned()
            .unwrap_or_default();
        let producer = Producer::new(&brokers)?;
        let shutdown = dispatcher.shutdown_handle();
        let run = tokio::spawn(dispatcher.run());
        Ok(TestKit {
            run: Some(run),
            shutdown,
            producer,
            journal,
            brokers,
            group,
        })
    }

    /// The bootstrap servers of the broker the kit runs on.
    pub fn bootstrap_servers(&self) -> &str {
        &self.brokers
    }

    /// The consumer group of the dispatcher.
    pub fn group_id(&self) -> &str {
        &self.group
    }

    /// Publishes one record and returns its partition and offset.
    pub async fn publish(
        &self,
        topic: &str,
        key: Option<&str>,
        payload: impl AsRef<[u8]>,
    ) -> Result<(i32, i64)> {
        self.producer.publish(topic, key, payload).await
    }

    /// Publishes one record to a given partition.
    pub async fn publish_to(
        &self,
        topic: &str,
        partition: i32,
        key: Option<&str>,
        payload: impl AsRef<[u8]>,
    ) -> Result<(i32, i64)> {
        self.producer
            .send(
                topic,
                Some(partition),
                key.map(str::as_bytes),
                Some(payload.as_ref()),
                &[],
            )
            .await
    }

    /// The kit's producer, for records with headers or tombstones.
    pub fn producer(&self) -> &Producer {
        &self.producer
    }

    /// Every event of a record so far, in order.
    pub fn events(&self, topic: &str, partition: i32, offset: i64) -> Vec<Outcome> {
        self.journal
            .lock()
            .get(&(topic.to_owned(), partition, offset))
            .cloned()
            .unwrap_or_default()
    }

    /// How many records of `topic` reached a final outcome.
    pub fn finished_count(&self, topic: &str) -> usize {
        self.journal
            .lock()
            .iter()
            .filter(|((t, _, _), evs)| t == topic && evs.iter().any(Outcome::is_final))
            .count()
    }

    /// Every final outcome of `topic`'s records, by (partition, offset).
    pub fn final_outcomes(&self, topic: &str) -> BTreeMap<(i32, i64), Outcome> {
        self.journal
            .lock()
            .iter()
            .filter(|((t, _, _), _)| t == topic)
            .filter_map(|((_, p, o), evs)| {
                evs.iter()
                    .rev()
                    .find(|e| e.is_final())
                    .map(|e| ((*p, *o), e.clone()))
            })
            .collect()
    }

    /// Waits until `condition` holds, checking every 10 ms, or fails after
    /// `timeout` with `what` in the error.
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut condition: impl FnMut(&TestKit) -> bool,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if condition(self) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::runtime(format!(
                    "timed out after {timeout:?} waiting for {what}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits for the final outcome of a record: handled, dead-lettered or
    /// fatal.
    pub async fn outcome(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        timeout: Duration,
    ) -> Result<Outcome> {
        let what = format!("the outcome of {topic}[{partition}]@{offset}");
        self.wait_until(&what, timeout, |k| {
            k.events(topic, partition, offset)
                .iter()
                .any(Outcome::is_final)
        })
        .await?;
        self.events(topic, partition, offset)
            .into_iter()
            .rev()
            .find(Outcome::is_final)
            .ok_or_else(|| Error::runtime(what))
    }

    /// The offsets the group has committed for `topic`, by partition.
    pub async fn committed_offsets(&self, topic: &str) -> Result<BTreeMap<i32, i64>> {
        let (brokers, group, topic) = (self.brokers.clone(), self.group.clone(), topic.to_owned());
        tokio::task::spawn_blocking(move || committed_offsets(&brokers, &group, &topic))
            .await
            .map_err(|e| Error::Runtime {
                context: "the offsets query failed".into(),
                source: Some(Box::new(e)),
            })?
    }

    /// The end offset (high watermark) of each partition of `topic`.
    pub async fn end_offsets(&self, topic: &str) -> Result<BTreeMap<i32, i64>> {
        let (brokers, topic) = (self.brokers.clone(), topic.to_owned());
        tokio::task::spawn_blocking(move || end_offsets(&brokers, &topic))
            .await
            .map_err(|e| Error::Runtime {
                context: "the offsets query failed".into(),
                source: Some(Box::new(e)),
            })?
    }

    /// Waits until the group's committed offset of every non-empty partition
    /// of `topic` reaches its end offset (read once, now), and returns the
    /// committed offsets; fails after `timeout` with both in the error. A
    /// committed offset past the reported end passes: some brokers (tansu)
    /// report a high watermark short of the real end of the log, and then
    /// this is only a lower bound; compare with the ends of what you
    /// published for an exact check.
    pub async fn wait_committed_to_end(
        &self,
        topic: &str,
        timeout: Duration,
    ) -> Result<BTreeMap<i32, i64>> {
        let ends = self.end_offsets(topic).await?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let committed = self.committed_offsets(topic).await?;
            if ends
                .iter()
                .all(|(p, end)| *end == 0 || committed.get(p).is_some_and(|c| c >= end))
            {
                return Ok(committed);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::runtime(format!(
                    "timed out after {timeout:?}: committed offsets {committed:?} of {topic} never reached the end offsets {ends:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Reads at least `count` dead letters from `dead_letter_topic` (from
    /// its beginning, e.g. `orders.DLT`), each with what its headers say;
    /// fails on a record that is not a dead letter.
    pub async fn dead_letters(
        &self,
        dead_letter_topic: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<(ReadRecord, crate::dead_letter::DeadLetterInfo)>> {
        self.read(dead_letter_topic, count, timeout)
            .await?
            .into_iter()
            .map(|r| match r.dead_letter() {
                Ok(info) => Ok((r, info)),
                Err(e) => Err(Error::runtime(format!(
                    "{dead_letter_topic}[{}] offset {}: {e}",
                    r.partition, r.offset
                ))),
            })
            .collect()
    }

    /// Reads at least `count` records of `topic` (from its beginning),
    /// waiting up to `timeout` for them: for example the dead letters of a
    /// test, from `<topic>.DLT`.
    pub async fn read(
        &self,
        topic: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<ReadRecord>> {
        let (brokers, topic) = (self.brokers.clone(), topic.to_owned());
        tokio::task::spawn_blocking(move || read_topic(&brokers, &topic, count, timeout))
            .await
            .map_err(|e| Error::Runtime {
                context: "reading a topic failed".into(),
                source: Some(Box::new(e)),
            })?
    }

    /// Asks the dispatcher to stop and waits for `run()` to return.
    pub async fn shutdown(mut self) -> Result<()> {
        self.shutdown.shutdown();
        self.join().await
    }

    /// A handle that stops the dispatcher without waiting for it (then
    /// [`join`](Self::join) waits).
    pub fn shutdown_handle(&self) -> crate::ShutdownHandle {
        self.shutdown.clone()
    }

    /// Waits for `run()` to return by itself (after a fatal error).
    pub async fn join(&mut self) -> Result<()> {
        match self.run.take() {
            Some(run) => run.await.map_err(|e| Error::Runtime {
                context: "the dispatcher task failed".into(),
                source: Some(Box::new(e)),
            })?,
            None => Ok(()),
        }
    }
}

impl Drop for TestKit {
    fn drop(&mut self) {
        self.shutdown.shutdown();
    }
}
