//! Undecodable payloads: bad JSON and tombstones for a `Json<T>` handler go
//! straight to the dead-letter topic with the documented headers, without
//! reaching the handler, and do not block the records after them. An
//! `Option<Json<T>>` handler sees tombstones as `None`.

use dispatcher::dead_letter::headers as h;
use dispatcher::event::Outcome;
use dispatcher::testing::TestKit;
use dispatcher::{Json, Message};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message as _};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, serde::Deserialize, PartialEq)]
struct Order {
    id: u64,
}

/// (offset, decoded id) of every record the strict handler saw.
static STRICT_SEEN: Mutex<Vec<(i64, u64)>> = Mutex::new(Vec::new());
/// (offset, decoded id or None) of every record the lenient handler saw.
static LENIENT_SEEN: Mutex<Vec<(i64, Option<u64>)>> = Mutex::new(Vec::new());

#[dispatcher::kafka_handler(topic = "it-decode-json")]
async fn strict_json(order: Json<Order>, msg: &Message) -> Result<(), std::io::Error> {
    STRICT_SEEN
        .lock()
        .expect("seen lock")
        .push((msg.offset(), order.id));
    Ok(())
}

#[dispatcher::kafka_handler(topic = "it-decode-optional")]
async fn lenient_json(order: Option<Json<Order>>, msg: &Message) -> Result<(), std::io::Error> {
    LENIENT_SEEN
        .lock()
        .expect("seen lock")
        .push((msg.offset(), order.map(|o| o.id)));
    Ok(())
}

/// A record read back from a dead-letter topic.
#[derive(Debug)]
struct Letter {
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    headers: HashMap<String, Option<Vec<u8>>>,
}

impl Letter {
    fn header(&self, name: &str) -> String {
        let value = self
            .headers
            .get(name)
            .unwrap_or_else(|| panic!("dead letter has no header {name}: {self:?}"))
            .as_deref()
            .unwrap_or_else(|| panic!("header {name} has no value"));
        String::from_utf8(value.to_vec()).expect("header is UTF-8")
    }
}

