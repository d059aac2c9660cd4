//! The series the dispatcher records, through the `metrics` facade: into
//! the Prometheus recorder of the metrics server, or into the program's own
//! recorder. Handles are registered once per handler and topic, or per
//! partition assignment; the per-record path only adds to atomics.
//!
//! The server's recorder drops a gauge not set for a while (so that the
//! partitions another consumer took over disappear), and a handle to a
//! dropped gauge updates nothing. So every gauge here is either held by
//! whoever sets it at least every second (a partition worker), or looked
//! up afresh each time it is set.

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram, Unit};
use std::sync::Arc;

/// Records a consumer took from Kafka.
pub(crate) const RECORDS_RECEIVED: &str = "dispatcher_records_received_total";
/// Records finished, by outcome.
pub(crate) const RECORDS_FINISHED: &str = "dispatcher_records_finished_total";
/// Failed attempts that will be retried.
pub(crate) const RETRIES: &str = "dispatcher_retries_total";
/// The duration of each handler attempt.
pub(crate) const HANDLER_DURATION: &str = "dispatcher_handler_duration_seconds";
/// Records received and not finished.
pub(crate) const IN_FLIGHT: &str = "dispatcher_records_in_flight";
/// Dead letters the broker acknowledged.
pub(crate) const DEAD_LETTER_WRITES: &str = "dispatcher_dead_letter_writes_total";
/// Dead letters that could not be written.
pub(crate) const DEAD_LETTER_FAILURES: &str = "dispatcher_dead_letter_write_failures_total";
/// Offset commits acknowledged.
pub(crate) const COMMITS: &str = "dispatcher_commits_total";
/// Offset commits that failed.
pub(crate) const COMMIT_FAILURES: &str = "dispatcher_commit_failures_total";
/// How long a commit took.
pub(crate) const COMMIT_DURATION: &str = "dispatcher_commit_duration_seconds";
/// Rebalance callbacks, by kind.
pub(crate) const REBALANCES: &str = "dispatcher_rebalances_total";
/// Partitions assigned to the consumer.
pub(crate) const ASSIGNED: &str = "dispatcher_assigned_partitions";
/// Partitions not read from because their buffer is full.
pub(crate) const PAUSED: &str = "dispatcher_paused_partitions";
/// The committed offset of a partition.
pub(crate) const COMMITTED_OFFSET: &str = "dispatcher_committed_offset";
/// The consumer lag of a partition.
pub(crate) const LAG: &str = "dispatcher_consumer_lag";
/// How long a partition's oldest unfinished record has held up its commits.
pub(crate) const OLDEST_AGE: &str = "dispatcher_oldest_unfinished_age_seconds";
/// Whether a partition is stalled.
pub(crate) const STALLED: &str = "dispatcher_partition_stalled";
/// Whether the dispatcher is ready.
pub(crate) const READY: &str = "dispatcher_ready";

/// Histogram buckets for handler attempts and commits, in seconds.
pub(crate) const DURATION_BUCKETS: [f64; 16] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Describes every series to the recorder (help text and unit), once per
/// run.
pub(crate) fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        RECORDS_RECEIVED,
        Unit::Count,
        "Records taken from Kafka, by topic and handler."
    );
    describe_counter!(
        RECORDS_FINISHED,
        Unit::Count,
        "Records finished, by topic, handler and outcome (handled, dead_lettered, retry_topic, fatal)."
    );
    describe_counter!(
        RETRIES,
        Unit::Count,
        "Handler attempts that failed with a retryable error and will be retried."
    );
    describe_histogram!(
        HANDLER_DURATION,
        Unit::Seconds,
        "Duration of each handler attempt, successful or not."
    );
    describe_gauge!(
        IN_FLIGHT,
        Unit::Count,
        "Records taken from Kafka and not yet finished: waiting for their key, running, or waiting to retry."
    );
    describe_counter!(
        DEAD_LETTER_WRITES,
        Unit::Count,
        "Dead letters the broker acknowledged, by source topic and handler."
    );
    describe_counter!(
        DEAD_LETTER_FAILURES,
        Unit::Count,
        "Dead letters that could not be written after their retries (each stops the dispatcher)."
    );
    describe_counter!(
        COMMITS,
        Unit::Count,
        "Offset commits the group coordinator acknowledged."
    );
    describe_counter!(COMMIT_FAILURES, Unit::Count, "Offset commits that failed.");
    describe_histogram!(
        COMMIT_DURATION,
        Unit::Seconds,
        "Time from sending an offset commit to its answer."
    );
    describe_counter!(
        REBALANCES,
        Unit::Count,
        "Rebalance callbacks, by kind (assigned, revoked, lost)."
    );
    describe_gauge!(
        ASSIGNED,
        Unit::Count,
        "Partitions assigned to the consumer."
    );
    describe_gauge!(
        PAUSED,
        Unit::Count,
        "Assigned partitions not read from because they hold partition_buffer records or bytes."
    );
    describe_gauge!(
        COMMITTED_OFFSET,
        Unit::Count,
        "The last offset committed for the partition (the next record to read)."
    );
    describe_gauge!(
        LAG,
        Unit::Count,
        "Records between the partition's committed offset and its end (librdkafka statistics)."
    );
    describe_gauge!(
        OLDEST_AGE,
        Unit::Seconds,
        "How long the partition's oldest unfinished record has held up its commits (0 when it holds none)."
    );
    describe_gauge!(
        STALLED,
        Unit::Count,
        "1 while the partition's oldest unfinished record has held up its commits longer than stall_timeout."
    );
    describe_gauge!(READY, Unit::Count, "1 while /health/ready answers 200.");
}

