//! The layers configuration comes from, lowest first: the defaults, a TOML
//! file, the environment, the builder. `figment` merges them; each layer
//! remembers what it set, so that an error names the layer, and in a file
//! the line.

use super::model::{Model, DURATION_KEYS, HANDLER_KEYS};
use super::secret;
use super::ConfigError;
use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The environment variable with the path of the configuration file.
pub const ENV_CONFIG: &str = "DISPATCHER_CONFIG";

/// The file read from the working directory when `DISPATCHER_CONFIG` is
/// not set (it may be absent).
pub const DEFAULT_FILE: &str = "dispatcher.toml";

/// A key path in the model: `["handlers", "on_order", "topics"]`.
pub(crate) type KeyPath = Vec<String>;

/// The settings the environment sets directly, and their names there.
const ENV_SETTINGS: [(&str, &str); 20] = [
    ("KAFKA_BROKERS", "brokers"),
    ("KAFKA_GROUP_ID", "group_id"),
    ("KAFKA_CLIENT_ID", "client_id"),
    ("DISPATCHER_MAX_IN_FLIGHT", "max_in_flight"),
    ("DISPATCHER_PARTITION_BUFFER", "partition_buffer"),
    (
        "DISPATCHER_PARTITION_BUFFER_BYTES",
        "partition_buffer_bytes",
    ),
    ("DISPATCHER_POLL_BATCH", "poll_batch"),
    ("DISPATCHER_EMBEDDED_PARTITIONS", "embedded_partitions"),
    ("DISPATCHER_COMMIT_INTERVAL", "commit_interval"),
    ("DISPATCHER_COMMIT_TIMEOUT", "commit_timeout"),
    ("DISPATCHER_DRAIN_TIMEOUT", "drain_timeout"),
    ("DISPATCHER_ERROR_TIMEOUT", "error_timeout"),
    ("DISPATCHER_CREATE_TOPICS", "create_topics"),
    ("DISPATCHER_TOPIC_PARTITIONS", "topic_partitions"),
    ("DISPATCHER_TOPIC_REPLICATION", "topic_replication"),
    ("DISPATCHER_METRICS_ADDRESS", "metrics_address"),
    ("DISPATCHER_STALL_TIMEOUT", "stall_timeout"),
    ("DISPATCHER_BROKERS", "brokers"),
    ("DISPATCHER_GROUP_ID", "group_id"),
    ("DISPATCHER_CLIENT_ID", "client_id"),
];

/// Prefixes of librdkafka properties in the environment, and their table.
const ENV_KAFKA: [(&str, &str); 3] = [
    ("DISPATCHER_RDKAFKA_CONSUMER_", "consumer"),
    ("DISPATCHER_RDKAFKA_PRODUCER_", "producer"),
    ("DISPATCHER_RDKAFKA_", ""),
];

/// Handler tables in the environment: `DISPATCHER_HANDLERS__ON_ORDER__TOPICS`.
const ENV_HANDLERS: &str = "DISPATCHER_HANDLERS__";

/// One layer's values and, for each key it set, how to name it.
#[derive(Clone, Default)]
pub(crate) struct Layer {
    dict: Dict,
    /// Key path -> the name of the key in this layer: an environment
    /// variable, a builder method.
    names: BTreeMap<KeyPath, String>,
}

impl std::fmt::Debug for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut map = f.debug_map();
        for (path, name) in &self.names {
            let value = lookup(&self.dict, path)
                .map(|v| match v.as_str() {
                    Some(s) => secret::shown(path.last().map_or("", String::as_str), s).to_owned(),
                    None => format!("{v:?}"),
                })
                .unwrap_or_default();
            map.entry(name, &value);
        }
        map.finish()
    }
}

fn lookup<'a>(dict: &'a Dict, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let value = dict.get(first)?;
    if rest.is_empty() {
        return Some(value);
    }
    match value {
        Value::Dict(_, inner) => lookup(inner, rest),
        _ => None,
    }
}

