//! The poll thread of one consumer group: owns the rdkafka consumer, runs
//! the rebalance callbacks, routes records to partition workers, applies
//! backpressure and stores offsets for commit.

use crate::execute::HandlerRuntime;
use crate::fetch::Converter;
use crate::limit::Limit;
use crate::message::Message;
use crate::partition::{self, FatalSlot, PartitionHandle, WorkerContext};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

type TopicPartition = (Arc<str>, i32);

/// How long the poll loop gathers records before handing them out.
const BATCH_WINDOW: Duration = Duration::from_millis(1);

/// How often idle partitions check the consumer's position.
const POSITION_CHECK_EVERY: Duration = Duration::from_millis(200);

/// How often the poll loop pauses, resumes and stores offsets.
const MAINTAIN_EVERY: Duration = Duration::from_millis(5);

/// Settings of one group's poll loop.
pub(crate) struct GroupOptions {
    pub(crate) group: String,
    pub(crate) handlers: HashMap<Arc<str>, Arc<HandlerRuntime>>,
    pub(crate) partition_buffer: usize,
    pub(crate) drain_timeout: Duration,
    pub(crate) poll_batch: usize,
}

#[derive(Default)]
struct GroupState {
    partitions: HashMap<TopicPartition, PartitionHandle>,
    /// Partitions revoked since the poll loop last looked.
    revoked: HashSet<TopicPartition>,
}

/// The consumer's context: rdkafka calls it from inside `poll`, on the poll
/// thread, so the revoke callback may block while partitions drain.
pub(crate) struct GroupContext {
    options: GroupOptions,
    state: Mutex<GroupState>,
    /// Bumped on every revoke.
    epoch: AtomicU64,
    rt: tokio::runtime::Handle,
    global: Arc<Limit>,
    fatal: Arc<FatalSlot>,
}

impl GroupContext {
    pub(crate) fn new(
        options: GroupOptions,
        rt: tokio::runtime::Handle,
        global: Arc<Limit>,
        fatal: Arc<FatalSlot>,
    ) -> Self {
        GroupContext {
            options,
            state: Mutex::default(),
            epoch: AtomicU64::new(0),
            rt,
            global,
            fatal,
        }
    }

