//! The worker of one assigned partition: queues its records by ordering
//! lane, runs them within the in-flight caps, and publishes the watermark.

use super::backlog::Backlog;
use super::convert::Batch;
use super::execute::{Done, Executor, Finish, FirstAttempt};
use super::lanes::{LaneId, Lanes};
use super::limit::{Limit, Slots};
use super::stop::Stop;
use super::tracker::{OffsetTracker, Tracked};
use crate::error::{Error, FatalError};
use crate::message::{KeyDisplay, Message};
use crate::telemetry::health::Health;
use crate::telemetry::metrics::PartitionGauges;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How often a worker measures the age of its oldest unfinished record
/// (more often when the stall timeout is under two seconds).
const STALL_CHECK_EVERY: Duration = Duration::from_secs(1);

/// What a partition's worker publishes for the poll thread.
#[derive(Debug)]
pub(crate) struct PartitionShared {
    /// Next offset to commit; -1 until a record finished.
    pub(crate) committable: AtomicI64,
    /// Bumped when the watermark went back because the consumer rewound
    /// (see [`OffsetTracker`]): the committer then stores the lower value.
    pub(crate) rewinds: AtomicU32,
    /// What the partition holds, and the room for more.
    pub(crate) backlog: Backlog,
}

/// The poll thread's handle on a partition's worker.
pub(crate) struct PartitionHandle {
    pub(crate) records: mpsc::UnboundedSender<Batch>,
    pub(crate) shared: Arc<PartitionShared>,
    pub(crate) stop: CancellationToken,
    /// Disconnects when the worker has exited.
    pub(crate) exited: std::sync::mpsc::Receiver<()>,
}

impl PartitionHandle {
    /// Hands a batch taken from Kafka to the worker.
    pub(crate) fn send(&self, batch: Batch) -> bool {
        self.shared.backlog.take(batch.len(), batch.bytes());
        self.records.send(batch).is_ok()
    }
}

/// What a worker needs besides its records.
pub(crate) struct WorkerContext {
    pub(crate) executor: Arc<Executor>,
    pub(crate) global: Arc<Limit>,
    pub(crate) stop: Arc<Stop>,
    pub(crate) drain_timeout: Duration,
    /// Where a stall of this partition is reported.
    pub(crate) health: Arc<Health>,
    /// How long the oldest unfinished record may hold up commits before
    /// the partition counts as stalled.
    pub(crate) stall_timeout: Duration,
    /// The partition's gauges.
    pub(crate) gauges: PartitionGauges,
}

/// Starts the worker of `topic`/`partition` on the runtime.
pub(crate) fn spawn(
    rt: &tokio::runtime::Handle,
    topic: Arc<str>,
    partition: i32,
    cx: WorkerContext,
    backlog: Backlog,
) -> PartitionHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let (exit_tx, exit_rx) = std::sync::mpsc::channel();
    let shared = Arc::new(PartitionShared {
        committable: AtomicI64::new(-1),
        rewinds: AtomicU32::new(0),
        backlog,
    });
    let stop = CancellationToken::new();
    // What a waiting record's future needs, in one private allocation: its
    // reference count is touched per record, once, and by no other
    // partition.
    let scope = Arc::new(RecordScope {
        executor: Executor::clone(&cx.executor),
        stop: stop.clone(),
    });
    let slots = Slots::new(cx.global.clone(), cx.executor.concurrency.clone());
    let worker = Worker {
        topic,
        partition,
        lanes: Lanes::new(cx.executor.spec.policy.ordering()),
        cx,
        shared: shared.clone(),
        tracker: OffsetTracker::default(),
        ready: VecDeque::new(),
        halted: false,
        slots,
        scope,
        counts: Counts::default(),
        head: None,
        stalled: false,
    };
    rt.spawn(worker.run(rx, exit_tx));
    PartitionHandle {
        records: tx,
        shared,
        stop,
        exited: exit_rx,
    }
}

/// Stops the dispatcher when a partition worker unwinds. The worker runs in
/// a detached task whose panic nobody would see: its partition would stall
/// while everything else ran on.
struct StopIfUnwinding {
    stop: Arc<Stop>,
    topic: Arc<str>,
    partition: i32,
}

impl Drop for StopIfUnwinding {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.stop.fatal(Error::runtime(format!(
                "the worker of partition {}[{}] panicked; see the log. Nothing after its last finished record was committed",
                self.topic, self.partition
            )));
        }
    }
}

type Running = FuturesUnordered<InFlight>;

