//! Committing: what each partition may commit, when it is committed, and
//! how long a final commit may take.
//!
//! Every few milliseconds the poll loop stores each partition's watermark
//! in librdkafka ([`Committer::store_progress`]); every commit interval,
//! when a stored offset moved, it commits the stored offsets on a thread
//! of its own ([`Committer::commit_due`]), one commit at a time, and reads
//! the answer on a later pass: how long it took, and what is committed
//! now (`enable.auto.commit=false`, `enable.auto.offset.store=false`, both
//! kept by the dispatcher: librdkafka tells the application neither how
//! long its own periodic commits take nor how asynchronous manual commits
//! end). When partitions are revoked and at shutdown, their
//! final watermarks are committed synchronously
//! ([`Committer::commit_final`]), retrying only errors worth retrying, and
//! giving up after the commit timeout: the records are then delivered
//! again, never lost.

use super::assignment::Assignment;
use super::partition::PartitionShared;
use crate::policy::RetrySchedule;
use crate::telemetry::metrics::GroupMetrics;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::{mpsc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Properties the dispatcher sets on every consumer because offset safety
/// depends on them; configuration cannot override them.
pub(crate) const RESERVED: &[&str] = &[
    "enable.auto.commit",
    "enable.auto.offset.store",
    "group.id",
    "bootstrap.servers",
    "auto.commit.interval.ms",
];

/// The consumer settings committing depends on.
pub(crate) fn consumer_settings() -> [(&'static str, &'static str); 2] {
    [
        ("enable.auto.commit", "false"),
        ("enable.auto.offset.store", "false"),
    ]
}

/// What was stored for commit of one partition.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Committed {
    /// The offset last stored; -1 for none.
    stored: i64,
    /// The worker's rewind count when it was stored.
    rewinds_seen: u32,
    /// The offset last committed by a periodic commit; -1 for none.
    pub(crate) acked: i64,
}

impl Default for Committed {
    fn default() -> Self {
        Committed {
            stored: -1,
            rewinds_seen: 0,
            acked: -1,
        }
    }
}

/// One partition as the committer sees it.
pub(crate) struct Progress<'a> {
    pub(crate) topic: &'a str,
    pub(crate) partition: i32,
    pub(crate) shared: &'a PartitionShared,
    pub(crate) committed: &'a mut Committed,
}

/// Stores and commits the watermarks of one group's partitions.
#[derive(Debug)]
pub(crate) struct Committer {
    group: String,
    /// How often stored offsets are committed.
    interval: Duration,
    /// The limit of a final commit.
    timeout: Duration,
    /// Retries of a final commit, within the timeout.
    retry: RetrySchedule,
    periodic: Mutex<Periodic>,
}

/// The periodic commit's state.
#[derive(Debug)]
struct Periodic {
    /// When the last periodic commit was sent.
    last: Instant,
    /// The answer of the commit in flight.
    outstanding: Option<mpsc::Receiver<Answer>>,
    /// An offset was stored since the last commit was sent.
    dirty: bool,
}

/// The answer to a periodic commit.
struct Answer {
    offsets: TopicPartitionList,
    took: Duration,
    result: Result<(), KafkaError>,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answer")
            .field("took", &self.took)
            .field("result", &self.result)
            .finish_non_exhaustive()
    }
}

impl Committer {
    pub(crate) fn new(
        group: String,
        interval: Duration,
        timeout: Duration,
        retry: RetrySchedule,
    ) -> Self {
        Committer {
            group,
            interval,
            timeout,
            retry,
            periodic: Mutex::new(Periodic {
                last: Instant::now(),
                outstanding: None,
                dirty: false,
            }),
        }
    }

