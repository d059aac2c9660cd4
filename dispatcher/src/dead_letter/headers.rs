//! The headers of a dead-letter record, and the limits on their size.
//!
//! A dead letter keeps the original key, payload and headers and adds the
//! `dlt.*` headers below. Each added value is at most
//! [`MAX_VALUE_BYTES`]; a longer one (a long error message or cause chain)
//! is cut at a character boundary and ends with [`TRUNCATED_MARKER`]. When
//! the record with its payload is too large for the dead-letter topic, it
//! is written without the payload and the original headers, with
//! [`PAYLOAD_OMITTED`] saying so; the `dlt.original.*` coordinates still
//! lead an operator to the original in the source topic. With the `otel`
//! feature and an OpenTelemetry layer, the `traceparent` (and
//! `tracestate`) header is the handler's span's, in the record's trace.

/// Topic the record was read from.
pub const ORIGINAL_TOPIC: &str = "dlt.original.topic";
/// Partition it was read from.
pub const ORIGINAL_PARTITION: &str = "dlt.original.partition";
/// Its offset there.
pub const ORIGINAL_OFFSET: &str = "dlt.original.offset";
/// Its timestamp (ms since the epoch), when it had one.
pub const ORIGINAL_TIMESTAMP: &str = "dlt.original.timestamp";
/// The consumer group that gave up on it.
pub const CONSUMER_GROUP: &str = "dlt.consumer.group";
/// The handler that failed.
pub const HANDLER: &str = "dlt.handler";
/// Why it was dead-lettered: `not-retryable`, `retries-exhausted` or `undecodable`.
pub const REASON: &str = "dlt.reason";
/// The kind of the outermost error: decode, timeout, panic, io or handler.
pub const ERROR_KIND: &str = "dlt.error.kind";
/// The Rust type the handler returned as its error.
pub const ERROR_TYPE: &str = "dlt.error.type";
/// The outermost error's message.
pub const ERROR_MESSAGE: &str = "dlt.error.message";
/// The whole cause chain, `outer: cause: root`, each cause once.
pub const ERROR_CHAIN: &str = "dlt.error.chain";
/// Attempts made.
pub const ATTEMPTS: &str = "dlt.attempts";
/// First failure time (ms since the epoch).
pub const FIRST_FAILURE: &str = "dlt.first.failure";
/// Last failure time (ms since the epoch).
pub const LAST_FAILURE: &str = "dlt.last.failure";
/// Present when the payload (and the original headers) were left out
/// because the record was too large: says how large, and where the
/// original is.
pub const PAYLOAD_OMITTED: &str = "dlt.payload.omitted";

/// On a record replayed from a dead-letter topic (by `dlq replay`):
/// `<dead-letter topic>/<partition>/<offset>` of the dead letter.
pub const REPLAYED_FROM: &str = "dlt.replayed.from";

/// Retry topics: the level the record was written to (1 for the first).
pub const RETRY_LEVEL: &str = "retry.level";
/// Retry topics: attempts made so far, at every level.
pub const RETRY_ATTEMPTS: &str = "retry.attempts";
/// Retry topics: when the record is due (ms since the epoch); it is not
/// handled before.
pub const RETRY_DUE: &str = "retry.due";
/// Retry topics: the topic the record was first read from.
pub const RETRY_ORIGINAL_TOPIC: &str = "retry.original.topic";
/// Retry topics: its partition there.
pub const RETRY_ORIGINAL_PARTITION: &str = "retry.original.partition";
/// Retry topics: its offset there.
pub const RETRY_ORIGINAL_OFFSET: &str = "retry.original.offset";
/// Retry topics: its timestamp there (ms since the epoch), when it had one.
pub const RETRY_ORIGINAL_TIMESTAMP: &str = "retry.original.timestamp";
/// Retry topics: when its first attempt failed (ms since the epoch).
pub const RETRY_FIRST_FAILURE: &str = "retry.first.failure";
/// Retry topics: the last attempt's error and cause chain.
pub const RETRY_LAST_ERROR: &str = "retry.last.error";

/// The largest value of an added `dlt.*` header, in bytes.
pub const MAX_VALUE_BYTES: usize = 8 * 1024;

/// How a cut header value ends.
pub const TRUNCATED_MARKER: &str = "…[truncated]";

/// `value`, cut to at most [`MAX_VALUE_BYTES`] at a character boundary
/// and marked when it was longer.
pub(crate) fn bounded(value: &str) -> std::borrow::Cow<'_, str> {
    if value.len() <= MAX_VALUE_BYTES {
        return value.into();
    }
    let mut end = MAX_VALUE_BYTES - TRUNCATED_MARKER.len();
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{TRUNCATED_MARKER}", &value[..end]).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut_and_marked() {
        assert_eq!(bounded("short"), "short");
        let long = "é".repeat(100_000);
        let cut = bounded(&long);
        assert!(cut.len() <= MAX_VALUE_BYTES, "{}", cut.len());
        assert!(cut.ends_with(TRUNCATED_MARKER));
        assert!(cut.starts_with("ééé"));
    }
}