impl Layer {
    /// Sets `path` to `value`, naming it `name` in error messages.
    pub(crate) fn set(&mut self, path: &[&str], value: Value, name: impl Into<String>) {
        let path: KeyPath = path.iter().map(|s| (*s).to_owned()).collect();
        let mut dict = &mut self.dict;
        for key in &path[..path.len() - 1] {
            let entry = dict
                .entry(key.clone())
                .or_insert_with(|| Value::from(Dict::new()));
            if !matches!(entry, Value::Dict(..)) {
                *entry = Value::from(Dict::new());
            }
            dict = match entry {
                Value::Dict(_, inner) => inner,
                _ => unreachable!("made a dictionary above"),
            };
        }
        dict.insert(path[path.len() - 1].clone(), value);
        self.names.insert(path, name.into());
    }

    /// Whether the layer set `path`.
    pub(crate) fn has(&self, path: &[String]) -> bool {
        lookup(&self.dict, path).is_some()
    }

    /// How this layer names `path`, if it set it.
    fn name_of(&self, path: &[String]) -> Option<&str> {
        self.names.get(path).map(String::as_str)
    }
}

/// A layer as a figment provider.
struct Provided {
    layer: Layer,
    name: &'static str,
}

impl Provider for Provided {
    fn metadata(&self) -> Metadata {
        let names = Arc::new(self.layer.names.clone());
        Metadata::named(self.name).interpolater(move |_, keys: &[&str]| {
            let path: KeyPath = keys.iter().map(|k| (*k).to_owned()).collect();
            names.get(&path).cloned().unwrap_or_else(|| keys.join("."))
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.layer.dict.clone()))
    }
}

/// A value from the environment: a number, a boolean, or text.
fn typed(key: &str, raw: &str) -> Value {
    let numeric = !DURATION_KEYS.contains(&key)
        && !matches!(
            key,
            "brokers" | "group_id" | "client_id" | "metrics_address"
        );
    if numeric {
        if let Ok(n) = raw.trim().parse::<u64>() {
            return Value::from(n);
        }
        if let Ok(b) = raw.trim().parse::<bool>() {
            return Value::from(b);
        }
    }
    Value::from(raw.to_owned())
}

/// Every environment variable name the dispatcher reads, for hints.
fn known_env_names() -> Vec<&'static str> {
    let mut names: Vec<&str> = ENV_SETTINGS.iter().map(|(e, _)| *e).collect();
    names.push(ENV_CONFIG);
    names
}