    fn periodic(&self) -> std::sync::MutexGuard<'_, Periodic> {
        self.periodic.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the answer of the periodic commit in flight, if it came, and
    /// sends the next one when it is due: every commit interval, when an
    /// offset was stored since the last one, one commit at a time. The
    /// commit runs on a thread of its own, so a slow coordinator never
    /// holds up the poll loop. A final commit waits for it first
    /// ([`settle`](Self::settle)), so it never lands after the final
    /// commit of the same partition and moves it back.
    pub(crate) fn commit_due<C: ConsumerContext + 'static>(
        &self,
        consumer: &Arc<BaseConsumer<C>>,
        assignment: &mut Assignment<C>,
        now: Instant,
        metrics: &GroupMetrics,
    ) {
        let mut p = self.periodic();
        if let Some(rx) = &p.outstanding {
            match rx.try_recv() {
                Ok(answer) => {
                    p.outstanding = None;
                    if answer.result.is_err() {
                        // What it would have committed is committed next time.
                        p.dirty = true;
                    }
                    self.answered(answer, assignment, metrics);
                }
                Err(mpsc::TryRecvError::Empty) => return,
                Err(mpsc::TryRecvError::Disconnected) => p.outstanding = None,
            }
        }
        if !p.dirty || now.duration_since(p.last) < self.interval {
            return;
        }
        p.last = now;
        p.dirty = false;
        let mut offsets = TopicPartitionList::new();
        for a in assignment.partitions.values() {
            let c = &a.committed;
            if c.stored >= 0 && c.stored != c.acked {
                let _ =
                    offsets.add_partition_offset(&a.topic, a.partition, Offset::Offset(c.stored));
            }
        }
        if offsets.count() == 0 {
            return;
        }
        let (tx, rx) = mpsc::channel();
        let c = consumer.clone();
        let spawned = std::thread::Builder::new()
            .name("commit".into())
            .spawn(move || {
                let sent = Instant::now();
                let result = c.commit(&offsets, CommitMode::Sync);
                let _ = tx.send(Answer {
                    offsets,
                    took: sent.elapsed(),
                    result,
                });
            });
        match spawned {
            Ok(_) => p.outstanding = Some(rx),
            Err(e) => {
                p.dirty = true;
                tracing::warn!(group = %self.group, error = %e, "cannot start the commit thread; committing at the next interval");
            }
        }
    }

    /// Waits (up to `timeout`) for the periodic commit in flight, if any,
    /// and notes its answer: a final commit made after this call is sent
    /// after it. Past the timeout the commit stays in flight (its answer is
    /// read later) and the stored offsets count as not committed.
    pub(crate) fn settle<C: ConsumerContext + 'static>(
        &self,
        assignment: &mut Assignment<C>,
        metrics: &GroupMetrics,
        timeout: Duration,
    ) {
        let mut p = self.periodic();
        let Some(rx) = p.outstanding.take() else {
            return;
        };
        match rx.recv_timeout(timeout) {
            Ok(answer) => {
                if answer.result.is_err() {
                    p.dirty = true;
                }
                drop(p);
                self.answered(answer, assignment, metrics);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                p.outstanding = Some(rx);
                p.dirty = true;
                tracing::warn!(group = %self.group, ?timeout, "the periodic commit did not finish within the drain time; committing the final offsets anyway");
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {}
        }
    }

    /// Notes the answer to a periodic commit.
    fn answered<C: ConsumerContext + 'static>(
        &self,
        answer: Answer,
        assignment: &mut Assignment<C>,
        metrics: &GroupMetrics,
    ) {
        metrics.commit_duration.record(answer.took.as_secs_f64());
        match answer.result {
            Ok(()) => {
                metrics.commits.increment(1);
                tracing::debug!(group = %self.group, offsets = %Listed(&answer.offsets), "offsets committed");
                for e in answer.offsets.elements() {
                    let Offset::Offset(o) = e.offset() else {
                        continue;
                    };
                    if let Some(p) = assignment
                        .partitions
                        .get_mut(&(Arc::from(e.topic()), e.partition()))
                    {
                        p.committed.acked = o;
                        metrics.committed(&p.topic, p.partition, o);
                    }
                }
            }
            Err(e) => {
                metrics.commit_failures.increment(1);
                tracing::warn!(group = %self.group, error = %e, took = ?answer.took, "periodic commit failed; the stored offsets are committed again at the next interval");
            }
        }
    }

    /// The offset a partition may commit now: its watermark or, when it
    /// holds no record at all, the consumer's position if that is further.
    /// Every record the partition was given is finished then, and every
    /// record polled was given to it, so nothing below the position is
    /// unfinished; the offsets in between hold no records for us
    /// (transaction markers, compacted records), and committing past them
    /// keeps the lag at zero. librdkafka's position is the offset after the
    /// last record it returned, or after a control record it consumed
    /// itself: it never moves ahead of records we have not seen.
    fn next(shared: &PartitionShared, position: Option<i64>) -> i64 {
        let watermark = shared.committable.load(Ordering::Acquire);
        match position {
            Some(position) if shared.backlog.records() == 0 => watermark.max(position),
            _ => watermark,
        }
    }

    /// Stores, for librdkafka's next periodic commit, the offsets that
    /// moved. Only forwards, except after the consumer rewound (see the
    /// offset tracker).
    pub(crate) fn store_progress<'a, C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        partitions: impl Iterator<Item = Progress<'a>>,
        positions: Option<&TopicPartitionList>,
    ) {
        let mut store = TopicPartitionList::new();
        for p in partitions {
            let position = positions
                .and_then(|l| l.find_partition(p.topic, p.partition))
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                });
            let next = Self::next(p.shared, position);
            let rewinds = p.shared.rewinds.load(Ordering::Acquire);
            let c = p.committed;
            let moved =
                next > c.stored || (rewinds != c.rewinds_seen && next >= 0 && next != c.stored);
            if moved
                && store
                    .add_partition_offset(p.topic, p.partition, Offset::Offset(next))
                    .is_ok()
            {
                c.stored = next;
                c.rewinds_seen = rewinds;
            }
        }
        if store.count() > 0 {
            self.periodic().dirty = true;
            if let Err(e) = consumer.store_offsets(&store) {
                tracing::debug!(group = %self.group, error = %e, "cannot store offsets (partition no longer assigned?)");
            }
        }
    }

    /// The offsets to commit for partitions being given up: what each
    /// would store now, and never below what was stored before (the idle
    /// position may be ahead of the watermark), except after a rewind.
    pub(crate) fn final_offsets<'a>(
        &self,
        partitions: impl Iterator<Item = Progress<'a>>,
    ) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            let watermark = Self::next(p.shared, None);
            let rewound = p.shared.rewinds.load(Ordering::Acquire) != p.committed.rewinds_seen;
            let next = if rewound {
                watermark
            } else {
                watermark.max(p.committed.stored)
            };
            if next >= 0 {
                if let Err(e) = tpl.add_partition_offset(p.topic, p.partition, Offset::Offset(next))
                {
                    tracing::error!(topic = p.topic, partition = p.partition, error = %e, "cannot build the commit list");
                }
            }
        }
        tpl
    }

    /// Stores `offsets` and commits them synchronously, retrying errors
    /// worth retrying, for at most the commit timeout. Returns whether the
    /// commit went through. Past the timeout the commit is abandoned (the
    /// call may finish in the background): the records after the last
    /// committed offset are delivered again, never lost.
    pub(crate) fn commit_final<C: ConsumerContext + 'static>(
        &self,
        consumer: &Arc<BaseConsumer<C>>,
        offsets: TopicPartitionList,
        why: &'static str,
        metrics: &GroupMetrics,
    ) -> bool {
        if offsets.count() == 0 {
            return true;
        }
        // librdkafka's own commit on unassign and close commits the stored
        // offsets, which must not be older than these.
        if let Err(e) = consumer.store_offsets(&offsets) {
            tracing::debug!(group = %self.group, error = %e, "cannot store the final offsets");
        }
        let deadline = Instant::now() + self.timeout;
        let (tx, rx) = std::sync::mpsc::channel();
        let (c, list, retry, group) = (
            consumer.clone(),
            offsets.clone(),
            self.retry,
            self.group.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name("commit".into())
            .spawn(move || {
                let mut attempt = 0;
                let result = loop {
                    attempt += 1;
                    let error = match c.commit(&list, CommitMode::Sync) {
                        Ok(()) => break Ok(()),
                        Err(e) => e,
                    };
                    let delay = retry
                        .delay_before(attempt)
                        .filter(|d| worth_retrying(&error) && Instant::now() + *d < deadline);
                    match delay {
                        Some(d) => {
                            tracing::warn!(group = %group, error = %error, attempt, retry_in = ?d, why, "synchronous commit failed; retrying");
                            std::thread::sleep(d);
                        }
                        None => break Err(error),
                    }
                };
                let _ = tx.send(result);
            });
        if let Err(e) = spawned {
            tracing::error!(group = %self.group, error = %e, why, "cannot start the commit thread; the records after the last committed offset will be delivered again");
            return false;
        }
        let sent = Instant::now();
        let answer = rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));
        if answer.is_ok() {
            metrics.commit_duration.record(sent.elapsed().as_secs_f64());
        }
        match answer {
            Ok(Ok(())) => {
                metrics.commits.increment(1);
                tracing::debug!(group = %self.group, offsets = %Listed(&offsets), why, "offsets committed");
                true
            }
            Ok(Err(e)) => {
                metrics.commit_failures.increment(1);
                tracing::error!(group = %self.group, error = %e, why, offsets = ?offsets, "could not commit; the records after the last committed offset will be delivered again (to this or another consumer)");
                false
            }
            Err(_) => {
                metrics.commit_failures.increment(1);
                tracing::warn!(group = %self.group, timeout = ?self.timeout, why, offsets = ?offsets, "gave up waiting for the commit after the commit timeout (is the group coordinator down?); the records after the last committed offset will be delivered again");
                false
            }
        }
    }
}

