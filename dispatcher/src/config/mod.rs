//! Configuration: where settings come from, and the error a bad one gives.
//!
//! Settings come in layers, lowest first:
//!
//! 1. the defaults;
//! 2. a TOML file: the path in `DISPATCHER_CONFIG`, or `dispatcher.toml` in
//!    the working directory when it exists (or
//!    [`DispatcherBuilder::config_file`](crate::DispatcherBuilder::config_file));
//! 3. the environment: `KAFKA_BROKERS`, `KAFKA_GROUP_ID`, `KAFKA_CLIENT_ID`
//!    and `DISPATCHER_<SETTING>`;
//! 4. the [`DispatcherBuilder`](crate::DispatcherBuilder).
//!
//! A higher layer wins, key by key. Durations are written as text
//! everywhere, as in the attribute: `"250ms"`, `"10s"`, `"5m"`.
//!
//! ```toml
//! brokers = "kafka-1:9092,kafka-2:9092"
//! group_id = "billing"
//! max_in_flight = 512
//! drain_timeout = "10s"
//!
//! [kafka]                      # librdkafka properties of every client
//! "security.protocol" = "SASL_SSL"
//! "sasl.mechanism" = "PLAIN"
//!
//! [kafka.consumer]             # of the consumers only
//! "fetch.wait.max.ms" = 10
//!
//! [kafka.producer]             # of the dead-letter producer only
//! "linger.ms" = 5
//!
//! [handlers.on_order]          # by handler name: overrides the attribute
//! topics = ["staging.orders"]
//! concurrency = 8
//! max_attempts = 5
//! backoff = { initial = "100ms", max = "10s" }
//! timeout = "30s"
//! ordering = "key"
//! dead_letter_topic = "staging.orders.DLT"
//! ```
//!
//! In the environment: `DISPATCHER_MAX_IN_FLIGHT=512`,
//! `DISPATCHER_DRAIN_TIMEOUT=10s`, `DISPATCHER_RDKAFKA_SECURITY_PROTOCOL=SSL`
//! (a property, dots written as underscores; `DISPATCHER_RDKAFKA_CONSUMER_`
//! and `DISPATCHER_RDKAFKA_PRODUCER_` for one kind of client),
//! `DISPATCHER_HANDLERS__ON_ORDER__TOPICS=staging.orders` (a handler
//! setting). An unknown key, also a misspelled handler name or a
//! `DISPATCHER_` variable that means nothing, stops startup with a
//! did-you-mean. Every error names the key, where its value came from (a
//! file and line, a variable, a builder method) and what is allowed; the
//! values of secret-bearing properties (passwords, client secrets, private
//! keys) are never shown.

mod layers;
mod model;
mod program;
pub(crate) mod secret;
mod settings;
#[cfg(test)]
mod tests;

pub(crate) use layers::{environment, file_to_read, Layer, Layers};
pub use layers::{DEFAULT_FILE, ENV_CONFIG};
pub(crate) use program::program_name;
pub(crate) use settings::{validate, Settings, TopicSetup};

use crate::policy::RetrySchedule;
use std::path::Path;

/// Environment variable with the bootstrap servers, e.g. `broker1:9092,broker2:9092`.
pub const ENV_BROKERS: &str = "KAFKA_BROKERS";
/// Environment variable with the consumer group id.
pub const ENV_GROUP_ID: &str = "KAFKA_GROUP_ID";
/// Environment variable with the client id.
pub const ENV_CLIENT_ID: &str = "KAFKA_CLIENT_ID";

/// A configuration value is invalid: the key, the value, where it came
/// from (a file and line, an environment variable, a builder method) and
/// what is allowed. The value of a secret-bearing key is never shown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {key}{} (from {origin}): {reason}", if value.is_empty() { String::new() } else { format!(" = {value:?}") })]
#[non_exhaustive]
pub struct ConfigError {
    /// The key, as its layer names it: `max_in_flight` in a file,
    /// `DISPATCHER_MAX_IN_FLIGHT` in the environment.
    pub key: String,
    /// The offending value (empty when there is none to show).
    pub value: String,
    /// Where the value came from.
    pub origin: String,
    /// What is wrong and how to fix it.
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(key: &str, value: &str, origin: &str, reason: impl Into<String>) -> Self {
        ConfigError {
            key: key.to_owned(),
            value: secret::shown(key, value).to_owned(),
            origin: origin.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Everything the builder adds to the configuration.
pub(crate) struct Inputs<'a> {
    /// The builder's layer.
    pub(crate) builder: Layer,
    /// Whether to read the environment (and the working directory's file).
    pub(crate) read_env: bool,
    /// A file named by the builder.
    pub(crate) file: Option<&'a Path>,
    /// Builder-only settings: dead-letter and commit retries.
    pub(crate) retries: (Option<RetrySchedule>, Option<RetrySchedule>),
}

/// Reads every layer and validates the result.
pub(crate) fn load(inputs: Inputs<'_>, program: &str) -> Result<Settings, ConfigError> {
    let vars: Vec<(String, String)> = if inputs.read_env {
        std::env::vars().collect()
    } else {
        Vec::new()
    };
    let env_config = vars
        .iter()
        .find(|(k, _)| k == ENV_CONFIG)
        .map(|(_, v)| v.clone());
    let env = environment(vars)?;
    let file = if inputs.read_env || inputs.file.is_some() {
        file_to_read(inputs.file, env_config)?
    } else {
        None
    };
    let layers = Layers::load(file.as_deref(), env, inputs.builder)?;
    let model = layers.extract()?;
    validate(model, &layers, program, inputs.retries)
}
