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
//! The series, with their labels, are listed at the end of this page
//! (from `docs/metrics.md`).
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

#![doc = include_str!("../../../docs/metrics.md")]

pub(crate) mod health;
pub(crate) mod metrics;
pub(crate) mod server;
pub(crate) mod trace;

pub use trace::RECORD_TARGET;
