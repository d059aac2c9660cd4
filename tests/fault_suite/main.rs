//! The fault suite: what the dispatcher guarantees under crashes, broker
//! faults, rebalance storms, bad input, fatal errors, dead-letter outages
//! and shutdown under load, each scenario bounded in time and printing one
//! report row (scenario, broker, records, lost, duplicates, dead-lettered,
//! recovery time). Any loss fails the scenario.
//!
//! - `any_broker::*` run on the broker `KAFKA_BROKERS` names (a tansu
//!   process in CI, started by `scripts/with-tansu`) or, without it, on
//!   librdkafka's mock cluster (in a `test_broker` process for the
//!   scenarios with consumer processes, in-process for the others). Topic
//!   and group names are unique per run, so a broker can be reused.
//! - `embedded_only::*` inject faults through the embedded cluster's
//!   fault injection, which only it has.
//!
//! The scenarios run one at a time (they share two cores and measure
//! recovery times). Rows are appended to `target/fault-suite/report.md`
//! (or `$FAULT_REPORT`); `RELIABILITY.md` holds the latest table.
//!
//! ```text
//! cargo test -p dispatcher-tests --test fault_suite -- --nocapture
//! scripts/with-tansu cargo test -p dispatcher-tests --test fault_suite any_broker
//! ```

mod any_broker;
mod embedded_only;
mod report;
mod setup;
