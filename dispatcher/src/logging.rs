//! A log subscriber for programs that set none (the `logging` feature, on
//! by default).
//!
//! `RUST_LOG` filters (default [`DEFAULT_FILTER`]); `DISPATCHER_LOG_FORMAT`
//! picks the format: `text` (default) or `json`, one JSON object per line.
//! Logging starts before the configuration is read, so the format is an
//! environment variable only.
//!
//! The span around every handler attempt (target `dispatcher::record`,
//! see [`telemetry`](crate::telemetry)) puts the record's topic,
//! partition, offset, key, handler and attempt on every event a handler
//! logs. A formatting subscriber writes those fields out for every record,
//! logged or not, which costs a few microseconds per record; so the
//! default filter leaves the spans out. `RUST_LOG=info` (or
//! `info,dispatcher::record=info`) puts them in.

use std::io::IsTerminal;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LogFormat {
    /// Human-readable lines, coloured on a terminal.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl LogFormat {
    /// The format `DISPATCHER_LOG_FORMAT` names (`text` or `json`, any
    /// case); `Text` when unset. An unknown value is an error naming the
    /// choices.
    pub fn from_env() -> Result<Self, String> {
        match std::env::var("DISPATCHER_LOG_FORMAT") {
            Err(_) => Ok(LogFormat::Text),
            Ok(v) => Self::parse(&v),
        }
    }

    fn parse(v: &str) -> Result<Self, String> {
        match v.trim().to_ascii_lowercase().as_str() {
            "" | "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!(
                "DISPATCHER_LOG_FORMAT={v:?} is not a log format; write text or json"
            )),
        }
    }
}

/// The filter when `RUST_LOG` is unset: INFO, without the spans of
/// records.
pub const DEFAULT_FILTER: &str = "info,dispatcher::record=off";

/// Installs a `tracing` subscriber printing to stderr in the format
/// `DISPATCHER_LOG_FORMAT` names, filtered by `RUST_LOG` (default
/// [`DEFAULT_FILTER`]), unless the program installed one already.
/// [`run`](crate::run) calls it.
pub fn init() {
    let format = LogFormat::from_env().unwrap_or_else(|e| {
        eprintln!("{e}; logging as text");
        LogFormat::Text
    });
    init_with(format);
}

/// Like [`init`], in `format`.
pub fn init_with(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .flatten_event(true)
            .try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::LogFormat;

    #[test]
    fn the_format_is_text_or_json_and_anything_else_names_the_choices() {
        assert_eq!(LogFormat::parse(" JSON "), Ok(LogFormat::Json));
        assert_eq!(LogFormat::parse("text"), Ok(LogFormat::Text));
        let e = LogFormat::parse("yaml").expect_err("not a format");
        assert!(
            e.contains("DISPATCHER_LOG_FORMAT") && e.contains("text or json"),
            "{e}"
        );
    }
}
