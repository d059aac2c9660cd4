//! Scenario 4, bad input: a `Json<T>` handler's topic receives every kind
//! of record a producer can send that the handler cannot, or can barely,
//! take: invalid JSON, JSON of the wrong shape, an empty payload, a
//! tombstone, `null` as JSON, random bytes, text that is not UTF-8, a null
//! key, an empty key, a key that is not UTF-8, header values that are not
//! UTF-8, records of about 900 KB (one valid, one not; the producer's
//! `message.max.bytes` is librdkafka's default of 1,000,000 bytes, and
//! both brokers take what it sends), and a valid record whose handler fails
//! with a 1 MB error message — between valid records, on every partition.
//!
//! It proves that
//! - every record is handled or dead-lettered, once: the undecodable ones
//!   without reaching the handler, the failing one after one attempt (its
//!   error is not retryable), nothing retried, nothing fatal;
//! - each dead letter names its source partition and offset
//!   (`dlt.original.*`), keeps the key, the payload and the non-UTF-8 header
//!   bytes as read, and carries the 1 MB error cut to the header limit;
//! - the consumer neither stalls nor crash-loops: the valid records after
//!   the bad ones are handled, the committed offsets reach the ends computed
//!   from what each publish returned, a record published after all that is
//!   handled too, and `run()` is still running until the shutdown, which
//!   it answers with `Ok`.
//!
//! The payload type is a tuple, `Json<(u64, String)>` (a JSON array like
//! `[7, "ok"]`), because the tests crate does not depend on serde.

use crate::report::Row;
use crate::setup;
use dispatcher::dead_letter::headers as h;
use dispatcher::event::Outcome;
use dispatcher::extract::State;
use dispatcher::testing::{ReadRecord, TestKit};
use dispatcher::{Json, Message};
use dispatcher_tests::{committed_to, ends_of};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The topic in the handler's attribute; each run reads a unique topic
/// instead (`handler_topics`).
const ATTRIBUTE_TOPIC: &str = "fs-bad-input";
/// The handler's name, for `handler_topics`.
const HANDLER: &str = "fs_bad_input";
/// Partitions of the topic and of its dead-letter topic.
const PARTITIONS: i32 = 4;
/// How long any one wait may take (tansu's group joins take seconds).
const WAIT: Duration = Duration::from_secs(60);
/// The size of the large records: under the producer's `message.max.bytes`
/// (1,000,000) with room for the record's overhead, and under the
/// consumer's `max.partition.fetch.bytes` (1 MiB).
const LARGE: usize = 900_000;
/// The size of the error message of the record the handler rejects.
const LONG_ERROR: usize = 1 << 20;
/// The second field of a record the handler fails.
const REJECT: &str = "reject";

/// The error of the record the handler rejects: its message is 1 MB.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Rejected(String);

/// The (partition, offset) of every record the handler ran on, in order.
#[derive(Default, Clone)]
struct Seen(Arc<Mutex<Vec<(i32, i64)>>>);

impl Seen {
    fn all(&self) -> Vec<(i32, i64)> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Takes any `[number, text]` array; fails the records whose text is
/// [`REJECT`] with a 1 MB error message (not retryable: no `retry` list).
#[dispatcher::kafka_handler(topic = "fs-bad-input")]
async fn fs_bad_input(
    record: Json<(u64, String)>,
    msg: &Message,
    seen: State<Seen>,
) -> Result<(), Rejected> {
    let (id, text) = &*record;
    seen.0
         .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push((msg.partition(), msg.offset()));
    if text == REJECT {
        let detail = "the order was rejected by a very talkative validator; ".repeat(
            LONG_ERROR / "the order was rejected by a very talkative validator; ".len() + 1,
        );
        return Err(Rejected(format!("record {} rejected: {detail}", id)));
    }
    Ok(())
}

/// What should become of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The handler takes it.
    Handled,
    /// Undecodable: dead-lettered without reaching the handler.
    Undecodable,
    /// The handler fails it with a non-retryable error: dead-lettered
    /// after one attempt.
    NotRetryable,
}