    fn state(&self) -> MutexGuard<'_, GroupState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops the workers of `tps`, waits (bounded) for their in-flight
    /// records, and commits their watermarks synchronously.
    fn drain_and_commit(
        &self,
        consumer: &BaseConsumer<GroupContext>,
        tps: &[TopicPartition],
        why: &str,
    ) {
        let handles: Vec<(TopicPartition, PartitionHandle)> = {
            let mut state = self.state();
            state.revoked.extend(tps.iter().cloned());
            tps.iter()
                .filter_map(|tp| state.partitions.remove(tp).map(|h| (tp.clone(), h)))
                .collect()
        };
        self.epoch.fetch_add(1, AtomicOrdering::AcqRel);
        for (_, h) in &handles {
            h.stop.cancel();
        }
        let deadline = Instant::now() + self.options.drain_timeout + Duration::from_secs(1);
        for (_, h) in &handles {
            // Disconnected (the worker exited) or timed out: either way go on.
            let _ = h
                .exited
                .recv_timeout(deadline.saturating_duration_since(Instant::now()));
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), h) in &handles {
            // What was stored may be ahead of the watermark (an idle
            // partition stores its position): never commit backwards.
            let next = h
                .shared
                .committable
                .load(AtomicOrdering::Acquire)
                .max(h.stored);
            if next >= 0 {
                if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(next)) {
                    tracing::error!(topic = &**topic, partition, error = %e, "cannot build the commit list");
                }
            }
        }
        // Store them too: librdkafka's own commit on unassign (auto-commit)
        // commits the stored offsets, which must not be older than ours.
        if tpl.count() > 0 {
            if let Err(e) = consumer.store_offsets(&tpl) {
                tracing::debug!(error = %e, "cannot store the final offsets");
            }
        }
        let committed = tpl.count() == 0 || commit_sync(consumer, &tpl, why);
        if !handles.is_empty() {
            tracing::info!(group = %self.options.group, partitions = %list(handles.iter().map(|(tp, _)| tp)), why, committed, "partitions drained");
        }
    }

    /// Routes one poll batch to the partition workers, creating workers for
    /// partitions seen for the first time in this assignment.
    fn route(&self, batch: &mut Vec<BorrowedMessage<'_>>, converter: &mut Converter) {
        if batch.is_empty() {
            return;
        }
        let mut state = self.state();
        converter.for_each_run(batch, |topic, partition, run| {
            self.send_run(&mut state, topic, partition, run)
        });
        batch.clear();
    }

    /// Sends consecutive records of one partition to its worker, starting
    /// the worker on the partition's first records of this assignment.
    fn send_run(&self, state: &mut GroupState, topic: Arc<str>, partition: i32, run: Vec<Message>) {
        let Some(handler) = self.options.handlers.get(&topic) else {
            tracing::error!(
                topic = &*topic,
                partition,
                "received records of a topic no handler consumes; ignoring them"
            );
            return;
        };
        let handle = state
            .partitions
            .entry((topic.clone(), partition))
            .or_insert_with(|| {
                tracing::debug!(
                    topic = &*topic,
                    partition,
                    handler = &*handler.name,
                    "starting partition worker"
                );
                partition::spawn(
                    &self.rt,
                    topic.clone(),
                    partition,
                    WorkerContext {
                        handler: handler.clone(),
                        global: self.global.clone(),
                        fatal: self.fatal.clone(),
                        drain_timeout: self.options.drain_timeout,
                    },
                )
            });
        handle
            .shared
            .held
            .fetch_add(run.len(), AtomicOrdering::Relaxed);
        if handle.records.send(run).is_err() {
            tracing::error!(topic = &*topic, partition, "partition worker is gone; its records will be delivered again after the next rebalance");
        }
    }

    /// Drops records of partitions revoked while the batch was collected.
    fn discard_revoked(&self, batch: &mut Vec<BorrowedMessage<'_>>) {
        let mut state = self.state();
        if state.revoked.is_empty() {
            return;
        }
        batch.retain(|m| {
            !state
                .revoked
                .iter()
                .any(|(t, p)| *p == m.partition() && &**t == m.topic())
        });
        state.revoked.clear();
    }

    /// Pauses full partitions, resumes drained ones, and stores the
    /// watermarks that advanced, for the next commit.
    ///
    /// With `check_positions`, a partition whose records are all finished
    /// stores the consumer's position instead of its watermark when that is
    /// further: the offsets in between hold no records for us (transaction
    /// markers, compacted records), and committing past them keeps the
    /// consumer lag at zero. librdkafka's position is the offset after the
    /// last record it returned to us, or after a control record it consumed
    /// itself (it never moves ahead of records we have not seen).
    fn maintain(&self, consumer: &BaseConsumer<GroupContext>, check_positions: bool) {
        let cap = self.options.partition_buffer;
        let mut pause = TopicPartitionList::new();
        let mut resume = TopicPartitionList::new();
        let mut store = TopicPartitionList::new();
        {
            let mut state = self.state();
            let positions = if check_positions
                && state
                    .partitions
                    .values()
                    .any(|h| h.shared.held.load(AtomicOrdering::Acquire) == 0)
            {
                consumer.position().ok()
            } else {
                None
            };
            for ((topic, partition), h) in state.partitions.iter_mut() {
                let held = h.shared.held.load(AtomicOrdering::Acquire);
                if !h.paused && held >= cap {
                    pause.add_partition(topic, *partition);
                    h.paused = true;
                    tracing::debug!(
                        topic = &**topic,
                        partition,
                        held,
                        "partition holds its limit of fetched, uncommitted records; pausing fetch"
                    );
                } else if h.paused && held <= cap / 2 {
                    resume.add_partition(topic, *partition);
                    h.paused = false;
                    tracing::debug!(
                        topic = &**topic,
                        partition,
                        held,
                        "partition drained below half its limit; resuming fetch"
                    );
                }
                let mut next = h.shared.committable.load(AtomicOrdering::Acquire);
                if held == 0 {
                    // Every record this worker was given is finished, and
                    // every record polled was given to it: nothing below the
                    // position is unfinished.
                    if let Some(Offset::Offset(position)) = positions
                        .as_ref()
                        .and_then(|p| p.find_partition(topic, *partition))
                        .map(|e| e.offset())
                    {
                        next = next.max(position);
                    }
                }
                if next > h.stored
                    && store
                        .add_partition_offset(topic, *partition, Offset::Offset(next))
                        .is_ok()
                {
                    h.stored = next;
                }
            }
        }
        if pause.count() > 0 {
            if let Err(e) = consumer.pause(&pause) {
                tracing::warn!(error = %e, "cannot pause partitions");
            }
        }
        if resume.count() > 0 {
            if let Err(e) = consumer.resume(&resume) {
                tracing::warn!(error = %e, "cannot resume partitions");
            }
        }
        if store.count() > 0 {
            if let Err(e) = consumer.store_offsets(&store) {
                tracing::debug!(error = %e, "cannot store offsets (partition no longer assigned?)");
            }
        }
    }
}

