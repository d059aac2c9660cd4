//! The consumer's rdkafka context: what librdkafka calls back into, and
//! what happens when it does. Callbacks run on the poll thread, inside
//! `poll`: on assign, each new partition gets its queue and its worker; on
//! revoke, the partitions drain (a revoke may block the poll thread for the
//! drain and commit timeouts) and their watermarks are committed.

use super::assignment::{list, AssignedPartition, Assignment, TopicPartition};
use super::backlog::{Backlog, PollWaker};
use super::commit::{Committed, Committer, Progress};
use super::execute::Executor;
use super::limit::Limit;
use super::partition::{self, WorkerContext};
use super::stop::Stop;
use crate::client::ClientHooks;
use crate::telemetry::health::Health;
use crate::telemetry::metrics::GroupMetrics;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::TopicPartitionList;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

/// The consumer of one group.
pub(crate) type GroupConsumer = BaseConsumer<GroupContext>;

/// Settings of one group's consumer.
pub(crate) struct GroupOptions {
    pub(crate) group: String,
    /// The executor of each topic's handler.
    pub(crate) executors: HashMap<Arc<str>, Arc<Executor>>,
    pub(crate) partition_buffer: usize,
    pub(crate) partition_buffer_bytes: usize,
    pub(crate) drain_timeout: Duration,
    pub(crate) poll_batch: usize,
    pub(crate) stall_timeout: Duration,
}

/// The consumer's context, shared by the poll loop and librdkafka's
/// callbacks.
pub(crate) struct GroupContext {
    pub(crate) options: GroupOptions,
    pub(crate) assignment: Mutex<Assignment<GroupContext>>,
    pub(crate) rt: tokio::runtime::Handle,
    pub(crate) global: Arc<Limit>,
    pub(crate) stop: Arc<Stop>,
    pub(crate) waker: Arc<PollWaker>,
    pub(crate) committer: Committer,
    hooks: ClientHooks,
    pub(crate) health: Arc<Health>,
    pub(crate) metrics: GroupMetrics,
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
        hooks: ClientHooks,
        health: Arc<Health>,
    ) -> Self {
        GroupContext {
            metrics: GroupMetrics::new(&options.group),
            health,
            options,
            assignment: Mutex::default(),
            rt,
            global,
            stop,
            waker: Arc::default(),
            committer,
            hooks,
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

    pub(crate) fn assignment(&self) -> MutexGuard<'_, Assignment<GroupContext>> {
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

impl ClientContext for GroupContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        crate::client::log(level, fac, log_message);
    }

    fn stats_raw(&self, statistics: &[u8]) {
        self.record_lag(statistics);
        self.hooks.statistics(statistics);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        // The same error comes back from `poll`, where the poll loop
        // explains it and decides whether to stop.
        tracing::debug!(group = %self.options.group, error = %error, reason, "Kafka client error");
    }

    fn generate_oauth_token(
        &self,
        config: Option<&str>,
    ) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
        self.hooks.token(config)
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
                self.metrics.rebalance("assigned");
                self.assign(&tps);
                self.health.joined(&self.options.group);
            }
            Rebalance::Error(e) => {
                tracing::error!(group = %self.options.group, error = %e, "rebalance error")
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        // The dispatcher's commits are synchronous and report themselves;
        // this hears only of commits librdkafka makes on its own.
        match result {
            Ok(()) => tracing::trace!(offsets = ?offsets, "offsets committed"),
            Err(e) => {
                tracing::debug!(group = %self.options.group, error = %e, "a commit made by librdkafka failed")
            }
        }
    }
}

impl GroupContext {
    /// Starts the worker of each newly assigned partition and splits its
    /// queue off the consumer queue. Runs before librdkafka starts
    /// fetching the partitions, so their records land in their own queues
    /// from the first fetch on.
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
            let gauges = self.metrics.partition(topic, *partition, &executor.name);
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
                    health: self.health.clone(),
                    stall_timeout: self.options.stall_timeout,
                    gauges,
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
                    committed: Committed::default(),
                    lag: -1,
                },
            );
        }
        self.metrics
            .assigned
            .set(assignment.partitions.len() as f64);
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
        let mut removed = self.assignment().remove(tps);
        if removed.is_empty() {
            return;
        }
        let lost = consumer.assignment_lost();
        self.metrics
            .rebalance(if lost { "lost" } else { "revoked" });
        self.metrics
            .assigned
            .set(self.assignment().partitions.len() as f64);
        let names: Vec<TopicPartition> = removed
            .iter()
            .map(|p| (p.topic.clone(), p.partition))
            .collect();
        tracing::info!(group = %self.options.group, partitions = %list(&names), why, lost, "partitions revoked");
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
            // A periodic commit in flight must not land after the final
            // one; it had the drain to finish, and may take what is left of
            // it, so the revoke stays within drain + commit timeouts.
            self.committer.settle(
                &mut self.assignment(),
                &self.metrics,
                deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(100)),
            );
        }
        let committed = if lost {
            tracing::warn!(group = %self.options.group, partitions = %list(&names), "the assignment was lost (the group moved on without this consumer): not committing; records after the last commit are delivered again");
            false
        } else {
            let offsets = self
                .committer
                .final_offsets(removed.iter_mut().map(progress));
            match self.consumer() {
                Some(c) => self.committer.commit_final(&c, offsets, why, &self.metrics),
                None => false,
            }
        };
        tracing::info!(group = %self.options.group, partitions = %list(&names), why, lost, committed, "partitions drained");
    }
}

impl GroupContext {
    /// Notes each assigned partition's consumer lag from librdkafka's
    /// statistics, for the gauges.
    fn record_lag(&self, statistics: &[u8]) {
        let stats: rdkafka::Statistics = match serde_json::from_slice(statistics) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(group = %self.options.group, error = %e, "cannot read librdkafka's statistics");
                return;
            }
        };
        let mut assignment = self.assignment();
        for (topic, t) in &stats.topics {
            for p in t.partitions.values() {
                if p.partition < 0 || p.consumer_lag < 0 {
                    continue;
                }
                if let Some(a) = assignment
                    .partitions
                    .get_mut(&(Arc::from(topic.as_str()), p.partition))
                {
                    a.lag = p.consumer_lag;
                    self.metrics.lag(topic, p.partition, p.consumer_lag);
                }
            }
        }
    }

    /// Sets the group's gauges, and the partitions' committed offset and
    /// lag again so that they stay current.
    pub(crate) fn refresh_gauges(&self) {
        let assignment = self.assignment();
        let paused = assignment
            .partitions
            .values()
            .filter(|p| p.worker.shared.backlog.room().is_none())
            .count();
        self.metrics.paused.set(paused as f64);
        self.metrics
            .assigned
            .set(assignment.partitions.len() as f64);
        for p in assignment.partitions.values() {
            if p.committed.acked >= 0 {
                self.metrics
                    .committed(&p.topic, p.partition, p.committed.acked);
            }
            if p.lag >= 0 {
                self.metrics.lag(&p.topic, p.partition, p.lag);
            }
        }
    }
}

/// An assigned partition as the committer sees it.
pub(crate) fn progress(p: &mut AssignedPartition<GroupContext>) -> Progress<'_> {
    Progress {
        topic: &p.topic,
        partition: p.partition,
        shared: &p.worker.shared,
        committed: &mut p.committed,
    }
}
