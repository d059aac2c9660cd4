//! What operators see: Prometheus metrics, health checks, and a span per
//! record.
//!
//! # Metrics
//!
//! Set `metrics_address` (`DISPATCHER_METRICS_ADDRESS=127.0.0.1:9898`, or
//! `.metrics_address("9898")` on the builder; a port alone means
//! 127.0.0.1) and the dispatcher serves, on that address:
//!
//! - `/metrics`: every series below, in Prometheus text format;
//! - `/health/live`: 200 while the dispatcher runs;
//! - `/health/ready`: 200 once every consumer group has joined, while no
//!   partition is stalled; 503 with the reasons, one per line, while a
//!   group joins, a partition is stalled, the dispatcher drains for
//!   shutdown, or after a fatal error stopped it.
//!
//! The series go through the [`metrics`](https://docs.rs/metrics) facade:
//! a program that installs its own recorder (leaving `metrics_address`
//! unset) gets the same series in it. Consumer lag comes from librdkafka's
//! statistics: with the server on, `statistics.interval.ms` is 5000 unless
//! configured; with your own recorder, set it (`[kafka]` table).
//!
//! | series | type | labels | what it counts |
//! | --- | --- | --- | --- |
//! | `dispatcher_records_received_total` | counter | topic, handler | records taken from Kafka |
//! | `dispatcher_records_finished_total` | counter | topic, handler, outcome | records finished: `handled`, `dead_lettered`, or `fatal` (stopped the dispatcher, not committed) |
//! | `dispatcher_retries_total` | counter | topic, handler | failed attempts that will be retried |
//! | `dispatcher_handler_duration_seconds` | histogram | topic, handler | each handler attempt, successful or not |
//! | `dispatcher_records_in_flight` | gauge | topic, handler | records taken and not finished (waiting for their key or a slot, running, or waiting to retry) |
//! | `dispatcher_dead_letter_writes_total` | counter | topic, handler | dead letters the broker acknowledged |
//! | `dispatcher_dead_letter_write_failures_total` | counter | topic, handler | dead letters that could not be written after their retries (each stops the dispatcher, with the record uncommitted) |
//! | `dispatcher_commits_total` | counter | group | offset commits the coordinator acknowledged |
//! | `dispatcher_commit_failures_total` | counter | group | offset commits that failed (the offsets are committed again later, or the records delivered again) |
//! | `dispatcher_commit_duration_seconds` | histogram | group | from sending a commit to its answer |
//! | `dispatcher_rebalances_total` | counter | group, kind | rebalance callbacks: `assigned`, `revoked`, `lost` |
//! | `dispatcher_assigned_partitions` | gauge | group | partitions assigned to this consumer |
//! | `dispatcher_paused_partitions` | gauge | group | assigned partitions not read from because they hold `partition_buffer` records or bytes |
//! | `dispatcher_committed_offset` | gauge | group, topic, partition | the last offset committed (the next record to read) |
//! | `dispatcher_consumer_lag` | gauge | group, topic, partition | records between the committed offset and the end of the partition |
//! | `dispatcher_oldest_unfinished_age_seconds` | gauge | group, topic, partition | how long the partition's oldest unfinished record has held up its commits: since it arrived or since the record before it finished (0 when the partition holds none) |
//! | `dispatcher_partition_stalled` | gauge | group, topic, partition | 1 while that age exceeds `stall_timeout` |
//! | `dispatcher_ready` | gauge | | 1 while `/health/ready` answers 200 |
//!
//! Partition gauges are updated at least every second while the partition
//! is assigned; the server drops those not updated for 30 s, so partitions
//! that moved to another consumer disappear from this one's metrics.
//!
//! # Stalls
//!
//! A partition whose oldest unfinished record holds up its commits for
//! longer than `stall_timeout` (default 60 s; `DISPATCHER_STALL_TIMEOUT`)
//! is stalled: a warning names the topic, partition, offset, key, handler
//! and age, `dispatcher_partition_stalled` turns 1 and readiness turns off.
//! When the record finishes (or the partition is revoked) it recovers, with
//! a log line, and readiness comes back.
//!
//! # Spans
//!
//! Every handler attempt runs in an INFO span named `process`, target
//! [`RECORD_TARGET`] (`dispatcher::record`), with OpenTelemetry's messaging
//! attributes: `messaging.system`, `messaging.operation.type`,
//! `messaging.destination.name` (the topic),
//! `messaging.destination.partition.id`, `messaging.kafka.offset`,
//! `messaging.kafka.message.key`, `messaging.consumer.group.name`, plus
//! `handler` and `attempt`; `otel.name` is `process <topic>` and
//! `otel.kind` is `consumer`. A handler's own `tracing` events carry these
//! fields. With the `otel` feature and a `tracing-opentelemetry` layer in
//! the program, a record's W3C `traceparent` header becomes the parent of
//! its span, and dead letters and the records a handler publishes carry
//! the span's context in their `traceparent` header.

pub(crate) mod health;
pub(crate) mod metrics;
pub(crate) mod server;
pub(crate) mod trace;

pub use trace::RECORD_TARGET;