fn list<'a>(tps: impl Iterator<Item = &'a TopicPartition>) -> String {
    tps.map(|(t, p)| format!("{t}[{p}]"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn tpl_list(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    tpl.elements()
        .iter()
        .map(|e| (Arc::from(e.topic()), e.partition()))
        .collect()
}

/// Commits synchronously, retrying transient failures a few times. A failed
/// commit only means records are delivered again, never lost. Returns
/// whether the commit went through.
fn commit_sync(consumer: &BaseConsumer<GroupContext>, tpl: &TopicPartitionList, why: &str) -> bool {
    for attempt in 1..=3u64 {
        match consumer.commit(tpl, CommitMode::Sync) {
            Ok(()) => return true,
            Err(e) => {
                // The group is already rebalancing (or we left it): the
                // coordinator will refuse again, so do not hold the
                // rebalance up retrying.
                let hopeless = matches!(
                    e.rdkafka_error_code(),
                    Some(
                        RDKafkaErrorCode::RebalanceInProgress
                            | RDKafkaErrorCode::IllegalGeneration
                            | RDKafkaErrorCode::UnknownMemberId
                    )
                );
                tracing::warn!(error = %e, attempt, why, offsets = ?tpl, "synchronous commit failed");
                if hopeless {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100 * attempt));
            }
        }
    }
    tracing::error!(why, offsets = ?tpl, "could not commit; the records after the last committed offset will be delivered again (to this or another consumer)");
    false
}

impl ClientContext for GroupContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        crate::logging::rdkafka_log(level, fac, log_message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(group = %self.options.group, error = %error, reason, "Kafka client error");
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let tps = tpl_list(tpl);
                tracing::info!(group = %self.options.group, partitions = %list(tps.iter()), "partitions revoked");
                self.drain_and_commit(consumer, &tps, "revoke");
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => {
                tracing::error!(group = %self.options.group, error = %e, "rebalance error")
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            tracing::info!(group = %self.options.group, partitions = %list(tpl_list(tpl).iter()), "partitions assigned");
            // Pause state does not survive a rebalance: apply it again to
            // partitions we kept.
            let mut pause = TopicPartitionList::new();
            for ((topic, partition), h) in self.state().partitions.iter() {
                if h.paused {
                    pause.add_partition(topic, *partition);
                }
            }
            if pause.count() > 0 {
                if let Err(e) = consumer.pause(&pause) {
                    tracing::warn!(error = %e, "cannot re-apply pauses after assignment");
                }
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

/// The poll loop. Returns when `shutdown` is cancelled, after draining and
/// committing every partition and closing the consumer.
pub(crate) fn poll_loop(
    consumer: BaseConsumer<GroupContext>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let ctx = consumer.context().clone();
    let mut converter = Converter::new(ctx.options.handlers.len() == 1);
    let mut batch: Vec<BorrowedMessage<'_>> = Vec::with_capacity(ctx.options.poll_batch);
    let mut last_maintain = Instant::now();
    let mut last_position_check = Instant::now();
    while !shutdown.is_cancelled() {
        // Wait up to 100 ms for a first record, then gather more for up to
        // BATCH_WINDOW: fewer, larger hand-offs to the partition workers.
        let mut timeout = Duration::from_millis(100);
        let mut window_end: Option<Instant> = None;
        while batch.len() < ctx.options.poll_batch {
            let epoch = ctx.epoch.load(AtomicOrdering::Acquire);
            let polled = consumer.poll(timeout);
            if ctx.epoch.load(AtomicOrdering::Acquire) != epoch {
                ctx.discard_revoked(&mut batch);
            }
            match polled {
                Some(Ok(m)) => {
                    batch.push(m);
                    timeout = Duration::ZERO;
                    window_end.get_or_insert_with(|| Instant::now() + BATCH_WINDOW);
                }
                Some(Err(e)) => {
                    timeout = Duration::ZERO;
                    tracing::warn!(group = %ctx.options.group, error = %e, "consumer error");
                }
                // The queue is empty: wait for more until the window closes
                // (once), or stop when idle.
                None => {
                    let left = window_end.map_or(Duration::ZERO, |end| {
                        end.saturating_duration_since(Instant::now())
                    });
                    if left.is_zero() || !timeout.is_zero() {
                        break;
                    }
                    timeout = left;
                }
            }
        }
        ctx.route(&mut batch, &mut converter);
        // Pausing, resuming and storing offsets every few milliseconds is
        // plenty, and keeps the per-batch cost low when batches are small.
        if last_maintain.elapsed() >= MAINTAIN_EVERY {
            let check_positions = last_position_check.elapsed() >= POSITION_CHECK_EVERY;
            ctx.maintain(&consumer, check_positions);
            last_maintain = Instant::now();
            if check_positions {
                last_position_check = last_maintain;
            }
        }
    }
    // Shutdown: stop fetching, drain, commit, close.
    tracing::info!(group = %ctx.options.group, "stopping: draining in-flight records and committing");
    if let Ok(assigned) = consumer.assignment() {
        if let Err(e) = consumer.pause(&assigned) {
            tracing::debug!(error = %e, "cannot pause on shutdown");
        }
    }
    drop(batch);
    let all: Vec<TopicPartition> = ctx.state().partitions.keys().cloned().collect();
    ctx.drain_and_commit(&consumer, &all, "shutdown");
    drop(consumer);
    tracing::info!(group = %ctx.options.group, "consumer closed");
}
