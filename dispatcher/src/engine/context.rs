//! The consumer's rdkafka context: what librdkafka calls back into. It
//! runs on the poll thread, inside `poll`, so a revoke may block while the
//! revoked partitions drain.

use super::assignment::Assignment;
use super::backlog::PollWaker;
use super::commit::Committer;
use super::execute::Executor;
use super::limit::Limit;
use super::stop::Stop;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::TopicPartitionList;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;

/// The consumer of one group.
pub(crate) type GroupConsumer = BaseConsumer<GroupContext>;

/// A topic and a partition.
pub(crate) type TopicPartition = (Arc<str>, i32);

/// Settings of one group's consumer.
pub(crate) struct GroupOptions {
    pub(crate) group: String,
    /// The executor of each topic's handler.
    pub(crate) executors: HashMap<Arc<str>, Arc<Executor>>,
    pub(crate) partition_buffer: usize,
    pub(crate) partition_buffer_bytes: usize,
    pub(crate) drain_timeout: Duration,
    pub(crate) poll_batch: usize,
}

/// The consumer's context, shared by the poll loop and librdkafka's
/// callbacks.
pub(crate) struct GroupContext {
    pub(crate) options: GroupOptions,
    pub(crate) assignment: Mutex<Assignment>,
    pub(crate) rt: tokio::runtime::Handle,
    pub(crate) global: Arc<Limit>,
    pub(crate) stop: Arc<Stop>,
    pub(crate) waker: Arc<PollWaker>,
    pub(crate) committer: Committer,
    /// The consumer this context belongs to, for what needs more than the
    /// reference a callback gets: splitting partition queues, and final
    /// commits on a thread of their own.
    consumer: OnceLock<Weak<GroupConsumer>>,
}

impl GroupContext {
    pub(crate) fn new(
        options: GroupOptions,
        rt: tokio::runtime::Handle,
        global: Arc<Limit>,
        stop: Arc<Stop>,
        committer: Committer,
    ) -> Self {
        GroupContext {
            options,
            assignment: Mutex::default(),
            rt,
            global,
            stop,
            waker: Arc::default(),
            committer,
            consumer: OnceLock::new(),
        }
    }

    /// Remembers the consumer, once it exists.
    pub(crate) fn set_consumer(&self, consumer: &Arc<GroupConsumer>) {
        let _ = self.consumer.set(Arc::downgrade(consumer));
    }

    /// The consumer, while it runs.
    pub(crate) fn consumer(&self) -> Option<Arc<GroupConsumer>> {
        self.consumer.get().and_then(Weak::upgrade)
    }

    pub(crate) fn assignment(&self) -> MutexGuard<'_, Assignment> {
        self.assignment
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The partitions of a list, for the table and the log.
pub(crate) fn partitions_of(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    tpl.elements()
        .iter()
        .map(|e| (Arc::from(e.topic()), e.partition()))
        .collect()
}

/// `topic[p], topic[q]`, for the log.
pub(crate) fn list<'a>(tps: impl IntoIterator<Item = &'a TopicPartition>) -> String {
    tps.into_iter()
        .map(|(t, p)| format!("{t}[{p}]"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", facility = fac, "{log_message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", facility = fac, "{log_message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility = fac, "{log_message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "librdkafka", facility = fac, "{log_message}")
            }
        }
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        // The same error comes back from `poll`, where the poll loop
        // explains it and decides whether to stop.
        tracing::debug!(group = %self.options.group, error = %error, reason, "Kafka client error");
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &GroupConsumer, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => self.revoke(consumer, &partitions_of(tpl), "revoke"),
            // Before librdkafka starts fetching them, so that their records
            // land in their own queues from the first fetch on.
            Rebalance::Assign(tpl) => {
                let tps = partitions_of(tpl);
                tracing::info!(group = %self.options.group, partitions = %list(&tps), "partitions assigned");
                self.assign(&tps);
            }
            Rebalance::Error(e) => {
                tracing::error!(group = %self.options.group, error = %e, "rebalance error")
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => tracing::trace!(offsets = ?offsets, "offsets committed"),
            Err(e) => {
                tracing::warn!(group = %self.options.group, error = %e, "periodic commit failed; the stored offsets are committed again at the next interval")
            }
        }
    }
}
