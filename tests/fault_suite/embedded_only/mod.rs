//! Scenarios that need the embedded cluster's fault injection: errors on
//! chosen requests, brokers down and up, latency.

mod broker_faults;
mod common;
mod dead_letter_outage;