/// A record whose handler is waiting on something, with what a stall
/// warning names.
struct InFlight {
    offset: i64,
    key: Option<Bytes>,
    record: BoxFuture<'static, (Message, Finish)>,
}

impl std::future::Future for InFlight {
    type Output = (Message, Finish);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.record.as_mut().poll(cx)
    }
}

/// Records counted since the metrics were last updated: the worker adds
/// up locally and updates the shared series once per pass.
#[derive(Default)]
struct Counts {
    received: u64,
    handled: u64,
    dead_lettered: u64,
    retry_topic: u64,
    /// Records that left without finishing (dropped or abandoned), or
    /// finished fatal.
    left: u64,
}

/// What the future of a record that waits needs from its worker.
struct RecordScope {
    executor: Executor,
    /// The partition's stop signal (revoke or shutdown).
    stop: CancellationToken,
}

struct Worker {
    topic: Arc<str>,
    partition: i32,
    cx: WorkerContext,
    shared: Arc<PartitionShared>,
    tracker: OffsetTracker,
    /// Which keys (or the whole partition) have a record ready or running,
    /// and the records waiting behind it.
    lanes: Lanes,
    /// Records free to start once slots allow, in arrival order.
    ready: VecDeque<Message>,
    /// A fatal error was seen: start nothing more.
    halted: bool,
    /// The in-flight slots this worker takes for its records.
    slots: Slots,
    /// The executor and the partition's stop signal.
    scope: Arc<RecordScope>,
    counts: Counts,
    /// The oldest unfinished offset, and when it was first seen so.
    head: Option<(i64, std::time::Instant)>,
    /// Whether the partition is reported stalled.
    stalled: bool,
}

impl Worker {
    /// Tracks the records of a batch and starts those that may start: a
    /// record whose lane is free and for which a slot is free runs at once.
    fn enqueue(&mut self, batch: Batch, running: &mut Running) {
        self.counts.received += batch.len() as u64;
        for mut msg in batch.into_messages() {
            if let Tracked::Rewound { last } = self.tracker.track(msg.offset(), msg.size()) {
                self.rewound(&msg, last);
            }
            msg.generation = self.tracker.generation();
            let Some(msg) = self.lanes.admit(msg) else {
                continue;
            };
            if !self.halted
                && self.ready.is_empty()
                && self.not_due_for(&msg).is_none()
                && self.slots.try_take()
            {
                self.run_record(msg, running, false);
            } else {
                let id = self.lanes.id(&msg);
                self.lanes.open(id);
                self.ready.push_back(msg);
            }
        }
    }

    /// How long `msg` must still wait: a record of a retry topic is not
    /// handled before the time its `retry.due` header names, and no later
    /// than its level's delay after it was written (a clock that was ahead,
    /// or a hand-made header, cannot hold the partition longer).
    fn not_due_for(&self, msg: &Message) -> Option<Duration> {
        let level = self.cx.executor.retry_level;
        if level == 0 {
            return None;
        }
        let mut due = crate::dead_letter::retry::due(msg)?;
        let delay = self
            .cx
            .executor
            .spec
            .policy
            .retry_topics()
            .get(level - 1)
            .copied();
        let written = msg
            .timestamp()
            .and_then(|ms| u64::try_from(ms).ok())
            .map(|ms| std::time::UNIX_EPOCH + Duration::from_millis(ms));
        if let (Some(delay), Some(written)) = (delay, written) {
            due = due.min(written + delay);
        }
        due.duration_since(std::time::SystemTime::now()).ok()
    }

    /// The consumer delivered an offset at or below one it delivered
    /// before: it rewound (log truncation after an unclean leader election,
    /// or an out-of-range offset reset to the earliest). The records from
    /// `msg` on are new and are handled; the ones waiting from before at
    /// or above its offset are dropped (the rewound stream delivers those
    /// offsets again), the ones below it still run, and nothing is
    /// committed past an unhandled record.
    fn rewound(&mut self, msg: &Message, last: i64) {
        tracing::error!(
            topic = &*self.topic,
            partition = self.partition,
            offset = msg.offset(),
            last_offset = last,
            committable = ?self.tracker.committable(),
            "the consumer rewound within an assignment (log truncation or offset reset): records from this offset on are handled as new, and nothing is committed past one not yet handled"
        );
        // The records from `msg` on come again; the ones below it do not,
        // and still have to run.
        let from = msg.offset();
        let mut dropped = self.lanes.drop_from(from);
        let ready = std::mem::take(&mut self.ready);
        for m in ready {
            if m.offset() < from {
                self.ready.push_back(m);
                continue;
            }
            dropped += 1;
            // Its lane was open for it: pass the lane on (to nothing
            // below `from`, since the ones behind it are later).
            if let Some(next) = self.lanes.release(&m) {
                self.ready.push_back(next);
            }
        }
        self.counts.left += dropped as u64;
        self.shared.committable.store(
            self.tracker.committable().unwrap_or(-1),
            AtomicOrdering::Release,
        );
        self.shared.rewinds.fetch_add(1, AtomicOrdering::AcqRel);
    }

