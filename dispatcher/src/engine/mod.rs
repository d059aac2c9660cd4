//! The engine: from Kafka to the handlers and back to committed offsets.
//!
//! One consumer group runs as one pipeline:
//!
//! ```text
//!                    poll.rs                        partition.rs              execute.rs
//! Kafka --fetch--> poll loop --records--> partition worker --records--> handler attempts
//!   ^       (one queue per partition,     (ordering lanes,    lanes.rs     (timeout, panic,
//!   |        taken only while its          in-flight caps)    limit.rs      classification,
//!   |        backlog has room)                  |                            backoff)
//!   |                  ^                        | finished offsets              |
//!   |                  | room                   v                               v
//!   |              backlog.rs             tracker.rs  <---- done --------  outcome.rs
//!   |                                    (watermark)                    (dead letters)
//!   |                                          |
//!   +------------- commit.rs <-- watermarks ---+
//!                  (stored every few ms, committed every interval,
//!                   and synchronously on revoke and shutdown)
//! ```
//!
//! - [`group`] wires one consumer group: the consumer, the dead-letter
//!   producer, the handlers, and the poll thread.
//! - [`poll`] owns the consumer on a thread of its own and never waits on a
//!   handler. Each assigned partition has its own librdkafka queue
//!   ([`assignment`]); the loop takes records from a partition only while
//!   its [`backlog`] has room, so a slow partition holds back only itself,
//!   and librdkafka stops prefetching it when its queue is full.
//! - [`context`] is the consumer's rdkafka context: rebalance callbacks run
//!   there, on the poll thread, and hand partitions to [`assignment`].
//! - [`partition`] runs one partition's records through its handler, in
//!   [`lanes`] by key (or partition, or none) within the [`limit`]s, and
//!   tracks which offsets are finished in its [`tracker`].
//! - [`execute`] is one record's life: attempts, timeout, panics,
//!   classification, backoff; [`outcome`] hands failures to the dead-letter
//!   sink and reports events.
//! - [`commit`] stores each partition's watermark for librdkafka's periodic
//!   commit, and commits synchronously, within a time limit, when
//!   partitions are revoked and at shutdown.
//! - [`client_errors`] watches errors of the Kafka client itself; [`stop`]
//!   is the run-wide stop signal and the first fatal error.

pub(crate) mod assignment;
pub(crate) mod backlog;
pub(crate) mod client_errors;
pub(crate) mod commit;
pub(crate) mod context;
pub(crate) mod convert;
pub(crate) mod execute;
pub(crate) mod group;
pub(crate) mod lanes;
pub(crate) mod limit;
pub(crate) mod outcome;
pub(crate) mod partition;
pub(crate) mod poll;
pub(crate) mod stop;
pub(crate) mod tracker;