/// One record to publish.
struct Case {
    /// What it is, for messages.
    what: String,
    /// Its partition (`None`: the partitioner's choice).
    partition: Option<i32>,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    headers: Vec<(&'static str, Vec<u8>)>,
    expect: Expect,
}

impl Case {
    fn new(what: impl Into<String>, key: Option<&[u8]>, payload: Option<&[u8]>) -> Case {
        Case {
            what: what.into(),
            partition: None,
            key: key.map(<[u8]>::to_vec),
            payload: payload.map(<[u8]>::to_vec),
            headers: Vec::new(),
            expect: Expect::Undecodable,
        }
    }

    fn valid(what: impl Into<String>, key: Option<&[u8]>, id: u64) -> Case {
        let payload = format!("[{id}, \"ok\"]");
        Case::new(what, key, Some(payload.as_bytes())).expecting(Expect::Handled)
    }

    fn expecting(mut self, expect: Expect) -> Case {
        self.expect = expect;
        self
    }

    fn header(mut self, name: &'static str, value: &[u8]) -> Case {
        self.headers.push((name, value.to_vec()));
        self
    }

    fn on(mut self, partition: i32) -> Case {
        self.partition = Some(partition);
        self
    }
}

/// Deterministic pseudo-random bytes (xorshift64*), so a failure can be
/// replayed.
fn random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// A header value that is not UTF-8.
const NOT_UTF8: &[u8] = &[0xff, 0xfe, 0x00, 0xc3, 0x28, 0x80];

/// The records of the scenario, bad ones between valid ones, then valid
/// records on every partition.
fn cases() -> Vec<Case> {
    let random = random_bytes(0x5eed_0004, 4096);
    assert!(
        std::str::from_utf8(&random).is_err(),
        "the random payload is not even text"
    );
    let large_valid = format!("[8, \"{}\"]", "v".repeat(LARGE - 10));
    let mut large_invalid = b"{\"id\": 9, \"blob\": ".to_vec();
    large_invalid.resize(LARGE, b'x');
    let key = |i: usize| format!("k{}", i % 3).into_bytes();
    let mut out = vec![
        Case::valid("valid record", Some(&key(0)), 1),
        Case::new("invalid JSON", Some(&key(1)), Some(br#"{"id": 2, "#)),
        Case::new(
            "JSON of the wrong shape",
            Some(&key(2)),
            Some(br#"{"id": 3}"#),
        ),
        Case::new("JSON null", Some(&key(0)), Some(b"null")),
        Case::new("empty payload", Some(&key(1)), Some(b"")),
        Case::new("tombstone (null payload)", Some(&key(2)), None),
        Case::valid("valid record after the tombstone", Some(&key(2)), 4),
        Case::valid("valid record with a null key", None, 5),
        Case::valid("valid record with an empty key", Some(b""), 6),
        Case::new("invalid JSON with a null key", None, Some(b"[7, ok]")),
        Case::new("invalid JSON with an empty key", Some(b""), Some(b"nope")),
        Case::new(
            "a ~900 KB valid record",
            Some(&key(0)),
            Some(large_valid.as_bytes()),
        )
        .expecting(Expect::Handled),
        Case::new(
            "a ~900 KB invalid record",
            Some(&key(1)),
            Some(&large_invalid),
        ),
        Case::valid(
            "valid record with non-UTF-8 header values",
            Some(&key(2)),
            10,
        )
        .header("binary", NOT_UTF8)
        .header("trace-id", b"abc-123"),
        Case::new(
            "invalid JSON with non-UTF-8 header values",
            Some(&key(0)),
            Some(b"{]"),
        )
        .header("binary", NOT_UTF8),
        Case::new("random bytes", Some(&key(1)), Some(&random)),
        Case::new(
            "a JSON string that is not UTF-8",
            Some(&key(2)),
            Some(b"[11, \"\xff\xfe\"]"),
        ),
        Case::valid("valid record with a non-UTF-8 key", Some(NOT_UTF8), 12),
        Case::new(
            "a valid record the handler fails with a 1 MB error",
            Some(&key(0)),
            Some(format!("[13, \"{REJECT}\"]").as_bytes()),
        )
        .expecting(Expect::NotRetryable),
        Case::valid("valid record after the failing one", Some(&key(0)), 14),
    ];
    // The same bad records again on a partition of their own choice, so
    // every partition sees bad input followed by good.
    for p in 0..PARTITIONS {
        out.push(
            Case::new(
                format!("invalid JSON on partition {p}"),
                Some(b"x"),
                Some(b"{"),
            )
            .on(p),
        );
        out.push(Case::new(format!("tombstone on partition {p}"), Some(b"x"), None).on(p));
    }
    for p in 0..PARTITIONS {
        for i in 0..3 {
            out.push(
                Case::valid(
                    format!("valid record {i} after the bad ones on partition {p}"),
                    Some(&key(i)),
                    100 + u64::try_from(p).unwrap_or(0) * 10 + i as u64,
                )
                .on(p),
            );
        }
    }
    out
}

/// A published record: its case and where it landed.
struct Published {
    case: Case,
    partition: i32,
    offset: i64,
}

/// The final outcomes of a record's events (handled or dead-lettered; a
/// record finished twice was delivered twice).
fn finals(events: &[Outcome]) -> Vec<&Outcome> {
    events.iter().filter(|e| e.is_final()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input() {
    let _one = setup::one_at_a_time().await;
    let started = Instant::now();
    let topic = setup::unique("fs-bad-input");
    let seen = Seen::default();
    let mut builder = TestKit::builder()
        .topics([ATTRIBUTE_TOPIC])
        .handler_topics(HANDLER, [topic.clone()])
        .embedded_partitions(PARTITIONS)
        .state(seen.clone());
    if setup::external().is_some() {
        builder = builder.create_topics(PARTITIONS, 1);
    }
    let kit = TestKit::start(builder).await.expect("start the test kit");

    // Publish everything; the ends come from what each publish returned.
    let mut published = Vec::new();
    for case in cases() {
        let headers: Vec<(&str, &[u8])> = case
            .headers
            .iter()
            .map(|(n, v)| (*n, v.as_slice()))
            .collect();
        let (partition, offset) = kit
            .producer()
            .send(
                &topic,
                case.partition,
                case.key.as_deref(),
                case.payload.as_deref(),
                &headers,
            )
            .await
            .unwrap_or_else(|e| panic!("publish {}: {e}", case.what));
        published.push(Published {
            case,
            partition,
            offset,
        });
    }
    let ends = |published: &[Published]| ends_of(published.iter().map(|r| (r.partition, r.offset)));
    assert_eq!(
        ends(&published).len(),
        PARTITIONS as usize,
        "every partition has records"
    );

    // Every record reaches a final outcome.
    let all_final = kit
        .wait_until("a final outcome of every record", WAIT, |k| {
            published
                .iter()
                .all(|r| !finals(&k.events(&topic, r.partition, r.offset)).is_empty())
        })
        .await;

    // The dead letters, read back.
    let expected_dead: Vec<&Published> = published
        .iter()
        .filter(|r| r.case.expect != Expect::Handled)
        .collect();
    let dlt = format!("{topic}.DLT");
    let letters = kit
        .dead_letters(&dlt, expected_dead.len(), WAIT)
        .await
        .unwrap_or_else(|e| {
            eprintln!("fault-suite bad input: reading {dlt}: {e}");
            Vec::new()
        });
    // Nothing written twice: the topic holds no more dead letters than
    // that (every write was acknowledged before its outcome was reported).
    let extra = !letters.is_empty()
        && kit
            .read(&dlt, expected_dead.len() + 1, Duration::from_secs(3))
            .await
            .is_ok();
    let mut letter_of: BTreeMap<(i32, i64), Vec<&ReadRecord>> = BTreeMap::new();
    for (record, info) in &letters {
        assert_eq!(info.original_topic, topic, "a dead letter of this topic");
        letter_of
            .entry((info.original_partition, info.original_offset))
            .or_default()
            .push(record);
    }

    // The committed offsets reach the ends; then one more record after all
    // that proves the consumer still runs, and is committed too.
    let (committed_bad, reached) = committed_to(&kit, &topic, &ends(&published), WAIT).await;
    let ends_bad = ends(&published);
    let (p, o) = kit
        .publish(&topic, Some("last"), "[99, \"ok\"]")
        .await
        .expect("publish the last record");
    published.push(Published {
        case: Case::valid("the last record, after all the others", Some(b"last"), 99),
        partition: p,
        offset: o,
    });
    let last = kit.outcome(&topic, p, o, WAIT).await;
    let (committed, reached_last) = committed_to(&kit, &topic, &ends(&published), WAIT).await;
    let events: Vec<Vec<Outcome>> = published
        .iter()
        .map(|r| kit.events(&topic, r.partition, r.offset))
        .collect();
    let stopped = kit.shutdown().await;
    let handler_saw = seen.all();

    // The row: counted before the assertions, so a failing run still
    // reports what it found.
    let mut lost = 0u64;
    let mut duplicates = 0u64;
    for (r, evs) in published.iter().zip(&events) {
        let finished = finals(evs);
        let dead_lettered = finished
            .iter()
            .any(|e| matches!(e, Outcome::DeadLettered { .. }));
        let handled = finished
            .iter()
            .any(|e| matches!(e, Outcome::Handled { .. }));
        let letter = letter_of.contains_key(&(r.partition, r.offset));
        if !(handled || dead_lettered && letter) {
            lost += 1;
        }
        let times = finished.len()
            + letter_of
                .get(&(r.partition, r.offset))
                .map_or(0, |l| l.len().saturating_sub(1));
        duplicates += u64::try_from(times.saturating_sub(1)).unwrap_or(0);
    }
    duplicates += u64::from(extra);
    let largest = published
        .iter()
        .filter_map(|r| r.case.payload.as_ref().map(Vec::len))
        .max()
        .unwrap_or(0);
    let large_letter_whole = published
        .iter()
        .filter(|r| r.case.payload.as_ref().is_some_and(|p| p.len() >= LARGE))
        .filter_map(|r| letter_of.get(&(r.partition, r.offset)))
        .flatten()
        .all(|l| l.header(h::PAYLOAD_OMITTED).is_none());
    let error_header_len = published
        .iter()
        .filter(|r| r.case.expect == Expect::NotRetryable)
        .filter_map(|r| letter_of.get(&(r.partition, r.offset)))
        .flatten()
        .filter_map(|l| l.header(h::ERROR_MESSAGE))
        .map(|m| m.len())
        .max()
        .unwrap_or(0);
    let bad = published
        .iter()
        .filter(|r| r.case.expect != Expect::Handled)
        .count();
    Row {
        scenario: "4. bad input".to_owned(),
        broker: setup::broker_name(),
        records: published.len() as u64,
        lost,
        duplicates,
        dead_lettered: letter_of.len() as u64,
        recovery: None,
        notes: format!(
            "{bad} bad records (12 kinds) among {} valid ones (null, empty and non-UTF-8 keys, non-UTF-8 headers, 900 KB) on {PARTITIONS} partitions; largest payload {largest} B, its dead letter {}; 1 MiB error message cut to {} B; handler ran {} times; {}; run() answered the shutdown with {}; {:.1} s",
            published.len() - bad,
            if large_letter_whole { "whole" } else { "without payload" },
            error_header_len,
            handler_saw.len(),
            if reached && reached_last {
                "committed to the ends"
            } else {
                "NOT committed to the ends"
            },
            if stopped.is_ok() { "Ok" } else { "an error" },
            started.elapsed().as_secs_f64()
        ),
    }
    .emit();

    // Then what each record proves.
    assert!(
        reached,
        "committed offsets {committed_bad:?} of {topic} never reached the published ends {ends_bad:?}"
    );
    assert!(
        !extra,
        "{dlt} holds more dead letters than records dead-lettered"
    );
    all_final.expect("every record reached a final outcome");
    assert_eq!(lost, 0, "records neither handled nor dead-lettered");
    assert_eq!(duplicates, 0, "records finished more than once");
    assert!(
        reached_last,
        "committed offsets {committed:?} never reached {:?}",
        ends(&published)
    );
    last.expect("the last record is handled");
    stopped.expect("run() still ran until the shutdown, and stopped cleanly");
    let handler_saw: BTreeSet<(i32, i64)> = handler_saw.into_iter().collect();
    for (r, evs) in published.iter().zip(&events) {
        let what = format!(
            "{} ({topic}[{}] offset {})",
            r.case.what, r.partition, r.offset
        );
        assert!(
            evs.iter()
                .all(|e| !matches!(e, Outcome::Retrying { .. } | Outcome::Fatal { .. })),
            "{what}: neither retried nor fatal: {evs:?}"
        );
        let finished = finals(evs);
        let reached_handler = handler_saw.contains(&(r.partition, r.offset));
        match r.case.expect {
            Expect::Handled => {
                assert_eq!(
                    finished,
                    [&Outcome::Handled { attempts: 1 }],
                    "{what}: handled once"
                );
                assert!(reached_handler, "{what}: the handler ran on it");
                assert!(
                    !letter_of.contains_key(&(r.partition, r.offset)),
                    "{what}: no dead letter"
                );
            }
            Expect::Undecodable | Expect::NotRetryable => {
                let reason_start = if r.case.expect == Expect::Undecodable {
                    "undecodable"
                } else {
                    "not-retryable"
                };
                match finished.as_slice() {
                    [Outcome::DeadLettered {
                        attempts: 1,
                        reason,
                        dead_letter_topic,
                    }] => {
                        assert!(reason.starts_with(reason_start), "{what}: {reason:.200}");
                        assert_eq!(dead_letter_topic, &dlt, "{what}");
                    }
                    other => {
                        panic!("{what}: expected one dead letter after one attempt, got {other:?}")
                    }
                }
                assert_eq!(
                    reached_handler,
                    r.case.expect == Expect::NotRetryable,
                    "{what}: only decodable records reach the handler"
                );
                let letters = letter_of
                    .get(&(r.partition, r.offset))
                    .unwrap_or_else(|| panic!("{what}: no dead letter in {dlt}"));
                let [letter] = letters.as_slice() else {
                    panic!("{what}: {} dead letters", letters.len());
                };
                check_letter(&what, r, letter, reason_start);
            }
        }
    }
    assert_eq!(
        letter_of.len(),
        published
            .iter()
            .filter(|r| r.case.expect != Expect::Handled)
            .count(),
        "dead letters of exactly the bad records"
    );
}

/// A dead letter keeps the record as read, names where it came from, and
/// carries its error within the header limit.
fn check_letter(what: &str, r: &Published, letter: &ReadRecord, reason: &str) {
    let header = |name: &str| {
        letter
            .header(name)
            .unwrap_or_else(|| panic!("{what}: the dead letter has no {name}"))
    };
    assert_eq!(
        header(h::ORIGINAL_PARTITION),
        r.partition.to_string(),
        "{what}"
    );
    assert_eq!(header(h::ORIGINAL_OFFSET), r.offset.to_string(), "{what}");
    assert!(header(h::REASON).starts_with(reason), "{what}");
    assert_eq!(letter.key, r.case.key, "{what}: the key is kept");
    if letter.header(h::PAYLOAD_OMITTED).is_none() {
        assert_eq!(
            letter.payload, r.case.payload,
            "{what}: the payload is kept"
        );
        for (name, value) in &r.case.headers {
            let kept = letter
                .headers
                .iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, v)| v.as_deref());
            assert_eq!(
                kept,
                Some(value.as_slice()),
                "{what}: header {name} kept byte for byte"
            );
        }
    } else {
        assert!(
            r.case.payload.as_ref().is_some_and(|p| p.len() >= LARGE),
            "{what}: only a large record's payload may be left out"
        );
    }
    for name in [h::ERROR_MESSAGE, h::ERROR_CHAIN] {
        let value = header(name);
        assert!(!value.is_empty(), "{what}: {name}");
        assert!(
            value.len() <= h::MAX_VALUE_BYTES,
            "{what}: {name} is {} bytes",
            value.len()
        );
    }
    if reason == "not-retryable" {
        let message = header(h::ERROR_MESSAGE);
        assert!(
            message.starts_with("record 13 rejected:"),
            "{what}: {message:.100}"
        );
        assert!(
            message.ends_with(h::TRUNCATED_MARKER),
            "{what}: the 1 MB message is cut"
        );
    }
}
