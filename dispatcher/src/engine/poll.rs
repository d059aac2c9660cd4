//! The poll loop of one consumer group: it owns the consumer on a thread of
//! its own, keeps polling at all times (rebalance callbacks run here), and
//! hands each partition's records to its worker while the partition's
//! backlog has room. It never waits on a handler.

use super::assignment::TopicPartition;
use super::client_errors::ErrorWatch;
use super::context::{progress, GroupConsumer, GroupContext};
use super::convert::Run;
use super::stop::Stop;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message as _};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often watermarks are stored and errors checked while records flow.
const MAINTAIN_EVERY: Duration = Duration::from_millis(5);

/// How often partitions that hold nothing check the consumer's position.
const POSITION_CHECK_EVERY: Duration = Duration::from_millis(200);

/// The longest the loop sleeps with nothing to do; librdkafka and the
/// workers wake it earlier when there is.
const IDLE_SLEEP: Duration = Duration::from_millis(100);

/// How often the group's gauges are set.
const GAUGES_EVERY: Duration = Duration::from_secs(1);

/// Events taken from the consumer queue per pass.
const EVENTS_PER_PASS: usize = 64;

/// Runs until `stop`, then drains and commits. Returns the consumer:
/// dropping it leaves the group, which may take long when the brokers are
/// down, so the caller decides how long to wait for that.
pub(crate) fn run(
    consumer: Arc<GroupConsumer>,
    stop: Arc<Stop>,
    error_timeout: Duration,
) -> Arc<GroupConsumer> {
    let ctx = consumer.context().clone();
    ctx.waker.register_current();
    let mut errors = ErrorWatch::new(ctx.options.group.clone(), error_timeout);
    let mut last_maintain = Instant::now();
    let mut last_position_check = Instant::now();
    let mut last_gauges = Instant::now();
    while !stop.is_stopping() {
        let mut busy = false;
        let mut failures: Vec<KafkaError> = Vec::new();
        // Rebalances, errors and commit results arrive on the consumer
        // queue, and records of partitions that have no queue of their own.
        for _ in 0..EVENTS_PER_PASS {
            match consumer.poll(Duration::ZERO) {
                None => break,
                Some(Ok(m)) => {
                    busy = true;
                    route_unsplit(&ctx, m);
                }
                Some(Err(e)) => {
                    busy = true;
                    failures.push(e);
                }
            }
        }
        let taken = take_records(&ctx, &mut failures);
        if taken > 0 {
            busy = true;
            errors.progressed();
        }
        let now = Instant::now();
        for e in failures {
            if let Some(fatal) = errors.observe(e, now, || consumer.client().fatal_error()) {
                stop.fatal(fatal);
            }
        }
        if now.duration_since(last_maintain) >= MAINTAIN_EVERY {
            let check_positions = now.duration_since(last_position_check) >= POSITION_CHECK_EVERY;
            store_progress(&consumer, check_positions);
            if check_positions {
                last_position_check = now;
            }
            ctx.committer
                .commit_due(&consumer, &mut ctx.assignment(), now, &ctx.metrics);
            if let Some(stuck) = errors.check(now) {
                stop.fatal(stuck);
            }
            if now.duration_since(last_gauges) >= GAUGES_EVERY {
                ctx.refresh_gauges();
                last_gauges = now;
            }
            last_maintain = now;
        }
        if !busy {
            // Sleep until librdkafka has something (a partition queue or
            // the consumer queue became non-empty), a full partition has
            // room again, or it is time to store progress.
            let holding = ctx.assignment().holds_records();
            std::thread::park_timeout(if holding { MAINTAIN_EVERY } else { IDLE_SLEEP });
        }
    }
    shut_down(&consumer);
    consumer
}

/// Takes records from every partition queue that has some, up to each
/// partition's room, and hands them to the workers. Returns how many.
fn take_records(ctx: &GroupContext, failures: &mut Vec<KafkaError>) -> usize {
    let batch_limit = ctx.options.poll_batch;
    let mut taken = 0;
    let mut assignment = ctx.assignment();
    for p in assignment.partitions.values_mut() {
        let Some(queue) = &p.queue else { continue };
        if !p.more && !p.ready.swap(false, Ordering::AcqRel) {
            continue;
        }
        let Some(room) = p.worker.shared.backlog.room() else {
            // Full: librdkafka keeps the records (and stops prefetching
            // once its queue is full) until the worker makes room.
            p.more = true;
            if p.worker.shared.backlog.wait_for_room() {
                ctx.waker.wake();
            }
            continue;
        };
        let limit = room.records.min(batch_limit);
        let mut run = Run::new(&p.topic, p.partition);
        p.more = false;
        while run.len() < limit && run.bytes() < room.bytes {
            match queue.poll(Duration::ZERO) {
                Some(Ok(m)) => run.push(&m),
                Some(Err(e)) => failures.push(e),
                None => break,
            }
            if run.len() == limit || run.bytes() >= room.bytes {
                p.more = true;
            }
        }
        if run.len() == 0 {
            continue;
        }
        taken += run.len();
        if !p.worker.send(run.finish()) {
            tracing::error!(topic = &*p.topic, partition = p.partition, "partition worker is gone; its records will be delivered again after the next rebalance");
        }
    }
    taken
}

/// A record that arrived on the consumer queue: its partition has no queue
/// of its own (librdkafka would not split it off).
fn route_unsplit(ctx: &GroupContext, m: BorrowedMessage<'_>) {
    let tp: TopicPartition = (Arc::from(m.topic()), m.partition());
    let assignment = ctx.assignment();
    let Some(p) = assignment.partitions.get(&tp) else {
        tracing::error!(
            topic = m.topic(),
            partition = m.partition(),
            offset = m.offset(),
            "received a record of a partition that is not assigned; ignoring it"
        );
        return;
    };
    let mut run = Run::new(&tp.0, tp.1);
    run.push(&m);
    drop(m);
    p.worker.send(run.finish());
}

/// Stores the watermarks that moved.
fn store_progress(consumer: &GroupConsumer, check_positions: bool) {
    let ctx = consumer.context();
    let mut assignment = ctx.assignment();
    let positions = if check_positions
        && assignment
            .partitions
            .values()
            .any(|p| p.worker.shared.backlog.records() == 0)
    {
        consumer.position().ok()
    } else {
        None
    };
    ctx.committer.store_progress(
        consumer,
        assignment.partitions.values_mut().map(progress),
        positions.as_ref(),
    );
}

/// Stops taking records, drains every partition and commits it (bounded
/// by the drain and commit timeouts). Dropping the consumer afterwards
/// leaves the group.
fn shut_down(consumer: &GroupConsumer) {
    let ctx = consumer.context();
    tracing::info!(group = %ctx.options.group, "stopping: draining in-flight records and committing");
    let all: Vec<TopicPartition> = ctx.assignment().partitions.keys().cloned().collect();
    ctx.revoke(consumer, &all, "shutdown");
}
