//! The partitions assigned to a consumer, each with its own librdkafka
//! queue and its worker; what happens when partitions come and go.

use super::backlog::Backlog;
use super::context::{list, GroupConsumer, GroupContext, TopicPartition};
use super::partition::{self, PartitionHandle, WorkerContext};
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::Consumer;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One assigned partition.
pub(crate) struct AssignedPartition {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    pub(crate) worker: PartitionHandle,
    /// The partition's own queue: librdkafka puts its records here instead
    /// of on the consumer queue, and stops prefetching when it is full, so
    /// a partition whose backlog is full is simply not read from. No
    /// partition is ever paused, so none can be left paused by a rebalance.
    /// `None` when the queue could not be split off; then its records
    /// arrive on the consumer queue.
    pub(crate) queue: Option<PartitionQueue<GroupContext>>,
    /// Set by librdkafka, through the queue's callback, when the queue
    /// receives records after it was empty.
    pub(crate) ready: Arc<AtomicBool>,
    /// The queue may hold more records: the poll loop stopped taking them
    /// at a limit, not because the queue was empty.
    pub(crate) more: bool,
    /// The offset last stored for commit; -1 for none.
    pub(crate) stored: i64,
    /// The worker's rewind count when `stored` was stored.
    pub(crate) rewinds_seen: u32,
}

/// The partitions assigned to the consumer now.
#[derive(Default)]
pub(crate) struct Assignment {
    pub(crate) partitions: HashMap<TopicPartition, AssignedPartition>,
}

impl GroupContext {
    /// Starts the worker of each newly assigned partition and splits its
    /// queue off the consumer queue. Runs before librdkafka starts
    /// fetching the partitions.
    pub(crate) fn assign(&self, tps: &[TopicPartition]) {
        let consumer = self.consumer();
        let mut assignment = self.assignment();
        for (topic, partition) in tps {
            if assignment
                .partitions
                .contains_key(&(topic.clone(), *partition))
            {
                continue;
            }
            let Some(executor) = self.options.executors.get(topic) else {
                tracing::error!(topic = &**topic, partition, "assigned a partition of a topic no handler consumes; its records are not handled");
                continue;
            };
            let ready = Arc::new(AtomicBool::new(true));
            let queue = consumer
                .as_ref()
                .and_then(|c| c.split_partition_queue(topic, *partition))
                .map(|mut q| {
                    let (ready, waker) = (ready.clone(), self.waker.clone());
                    q.set_nonempty_callback(move || {
                        ready.store(true, Ordering::Release);
                        waker.wake();
                    });
                    q
                });
            if queue.is_none() {
                tracing::warn!(topic = &**topic, partition, "cannot give the partition a queue of its own; its records arrive on the consumer queue");
            }
            let backlog = Backlog::new(
                self.options.partition_buffer,
                self.options.partition_buffer_bytes,
                self.waker.clone(),
            );
            let worker = partition::spawn(
                &self.rt,
                topic.clone(),
                *partition,
                WorkerContext {
                    executor: executor.clone(),
                    global: self.global.clone(),
                    stop: self.stop.clone(),
                    drain_timeout: self.options.drain_timeout,
                },
                backlog,
            );
            assignment.partitions.insert(
                (topic.clone(), *partition),
                AssignedPartition {
                    topic: topic.clone(),
                    partition: *partition,
                    worker,
                    queue,
                    ready,
                    more: false,
                    stored: -1,
                    rewinds_seen: 0,
                },
            );
        }
        drop(assignment);
        self.waker.wake();
    }

    /// Gives up `tps`: stops their workers, waits (up to the drain timeout)
    /// for their records in flight, and commits their watermarks
    /// synchronously (up to the commit timeout), unless the assignment was
    /// lost: then another consumer may own them already, and nothing is
    /// committed. Their queues and buffers are dropped.
    pub(crate) fn revoke(
        &self,
        consumer: &GroupConsumer,
        tps: &[TopicPartition],
        why: &'static str,
    ) {
        let removed: Vec<AssignedPartition> = {
            let mut assignment = self.assignment();
            tps.iter()
                .filter_map(|tp| assignment.partitions.remove(tp))
                .collect()
        };
        if removed.is_empty() {
            return;
        }
        let lost = consumer.assignment_lost();
        for p in &removed {
            p.worker.stop.cancel();
        }
        if !lost {
            let deadline = Instant::now() + self.options.drain_timeout + Duration::from_secs(1);
            for p in &removed {
                // Disconnected (the worker exited) or timed out: either way go on.
                let _ = p
                    .worker
                    .exited
                    .recv_timeout(deadline.saturating_duration_since(Instant::now()));
            }
        }
        let names: Vec<TopicPartition> = removed
            .iter()
            .map(|p| (p.topic.clone(), p.partition))
            .collect();
        let committed = if lost {
            tracing::warn!(group = %self.options.group, partitions = %list(&names), "the assignment was lost (the group moved on without this consumer): not committing; records after the last commit are delivered again");
            false
        } else {
            match self.consumer() {
                Some(c) => {
                    self.committer
                        .commit_final(&c, self.committer.final_offsets(&removed), why)
                }
                None => false,
            }
        };
        tracing::info!(group = %self.options.group, partitions = %list(&names), why, lost, committed, "partitions revoked: drained and committed");
    }
}