/// The environment layer: `KAFKA_BROKERS`, `KAFKA_GROUP_ID`,
/// `KAFKA_CLIENT_ID` and the `DISPATCHER_` variables. A `DISPATCHER_`
/// variable that means nothing is an error.
pub(crate) fn environment(
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Layer, ConfigError> {
    let mut layer = Layer::default();
    for (name, raw) in vars {
        if let Some((_, key)) = ENV_SETTINGS.iter().find(|(e, _)| *e == name) {
            layer.set(
                &[key],
                typed(key, &raw),
                format!("environment variable {name}"),
            );
            continue;
        }
        if !name.starts_with("DISPATCHER_") || name == ENV_CONFIG {
            continue;
        }
        if let Some((prefix, table)) = ENV_KAFKA.iter().find(|(p, _)| name.starts_with(p)) {
            let property = name[prefix.len()..].to_ascii_lowercase().replace('_', ".");
            let path: Vec<&str> = if table.is_empty() {
                vec!["kafka", &property]
            } else {
                vec!["kafka", table, &property]
            };
            layer.set(
                &path,
                Value::from(raw),
                format!("environment variable {name}"),
            );
            continue;
        }
        if let Some(rest) = name.strip_prefix(ENV_HANDLERS) {
            if let Some((handler, field)) = rest.split_once("__") {
                let (handler, field) = (handler.to_ascii_lowercase(), field.to_ascii_lowercase());
                if HANDLER_KEYS.contains(&field.as_str()) {
                    let value = match field.as_str() {
                        "concurrency" | "max_attempts" => typed(&field, &raw),
                        _ => Value::from(raw),
                    };
                    layer.set(
                        &["handlers", &handler, &field],
                        value,
                        format!("environment variable {name}"),
                    );
                    continue;
                }
                let hint = dispatcher_rules::suggest::hint(&field, HANDLER_KEYS);
                return Err(ConfigError::new(
                    &name,
                    "",
                    "the environment",
                    format!(
                        "a handler has no setting `{field}`{hint}; the settings are {}",
                        HANDLER_KEYS.join(", ")
                    ),
                ));
            }
        }
        let hint = dispatcher_rules::suggest::hint(&name, known_env_names());
        return Err(ConfigError::new(&name, "", "the environment", format!(
            "not a setting of the dispatcher{hint}; durations are written as \"10s\" (without _MS), librdkafka properties as DISPATCHER_RDKAFKA_<NAME>, handler settings as DISPATCHER_HANDLERS__<HANDLER>__<SETTING>"
        )));
    }
    Ok(layer)
}

/// The configuration file to read: the builder's, `DISPATCHER_CONFIG`, or
/// `dispatcher.toml` in the working directory when it exists. A file that
/// was named but cannot be read is an error.
pub(crate) fn file_to_read(
    explicit: Option<&Path>,
    env_config: Option<String>,
) -> Result<Option<PathBuf>, ConfigError> {
    let named = explicit
        .map(|p| {
            (
                p.to_path_buf(),
                "Dispatcher::builder().config_file(..)".to_owned(),
            )
        })
        .or_else(|| {
            env_config.map(|p| {
                (
                    PathBuf::from(p),
                    format!("environment variable {ENV_CONFIG}"),
                )
            })
        });
    match named {
        Some((path, origin)) => {
            if path.is_file() {
                Ok(Some(path))
            } else {
                Err(ConfigError::new(
                    "configuration file",
                    &path.display().to_string(),
                    &origin,
                    "the file does not exist or is not a file",
                ))
            }
        }
        None => Ok(Path::new(DEFAULT_FILE)
            .is_file()
            .then(|| PathBuf::from(DEFAULT_FILE))),
    }
}

/// The lines of a TOML file's keys, for error messages.
#[derive(Debug, Default)]
pub(crate) struct FileLines {
    path: PathBuf,
    lines: BTreeMap<KeyPath, usize>,
}

impl FileLines {
    fn read(path: &Path, text: &str) -> Self {
        let mut lines = BTreeMap::new();
        if let Ok(doc) = toml_edit::ImDocument::parse(text) {
            let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
            fn walk(
                table: &dyn toml_edit::TableLike,
                prefix: &mut KeyPath,
                lines: &mut BTreeMap<KeyPath, usize>,
                line_of: &dyn Fn(usize) -> usize,
            ) {
                for (key, item) in table.iter() {
                    prefix.push(key.to_owned());
                    if let Some(span) = table.key(key).and_then(toml_edit::Key::span) {
                        lines.insert(prefix.clone(), line_of(span.start));
                    }
                    if let Some(inner) = item.as_table_like() {
                        walk(inner, prefix, lines, line_of);
                    }
                    prefix.pop();
                }
            }
            walk(doc.as_table(), &mut Vec::new(), &mut lines, &line_of);
        }
        FileLines {
            path: path.to_path_buf(),
            lines,
        }
    }

    /// `path line N` for `key`, or the nearest enclosing key's line.
    fn locate(&self, key: &[String]) -> String {
        let mut key = key.to_vec();
        while !key.is_empty() {
            if let Some(line) = self.lines.get(&key) {
                return format!("{} line {line}", self.path.display());
            }
            key.pop();
        }
        self.path.display().to_string()
    }
}

/// The merged layers.
pub(crate) struct Layers {
    pub(crate) figment: Figment,
    file: Option<(Layer, FileLines)>,
    env: Layer,
    builder: Layer,
}

impl Layers {
    /// Reads the file (when there is one) and merges the layers.
    pub(crate) fn load(
        file: Option<&Path>,
        env: Layer,
        builder: Layer,
    ) -> Result<Self, ConfigError> {
        let mut figment = Figment::new();
        let mut file_layer = None;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::new(
                    "configuration file",
                    &path.display().to_string(),
                    "the file system",
                    format!("cannot read it: {e}"),
                )
            })?;
            let lines = FileLines::read(path, &text);
            let data = Toml::string(&text).data().map_err(|e| {
                ConfigError::new(
                    "configuration file",
                    &path.display().to_string(),
                    &path.display().to_string(),
                    format!("not valid TOML: {e}"),
                )
            })?;
            let dict = data.into_values().next().unwrap_or_default();
            let mut layer = Layer {
                dict,
                names: BTreeMap::new(),
            };
            name_all(&layer.dict.clone(), &mut Vec::new(), &mut layer.names);
            figment = figment.merge(Provided {
                layer: layer.clone(),
                name: "configuration file",
            });
            file_layer = Some((layer, lines));
        }
        figment = figment
            .merge(Provided {
                layer: env.clone(),
                name: "environment",
            })
            .merge(Provided {
                layer: builder.clone(),
                name: "Dispatcher::builder()",
            });
        Ok(Layers {
            figment,
            file: file_layer,
            env,
            builder,
        })
    }

    /// Where the value of `key` came from: the highest layer that set it.
    pub(crate) fn origin(&self, key: &[String]) -> String {
        if self.builder.has(key) {
            return self
                .builder
                .name_of(key)
                .unwrap_or("Dispatcher::builder()")
                .to_owned();
        }
        if self.env.has(key) {
            return self
                .env
                .name_of(key)
                .unwrap_or("the environment")
                .to_owned();
        }
        if let Some((layer, lines)) = &self.file {
            if layer.has(key) {
                return lines.locate(key);
            }
        }
        "the default".to_owned()
    }

    /// How the highest layer that set `key` names it: an environment
    /// variable, a builder method, or the key in the file.
    pub(crate) fn key_name(&self, key: &[String]) -> String {
        if !self.builder.has(key) && self.env.has(key) {
            if let Some(name) = self.env.name_of(key) {
                return name.trim_start_matches("environment variable ").to_owned();
            }
        }
        key.join(".")
    }

    /// The model, or the first error with its key, layer and a hint.
    pub(crate) fn extract(&self) -> Result<Model, ConfigError> {
        self.figment.extract::<Model>().map_err(|e| self.explain(e))
    }

    fn explain(&self, e: figment::Error) -> ConfigError {
        use figment::error::Kind;
        let e = e
            .into_iter()
            .next()
            .unwrap_or_else(|| figment::Error::from("invalid configuration".to_owned()));
        let mut path = e.path.clone();
        let reason = match &e.kind {
            Kind::UnknownField(field, expected) => {
                if path.last() != Some(field) {
                    path.push(field.clone());
                }
                let what = if path.first().is_some_and(|p| p == "handlers") {
                    "a handler table"
                } else {
                    "the configuration"
                };
                format!(
                    "{what} has no key `{field}`{}; the keys are {}",
                    dispatcher_rules::suggest::hint(field, expected.iter().copied()),
                    expected.join(", ")
                )
            }
            Kind::InvalidType(actual, expected) => {
                let key = path.last().map(String::as_str).unwrap_or("");
                if DURATION_KEYS.contains(&key) || key == "timeout" {
                    format!(
                        "a duration is written as text such as \"10s\" ({}), not {actual}",
                        dispatcher_rules::duration::ACCEPTED
                    )
                } else {
                    format!("expected {expected}, found {actual}")
                }
            }
            other => other.to_string(),
        };
        let value = lookup_merged(&self.figment, &path).unwrap_or_default();
        let key = path.last().map(String::as_str).unwrap_or("");
        ConfigError::new(
            &self.key_name(&path),
            secret::shown(key, &value),
            &self.origin(&path),
            reason,
        )
    }
}

/// The merged value at `path` as text, when it is a scalar.
fn lookup_merged(figment: &Figment, path: &[String]) -> Option<String> {
    let value = figment.find_value(&path.join(".")).ok()?;
    match value {
        Value::String(_, s) => Some(s),
        Value::Num(_, n) => n
            .to_u128()
            .map(|n| n.to_string())
            .or_else(|| n.to_f64().map(|f| f.to_string())),
        Value::Bool(_, b) => Some(b.to_string()),
        _ => None,
    }
}

/// Names every key of a file layer by its path.
fn name_all(dict: &Dict, prefix: &mut KeyPath, names: &mut BTreeMap<KeyPath, String>) {
    for (key, value) in dict {
        prefix.push(key.clone());
        names.insert(prefix.clone(), prefix.join("."));
        if let Value::Dict(_, inner) = value {
            name_all(inner, prefix, names);
        }
        prefix.pop();
    }
}
