//! Reading a dead letter's `dlt.*` headers back: for tools that list,
//! inspect and replay dead letters, and for tests.

use super::headers;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a dead letter's `dlt.*` headers say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetterInfo {
    /// The topic the record was read from.
    pub original_topic: String,
    /// Its partition there.
    pub original_partition: i32,
    /// Its offset there.
    pub original_offset: i64,
    /// Its timestamp (ms since the epoch), when it had one.
    pub original_timestamp: Option<i64>,
    /// The consumer group that gave up on it.
    pub consumer_group: String,
    /// The handler that failed (`module::function`).
    pub handler: String,
    /// Why: `not-retryable`, `retries-exhausted` or `undecodable`.
    pub reason: String,
    /// The kind of the outermost error: decode, timeout, panic, io or
    /// handler.
    pub error_kind: String,
    /// The Rust type of the handler's error.
    pub error_type: String,
    /// The outermost error's message.
    pub error_message: String,
    /// The whole cause chain.
    pub error_chain: String,
    /// Attempts made.
    pub attempts: u32,
    /// When the first attempt failed.
    pub first_failure: Option<SystemTime>,
    /// When the last attempt failed.
    pub last_failure: Option<SystemTime>,
    /// Set when the payload and the original headers were left out (the
    /// record was too large): how large, and where the original is.
    pub payload_omitted: Option<String>,
}

/// A record whose headers are not those of a dead letter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a dead letter: header {header} {problem}")]
pub struct NotADeadLetter {
    /// The header at fault.
    pub header: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl DeadLetterInfo {
    /// Reads the `dlt.*` headers of a record, given as (name, value) pairs
    /// in the order the record has them (the last of a repeated name
    /// wins). The coordinates of the original record are required; the
    /// rest is empty when missing.
    pub fn from_headers<'a, I>(headers: I) -> Result<Self, NotADeadLetter>
    where
        I: IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    {
        let all: Vec<(&str, Option<&[u8]>)> = headers.into_iter().collect();
        let text = |name: &'static str| -> Option<String> {
            all.iter()
                .rev()
                .find(|(n, _)| *n == name)
                .and_then(|(_, v)| *v)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        let required = |name: &'static str| {
            text(name).ok_or(NotADeadLetter {
                header: name,
                problem: "is missing".to_owned(),
            })
        };
        fn number<T: std::str::FromStr>(
            name: &'static str,
            value: String,
        ) -> Result<T, NotADeadLetter> {
            value.trim().parse().map_err(|_| NotADeadLetter {
                header: name,
                problem: format!("is {value:?}, not a number"),
            })
        }
        let millis = |name: &'static str| -> Result<Option<i64>, NotADeadLetter> {
            text(name).map(|v| number(name, v)).transpose()
        };
        let time = |name: &'static str| -> Result<Option<SystemTime>, NotADeadLetter> {
            Ok(millis(name)?.and_then(|ms| {
                u64::try_from(ms)
                    .ok()
                    .map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
            }))
        };
        Ok(DeadLetterInfo {
            original_topic: required(headers::ORIGINAL_TOPIC)?,
            original_partition: number(
                headers::ORIGINAL_PARTITION,
                required(headers::ORIGINAL_PARTITION)?,
            )?,
            original_offset: number(
                headers::ORIGINAL_OFFSET,
                required(headers::ORIGINAL_OFFSET)?,
            )?,
            original_timestamp: millis(headers::ORIGINAL_TIMESTAMP)?,
            consumer_group: text(headers::CONSUMER_GROUP).unwrap_or_default(),
            handler: text(headers::HANDLER).unwrap_or_default(),
            reason: text(headers::REASON).unwrap_or_default(),
            error_kind: text(headers::ERROR_KIND).unwrap_or_default(),
            error_type: text(headers::ERROR_TYPE).unwrap_or_default(),
            error_message: text(headers::ERROR_MESSAGE).unwrap_or_default(),
            error_chain: text(headers::ERROR_CHAIN).unwrap_or_default(),
            attempts: text(headers::ATTEMPTS)
                .map(|v| number(headers::ATTEMPTS, v))
                .transpose()?
                .unwrap_or(0),
            first_failure: time(headers::FIRST_FAILURE)?,
            last_failure: time(headers::LAST_FAILURE)?,
            payload_omitted: text(headers::PAYLOAD_OMITTED),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_writer_writes_and_names_a_missing_or_bad_header() {
        let h: Vec<(&str, Option<&[u8]>)> = vec![
            ("traceparent", Some(b"00-x".as_slice())),
            (headers::ORIGINAL_TOPIC, Some(b"orders".as_slice())),
            (headers::ORIGINAL_PARTITION, Some(b"3".as_slice())),
            (headers::ORIGINAL_OFFSET, Some(b"1041".as_slice())),
            (headers::HANDLER, Some(b"billing::on_order".as_slice())),
            (headers::REASON, Some(b"retries-exhausted".as_slice())),
            (headers::ATTEMPTS, Some(b"3".as_slice())),
            (headers::FIRST_FAILURE, Some(b"1700000000000".as_slice())),
        ];
        let info = DeadLetterInfo::from_headers(h.iter().copied()).expect("a dead letter");
        assert_eq!(
            (
                info.original_topic.as_str(),
                info.original_partition,
                info.original_offset,
                info.attempts
            ),
            ("orders", 3, 1041, 3)
        );
        assert_eq!(info.handler, "billing::on_order");
        assert_eq!(
            info.first_failure,
            Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_000))
        );
        assert_eq!(info.last_failure, None);
        let missing =
            DeadLetterInfo::from_headers(h[..2].iter().copied()).expect_err("no partition");
        assert_eq!(missing.header, headers::ORIGINAL_PARTITION);
        let mut bad = h.clone();
        bad.push((headers::ORIGINAL_OFFSET, Some(b"ten".as_slice())));
        let bad = DeadLetterInfo::from_headers(bad).expect_err("a word for an offset");
        assert!(
            bad.to_string().contains("dlt.original.offset is \"ten\""),
            "{bad}"
        );
    }
}
