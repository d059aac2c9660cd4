//! The partitions assigned to a consumer: each with its worker, its own
//! librdkafka queue, and what was last stored for commit.

use super::commit::Committed;
use super::partition::PartitionHandle;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::ConsumerContext;
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// A topic and a partition.
pub(crate) type TopicPartition = (Arc<str>, i32);

/// One assigned partition of a consumer whose context is `C`.
pub(crate) struct AssignedPartition<C: ConsumerContext + 'static> {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    pub(crate) worker: PartitionHandle,
    /// The partition's own queue: librdkafka puts its records here instead
    /// of on the consumer queue, and stops prefetching when it is full, so
    /// a partition whose backlog is full is simply not read from. No
    /// partition is ever paused, so none can be left paused by a rebalance.
    /// `None` when the queue could not be split off; then its records
    /// arrive on the consumer queue.
    pub(crate) queue: Option<PartitionQueue<C>>,
    /// Set by librdkafka, through the queue's callback, when the queue
    /// receives records after it was empty.
    pub(crate) ready: Arc<AtomicBool>,
    /// The queue may hold more records: the poll loop stopped taking them
    /// at a limit, not because the queue was empty.
    pub(crate) more: bool,
    /// What was stored for commit.
    pub(crate) committed: Committed,
    /// The last lag librdkafka's statistics reported (-1: unknown), for
    /// the gauge.
    pub(crate) lag: i64,
}

/// The partitions assigned to a consumer now.
pub(crate) struct Assignment<C: ConsumerContext + 'static> {
    pub(crate) partitions: HashMap<TopicPartition, AssignedPartition<C>>,
}

impl<C: ConsumerContext + 'static> Default for Assignment<C> {
    fn default() -> Self {
        Assignment {
            partitions: HashMap::new(),
        }
    }
}

impl<C: ConsumerContext + 'static> Assignment<C> {
    /// Takes `tps` out of the assignment; the ones not in it are skipped.
    pub(crate) fn remove(&mut self, tps: &[TopicPartition]) -> Vec<AssignedPartition<C>> {
        tps.iter()
            .filter_map(|tp| self.partitions.remove(tp))
            .collect()
    }

    /// Whether any partition holds records taken from Kafka.
    pub(crate) fn holds_records(&self) -> bool {
        self.partitions
            .values()
            .any(|p| p.worker.shared.backlog.records() > 0)
    }
}

/// `topic[p], topic[q]`, for the log.
pub(crate) fn list<'a>(tps: impl IntoIterator<Item = &'a TopicPartition>) -> String {
    tps.into_iter()
        .map(|(t, p)| format!("{t}[{p}]"))
        .collect::<Vec<_>>()
        .join(", ")
}
