//! Scenarios that run on whichever broker `KAFKA_BROKERS` names (the
//! embedded cluster without it).

mod bad_input;
mod crash_loop;
mod fatal_keyed;
mod rebalance_storm;
mod shutdown_load;