/// The per-record series of one handler on one topic.
#[derive(Clone)]
pub(crate) struct RecordMetrics {
    pub(crate) received: Counter,
    pub(crate) handled: Counter,
    pub(crate) dead_lettered: Counter,
    /// Records written to a retry topic.
    pub(crate) retry_topic: Counter,
    pub(crate) fatal: Counter,
    pub(crate) retries: Counter,
    pub(crate) duration: Histogram,
    pub(crate) dead_letter_writes: Counter,
    pub(crate) dead_letter_failures: Counter,
}

impl RecordMetrics {
    /// Registers the series of `handler` on `topic`.
    pub(crate) fn new(topic: &Arc<str>, handler: &Arc<str>) -> Self {
        let (t, h) = (topic.to_string(), handler.to_string());
        let finished = |outcome: &'static str| counter!(RECORDS_FINISHED, "topic" => t.clone(), "handler" => h.clone(), "outcome" => outcome);
        RecordMetrics {
            received: counter!(RECORDS_RECEIVED, "topic" => t.clone(), "handler" => h.clone()),
            handled: finished("handled"),
            dead_lettered: finished("dead_lettered"),
            retry_topic: finished("retry_topic"),
            fatal: finished("fatal"),
            retries: counter!(RETRIES, "topic" => t.clone(), "handler" => h.clone()),
            duration: histogram!(HANDLER_DURATION, "topic" => t.clone(), "handler" => h.clone()),
            dead_letter_writes: counter!(DEAD_LETTER_WRITES, "topic" => t.clone(), "handler" => h.clone()),
            dead_letter_failures: counter!(DEAD_LETTER_FAILURES, "topic" => t, "handler" => h),
        }
    }

    /// Series that go nowhere, for unit tests.
    #[cfg(test)]
    pub(crate) fn none() -> Self {
        RecordMetrics {
            received: Counter::noop(),
            handled: Counter::noop(),
            dead_lettered: Counter::noop(),
            retry_topic: Counter::noop(),
            fatal: Counter::noop(),
            retries: Counter::noop(),
            duration: Histogram::noop(),
            dead_letter_writes: Counter::noop(),
            dead_letter_failures: Counter::noop(),
        }
    }
}

/// The series of one consumer group.
pub(crate) struct GroupMetrics {
    pub(crate) commits: Counter,
    pub(crate) commit_failures: Counter,
    pub(crate) commit_duration: Histogram,
    pub(crate) assigned: Gauge,
    pub(crate) paused: Gauge,
    group: String,
}

impl GroupMetrics {
    pub(crate) fn new(group: &str) -> Self {
        let g = group.to_owned();
        GroupMetrics {
            commits: counter!(COMMITS, "group" => g.clone()),
            commit_failures: counter!(COMMIT_FAILURES, "group" => g.clone()),
            commit_duration: histogram!(COMMIT_DURATION, "group" => g.clone()),
            assigned: gauge!(ASSIGNED, "group" => g.clone()),
            paused: gauge!(PAUSED, "group" => g.clone()),
            group: g,
        }
    }

    /// Counts a rebalance callback of `kind` (assigned, revoked, lost).
    pub(crate) fn rebalance(&self, kind: &'static str) {
        counter!(REBALANCES, "group" => self.group.clone(), "kind" => kind).increment(1);
    }

    fn partition_labels(&self, topic: &str, partition: i32) -> [(&'static str, String); 3] {
        [
            ("group", self.group.clone()),
            ("topic", topic.to_owned()),
            ("partition", partition.to_string()),
        ]
    }

    /// The gauges a partition's worker sets (every second).
    pub(crate) fn partition(
        &self,
        topic: &Arc<str>,
        partition: i32,
        handler: &Arc<str>,
    ) -> PartitionGauges {
        let labels = self.partition_labels(topic, partition);
        PartitionGauges {
            oldest_age: gauge!(OLDEST_AGE, &labels),
            stalled: gauge!(STALLED, &labels),
            in_flight: gauge!(IN_FLIGHT, "topic" => topic.to_string(), "handler" => handler.to_string()),
        }
    }

    /// Sets a partition's committed offset.
    pub(crate) fn committed(&self, topic: &str, partition: i32, offset: i64) {
        gauge!(COMMITTED_OFFSET, &self.partition_labels(topic, partition)).set(offset as f64);
    }

    /// Sets a partition's consumer lag.
    pub(crate) fn lag(&self, topic: &str, partition: i32, lag: i64) {
        gauge!(LAG, &self.partition_labels(topic, partition)).set(lag as f64);
    }
}

/// The gauges a partition's worker holds and sets at least every second.
#[derive(Clone)]
pub(crate) struct PartitionGauges {
    pub(crate) oldest_age: Gauge,
    pub(crate) stalled: Gauge,
    /// The records in flight of the partition's handler on its topic (all
    /// its partitions add to it).
    pub(crate) in_flight: Gauge,
}

impl PartitionGauges {
    /// Gauges that go nowhere, for unit tests.
    #[cfg(test)]
    pub(crate) fn none() -> Self {
        PartitionGauges {
            oldest_age: Gauge::noop(),
            stalled: Gauge::noop(),
            in_flight: Gauge::noop(),
        }
    }
}