    /// Starts the next ready record (its lane is open). The caller holds a
    /// slot for it, which `complete` gives back.
    fn start(&mut self, running: &mut Running) {
        match self.ready.pop_front() {
            Some(msg) => self.run_record(msg, running, true),
            None => self.slots.give_back(1),
        }
    }

    /// Runs a record holding a slot. Its future is polled once right away:
    /// a handler that finishes without waiting (the common case for fast
    /// handlers) completes here, without a trip through the scheduler and
    /// without ever opening its lane.
    fn run_record(&mut self, msg: Message, running: &mut Running, lane_open: bool) {
        let first = self.scope.executor.start(&msg);
        if let FirstAttempt::Handled = first {
            // The fast path: no lane was needed, no task, no allocation.
            self.scope.executor.handled(&msg, 1);
            self.complete(msg, Finish::Done(Done::Handled), lane_open);
            return;
        }
        let lane = if lane_open {
            LaneId::None
        } else {
            self.lanes.id(&msg)
        };
        let (msg_offset, msg_key) = (msg.offset(), msg.key_bytes().cloned());
        let scope = self.scope.clone();
        let mut record: BoxFuture<'static, (Message, Finish)> = Box::pin(async move {
            let finish = scope.executor.process(&msg, first, &scope.stop).await;
            (msg, finish)
        });
        match (&mut record).now_or_never() {
            Some((msg, finish)) => {
                if !lane_open && matches!(finish, Finish::Fatal(_)) {
                    self.lanes.open(lane);
                    self.complete(msg, finish, true);
                } else {
                    self.complete(msg, finish, lane_open);
                }
            }
            None => {
                self.lanes.open(lane);
                running.push(InFlight {
                    offset: msg_offset,
                    key: msg_key,
                    record,
                });
            }
        }
    }

    /// A record finished; `lane_open` says whether its lane was opened.
    fn complete(&mut self, msg: Message, finish: Finish, lane_open: bool) {
        self.slots.give_back(1);
        match finish {
            Finish::Done(done) => {
                match done {
                    Done::Handled => self.counts.handled += 1,
                    Done::DeadLettered => self.counts.dead_lettered += 1,
                    Done::RetryTopic => self.counts.retry_topic += 1,
                }
                if let Some(next) = self.tracker.finish(msg.offset(), msg.generation) {
                    self.shared.committable.store(next, AtomicOrdering::Release);
                }
                if lane_open {
                    if let Some(next) = self.lanes.release(&msg) {
                        self.ready.push_back(next);
                    }
                }
            }
            // The partition is stopping: the record stays unfinished.
            Finish::Abandoned => self.counts.left += 1,
            Finish::Fatal(error) => {
                self.counts.left += 1;
                self.scope.executor.metrics.fatal.increment(1);
                // The record stays unfinished, so the watermark stays below
                // it, and its lane stays blocked. It also stays in the
                // backlog: the partition never looks idle, so the committer
                // never commits the consumer's position past it.
                self.halted = true;
                self.cx.stop.fatal(Error::Fatal(Box::new(FatalError {
                    handler: self.cx.executor.name.to_string(),
                    topic: msg.topic().to_owned(),
                    partition: msg.partition(),
                    offset: msg.offset(),
                    key: KeyDisplay(msg.key()).to_string(),
                    error,
                })));
            }
        }
    }

    /// Drops every record not yet started; they stay unfinished in the
    /// tracker, so nothing after them is committed.
    fn drop_queued(&mut self) {
        self.counts.left += (self.ready.len() + self.lanes.clear()) as u64;
        self.ready.clear();
    }

    /// Updates the shared series with what was counted since last time.
    fn flush_counts(&mut self) {
        let c = std::mem::take(&mut self.counts);
        let m = &self.scope.executor.metrics;
        if c.received > 0 {
            m.received.increment(c.received);
            self.cx.gauges.in_flight.increment(c.received as f64);
        }
        if c.handled > 0 {
            m.handled.increment(c.handled);
        }
        if c.dead_lettered > 0 {
            m.dead_lettered.increment(c.dead_lettered);
        }
        if c.retry_topic > 0 {
            m.retry_topic.increment(c.retry_topic);
        }
        let gone = c.handled + c.dead_lettered + c.retry_topic + c.left;
        if gone > 0 {
            self.cx.gauges.in_flight.decrement(gone as f64);
        }
    }

    /// Gives the backlog what left the tracker since the last time.
    fn release_backlog(&mut self) {
        let (records, bytes) = self.tracker.take_released();
        self.shared.backlog.release(records, bytes);
    }

    async fn run(
        mut self,
        mut records: mpsc::UnboundedReceiver<Batch>,
        _exited: std::sync::mpsc::Sender<()>,
    ) {
        let _stop_if_unwinding = StopIfUnwinding {
            stop: self.cx.stop.clone(),
            topic: self.topic.clone(),
            partition: self.partition,
        };
        let stop = self.scope.stop.clone();
        let mut running: Running = FuturesUnordered::new();
        let mut waiting: Option<BoxFuture<'static, ()>> = None;
        let mut due_wait: Option<Pin<Box<tokio::time::Sleep>>> = None;
        let mut stopping = false;
        let drain = tokio::time::sleep(Duration::MAX);
        tokio::pin!(drain);
        let mut stall_check =
            tokio::time::interval(STALL_CHECK_EVERY.min(self.cx.stall_timeout / 2));
        stall_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            while !self.halted
                && !stopping
                && waiting.is_none()
                && due_wait.is_none()
                && !self.ready.is_empty()
            {
                // A retry topic's partition waits for its next record to be
                // due (the ones behind it are due no earlier), without a
                // slot and without holding up the poll loop.
                if let Some(wait) = self.ready.front().and_then(|m| self.not_due_for(m)) {
                    due_wait = Some(Box::pin(tokio::time::sleep(wait)));
                    break;
                }
                if self.slots.try_take() {
                    self.start(&mut running);
                } else {
                    waiting = Some(self.slots.wait());
                }
            }
            self.release_backlog();
            self.flush_counts();
            if stopping && running.is_empty() {
                break;
            }
            self.slots.give_back_spare();
            tokio::select! {
                biased;
                () = stop.cancelled(), if !stopping => {
                    stopping = true;
                    waiting = None;
                    self.drop_queued();
                    drain.as_mut().reset(tokio::time::Instant::now() + self.cx.drain_timeout);
                }
                Some((msg, finish)) = running.next(), if !running.is_empty() => self.complete(msg, finish, true),
                () = async { match waiting.as_mut() { Some(w) => w.await, None => std::future::pending().await } }, if waiting.is_some() => {
                    waiting = None;
                    let due = self.ready.front().is_none_or(|m| self.not_due_for(m).is_none());
                    if !self.halted && !stopping && due {
                        self.start(&mut running);
                    } else {
                        // Not due yet (the loop waits for it), or stopping.
                        self.slots.give_back(1);
                    }
                }
                batch = records.recv(), if !stopping => match batch {
                    Some(batch) => self.enqueue(batch, &mut running),
                    None => {
                        stopping = true;
                        self.drop_queued();
                        drain.as_mut().reset(tokio::time::Instant::now() + self.cx.drain_timeout);
                    }
                },
                () = async { match due_wait.as_mut() { Some(w) => w.await, None => std::future::pending().await } }, if due_wait.is_some() => {
                    due_wait = None;
                }
                _ = stall_check.tick() => self.check_stall(&running),
                () = &mut drain, if stopping => {
                    tracing::warn!(topic = &*self.topic, partition = self.partition, abandoned = running.len(), drain_timeout = ?self.cx.drain_timeout, "drain timed out; the unfinished records are not committed and will be delivered again");
                    break;
                }
            }
        }
        // Records abandoned after the drain timeout give their slots back,
        // and so do the spare ones: the global cap must not shrink with
        // every rebalance.
        self.slots.give_back(running.len());
        self.counts.left += running.len() as u64;
        drop(running);
        self.slots.give_back_spare();
        self.flush_counts();
        self.recover("it was revoked");
        self.cx.gauges.oldest_age.set(0.0);
        tracing::debug!(
            topic = &*self.topic,
            partition = self.partition,
            committable = self.tracker.committable(),
            "partition worker stopped"
        );
    }
}

mod stall;

#[cfg(test)]
mod tests;
