//! Configuration: the environment variables the dispatcher reads, and the
//! error a bad value gives.
//!
//! Settings come from the environment and from
//! [`DispatcherBuilder`](crate::DispatcherBuilder) (the builder wins). Every
//! value is validated at startup; a bad one stops `build()` with a
//! [`ConfigError`] naming the key, where the value came from and what is
//! allowed.

mod program;
mod raw;

pub(crate) use program::program_name;
pub(crate) use raw::{Field, Knob, RawConfig, Settings};

/// Environment variable with the bootstrap servers, e.g. `broker1:9092,broker2:9092`.
pub const ENV_BROKERS: &str = "KAFKA_BROKERS";
/// Environment variable with the consumer group id.
pub const ENV_GROUP_ID: &str = "KAFKA_GROUP_ID";
/// Environment variable with the client id.
pub const ENV_CLIENT_ID: &str = "KAFKA_CLIENT_ID";
/// Prefix of environment variables passed through to librdkafka:
/// `DISPATCHER_RDKAFKA_SECURITY_PROTOCOL=SSL` sets `security.protocol`.
pub const ENV_RDKAFKA_PREFIX: &str = "DISPATCHER_RDKAFKA_";

/// Environment variable with per-handler concurrency limits, overriding the
/// attribute's `concurrency`: `on_order=8,billing::on_refund=2` (a function
/// name or its `module::name`).
pub const ENV_HANDLER_CONCURRENCY: &str = "DISPATCHER_HANDLER_CONCURRENCY";

/// A configuration value is invalid: the key, the value, where it came
/// from (an environment variable or a builder method) and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {key} = {value:?} (from {origin}): {reason}")]
#[non_exhaustive]
pub struct ConfigError {
    /// The configuration key, e.g. `KAFKA_BROKERS` or `max_in_flight`.
    pub key: String,
    /// The offending value.
    pub value: String,
    /// Where the value came from: an environment variable or the builder.
    pub origin: String,
    /// What is wrong and how to fix it.
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(key: &str, value: &str, origin: &str, reason: impl Into<String>) -> Self {
        ConfigError {
            key: key.to_owned(),
            value: value.to_owned(),
            origin: origin.to_owned(),
            reason: reason.into(),
        }
    }
}