/// A commit list as `topic[partition]@offset,...`, formatted only when a
/// log line that shows it is enabled.
struct Listed<'a>(&'a TopicPartitionList);

impl std::fmt::Display for Listed<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.elements().iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match e.offset() {
                Offset::Offset(o) => write!(f, "{}[{}]@{o}", e.topic(), e.partition())?,
                other => write!(f, "{}[{}]@{other:?}", e.topic(), e.partition())?,
            }
        }
        Ok(())
    }
}

/// Whether a failed commit may succeed if tried again soon. A rebalance
/// in progress, a stale generation or membership, a fenced instance or a
/// coordinator that did not come back within librdkafka's own wait
/// (`__WAIT_COORD`) will not clear in time.
fn worth_retrying(e: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::CoordinatorLoadInProgress
                | C::CoordinatorNotAvailable
                | C::NotCoordinator
                | C::RequestTimedOut
                | C::NetworkException
                | C::OperationTimedOut
                | C::BrokerTransportFailure
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_errors_that_can_clear_are_retried() {
        let commit = |c| KafkaError::ConsumerCommit(c);
        assert!(worth_retrying(&commit(
            RDKafkaErrorCode::CoordinatorLoadInProgress
        )));
        for hopeless in [
            RDKafkaErrorCode::RebalanceInProgress,
            RDKafkaErrorCode::IllegalGeneration,
            RDKafkaErrorCode::UnknownMemberId,
            RDKafkaErrorCode::FencedInstanceId,
            RDKafkaErrorCode::WaitingForCoordinator,
            RDKafkaErrorCode::GroupAuthorizationFailed,
        ] {
            assert!(!worth_retrying(&commit(hopeless)), "{hopeless:?}");
        }
    }
}