/// Reads every record of `topic` from the beginning with a plain rdkafka
/// consumer until `want` records whose `dlt.original.topic` is `source`
/// arrived, or fails after 30 s.
fn read_dead_letters(brokers: &str, topic: &str, source: &str, want: usize) -> Vec<Letter> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("it-decode-reader-{}", std::process::id()),
        )
        .set("enable.auto.commit", "false")
        .create()
        .expect("dead-letter reader");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata of the dead-letter topic");
    let mut tpl = TopicPartitionList::new();
    for t in md.topics() {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .expect("partition offset");
        }
    }
    assert!(
        tpl.count() > 0,
        "dead-letter topic {topic} has no partitions"
    );
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut letters = Vec::new();
    while letters.len() < want {
        assert!(
            Instant::now() < deadline,
            "only {} of {want} dead letters arrived in {topic}: {letters:?}",
            letters.len()
        );
        let Some(polled) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = polled.expect("read the dead-letter topic");
        let mut headers = HashMap::new();
        if let Some(hs) = m.headers() {
            for hd in hs.iter() {
                headers.insert(hd.key.to_owned(), hd.value.map(<[u8]>::to_vec));
            }
        }
        let letter = Letter {
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
            headers,
        };
        if letter
            .headers
            .get(h::ORIGINAL_TOPIC)
            .and_then(|v| v.as_deref())
            == Some(source.as_bytes())
        {
            letters.push(letter);
        }
    }
    letters
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_records_are_dead_lettered_with_headers_and_skip_the_handler() {
    let topic = "it-decode-json";
    let dlt = "it-decode-json.DLT";
    let kit = TestKit::start(TestKit::builder().topics([topic]))
        .await
        .expect("start the test kit");
    let p = 0;
    let key: &[u8] = b"order-key";
    let send = |payload: Option<&'static [u8]>,
                headers: &'static [(&'static str, &'static [u8])]| {
        kit.producer()
            .send(topic, Some(p), Some(key), payload, headers)
    };
    let (_, valid1) = send(Some(br#"{"id":1}"#), &[]).await.expect("publish");
    let (_, invalid) = send(Some(b"{not json"), &[("trace-id", b"abc-123")])
        .await
        .expect("publish");
    let (_, valid2) = send(Some(br#"{"id":2}"#), &[]).await.expect("publish");
    let (_, tombstone) = send(None, &[]).await.expect("publish");
    let (_, valid3) = send(Some(br#"{"id":3}"#), &[]).await.expect("publish");

    let wait = Duration::from_secs(60);
    for (offset, what) in [(valid1, "first"), (valid2, "second"), (valid3, "third")] {
        let outcome = kit.outcome(topic, p, offset, wait).await.expect("outcome");
        assert_eq!(
            outcome,
            Outcome::Handled { attempts: 1 },
            "the {what} valid record is handled"
        );
    }
    for (offset, what) in [(invalid, "bad JSON"), (tombstone, "tombstone")] {
        match kit.outcome(topic, p, offset, wait).await.expect("outcome") {
            Outcome::DeadLettered {
                attempts,
                reason,
                dead_letter_topic,
            } => {
                assert_eq!(attempts, 1, "{what}: no retry for undecodable records");
                assert!(
                    reason.contains("undecodable"),
                    "{what}: reason {reason:?} names undecodable"
                );
                assert_eq!(dead_letter_topic, dlt, "{what}: default <topic>.DLT");
            }
            other => panic!("{what} at offset {offset}: expected DeadLettered, got {other:?}"),
        }
        assert!(
            kit.events(topic, p, offset)
                .iter()
                .all(|e| !matches!(e, Outcome::Retrying { .. })),
            "{what}: never retried"
        );
    }
    let seen = STRICT_SEEN.lock().expect("seen lock").clone();
    assert_eq!(
        seen,
        vec![(valid1, 1), (valid2, 2), (valid3, 3)],
        "the handler saw exactly the valid records, in order"
    );

    let brokers = kit.bootstrap_servers().to_owned();
    let group = kit.group_id().to_owned();
    let letters = tokio::task::spawn_blocking(move || {
        read_dead_letters(&brokers, "it-decode-json.DLT", "it-decode-json", 2)
    })
    .await
    .expect("reader task");
    let mut by_offset: HashMap<i64, &Letter> = HashMap::new();
    for l in &letters {
        let offset: i64 = l.header(h::ORIGINAL_OFFSET).parse().expect("offset header");
        assert!(
            by_offset.insert(offset, l).is_none(),
            "one dead letter per record, got a second for offset {offset}"
        );
    }
    let mut offsets: Vec<i64> = by_offset.keys().copied().collect();
    offsets.sort_unstable();
    assert_eq!(
        offsets,
        vec![invalid, tombstone],
        "dead letters of exactly the undecodable records"
    );

    for (offset, payload) in [(invalid, Some(b"{not json".to_vec())), (tombstone, None)] {
        let l = by_offset[&offset];
        assert_eq!(l.key.as_deref(), Some(key), "original key kept");
        assert_eq!(l.payload, payload, "original payload kept");
        assert_eq!(l.header(h::ORIGINAL_TOPIC), topic);
        assert_eq!(l.header(h::ORIGINAL_PARTITION), p.to_string());
        assert_eq!(l.header(h::ORIGINAL_OFFSET), offset.to_string());
        assert_eq!(l.header(h::REASON), "undecodable");
        assert_eq!(l.header(h::ERROR_KIND), "decode");
        assert_eq!(l.header(h::ATTEMPTS), "1");
        assert_eq!(l.header(h::CONSUMER_GROUP), group);
        assert!(
            l.header(h::HANDLER).ends_with("strict_json"),
            "handler header names the handler: {}",
            l.header(h::HANDLER)
        );
        assert!(!l.header(h::ERROR_TYPE).is_empty(), "error type");
        assert!(!l.header(h::ERROR_MESSAGE).is_empty(), "error message");
        assert!(
            l.header(h::ERROR_CHAIN)
                .contains(&l.header(h::ERROR_MESSAGE)),
            "the chain starts with the message"
        );
        let ts: i64 = l
            .header(h::ORIGINAL_TIMESTAMP)
            .parse()
            .expect("timestamp ms");
        assert!(ts > 0, "original timestamp");
        let first: u128 = l
            .header(h::FIRST_FAILURE)
            .parse()
            .expect("first failure ms");
        let last: u128 = l.header(h::LAST_FAILURE).parse().expect("last failure ms");
        assert!(
            first > 0 && first <= last,
            "failure times {first} <= {last}"
        );
    }
    let bad = by_offset[&invalid];
    assert_eq!(
        bad.headers.get("trace-id"),
        Some(&Some(b"abc-123".to_vec())),
        "original headers kept"
    );
    assert!(
        by_offset[&tombstone]
            .header(h::ERROR_MESSAGE)
            .contains("tombstone"),
        "a tombstone's error says so"
    );

    // Everything finished, so everything is committed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let committed = kit.committed_offsets(topic).await.expect("committed");
        if committed.get(&p) == Some(&(valid3 + 1)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "committed {committed:?} never reached {}",
            valid3 + 1
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    kit.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_json_sees_tombstones_as_none() {
    let topic = "it-decode-optional";
    let kit = TestKit::start(TestKit::builder().topics([topic]))
        .await
        .expect("start the test kit");
    let p = 1;
    let key: &[u8] = b"k";
    let producer = kit.producer();
    let (_, a) = producer
        .send(topic, Some(p), Some(key), Some(br#"{"id":7}"#), &[])
        .await
        .expect("publish");
    let (_, b) = producer
        .send(topic, Some(p), Some(key), None, &[])
        .await
        .expect("publish");
    let (_, c) = producer
        .send(topic, Some(p), Some(key), Some(b"nope"), &[])
        .await
        .expect("publish");
    let wait = Duration::from_secs(60);
    assert_eq!(
        kit.outcome(topic, p, a, wait).await.expect("outcome"),
        Outcome::Handled { attempts: 1 }
    );
    assert_eq!(
        kit.outcome(topic, p, b, wait).await.expect("outcome"),
        Outcome::Handled { attempts: 1 },
        "a tombstone is a valid None for Option<Json<T>>"
    );
    match kit.outcome(topic, p, c, wait).await.expect("outcome") {
        Outcome::DeadLettered { reason, .. } => {
            assert!(reason.contains("undecodable"), "{reason}");
        }
        other => panic!("bad JSON inside Option<Json<T>> is undecodable, got {other:?}"),
    }
    let seen = LENIENT_SEEN.lock().expect("seen lock").clone();
    assert_eq!(seen, vec![(a, Some(7)), (b, None)]);
    kit.shutdown().await.expect("clean shutdown");
}
