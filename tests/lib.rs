//! Shared pieces of the end-to-end tests and the fault suite: child
//! processes that are always killed ([`process`]), a keyed producer
//! ([`produce`]), the checker of the handling log the `test_consumer`
//! processes write ([`log`]), what the broker and the processes say
//! ([`observe`]); and, for the TLS tests, a tansu broker process
//! ([`tansu`]) behind a TLS front with test-made certificates
//! ([`tls_front`]).

pub mod log;
pub mod observe;
pub mod process;
pub mod produce;
pub mod tansu;
pub mod tls_front;

pub use log::{
    caught_up, check, handled_all, read_log, records_by_pid, LogLine, ProcessFigures, Report,
};
pub use observe::{check_dead_letters, committed, committed_to, ends_of, scrape};
pub use process::{
    create_topics, external_brokers, start_broker, wait_for, ChildGuard, ConsumerConfig, Scenario,
    WorkDir,
};
pub use produce::{is_poison, key_name, poison_records, KeyedProducer};
