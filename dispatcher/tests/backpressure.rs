//! Backpressure: with `partition_buffer(20)` and a handler that blocks
//! until the test opens a gate, a backlog of 300 records is not all pulled
//! into memory (unordered mode would start every buffered record), and
//! after the gate opens every record is handled exactly once, in order for
//! one key, with the committed offset at the end: pausing and resuming the
//! partition loses and duplicates nothing. A record that hangs while the
//! other keys of its partition race ahead also pauses the partition once
//! `partition_buffer` records wait behind it uncommitted, so what a crash
//! would deliver again stays bounded.

use dispatcher::event::Outcome;
use dispatcher::testing::TestKit;
use dispatcher::Message;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

const RECORDS: usize = 300;
const BUFFER: usize = 20;

/// A gate handlers wait at until the test opens it.
struct Gate {
    open: AtomicBool,
    started: AtomicUsize,
    seen: Mutex<Vec<i64>>,
}

impl Gate {
    const fn new() -> Self {
        Gate {
            open: AtomicBool::new(false),
            started: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
        }
    }

    async fn pass(&self, msg: &Message) {
        self.started.fetch_add(1, Ordering::SeqCst);
        self.seen.lock().expect("seen lock").push(msg.offset());
        while !self.open.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    fn started(&self) -> usize {
        self.started.load(Ordering::SeqCst)
    }

    fn seen(&self) -> Vec<i64> {
        self.seen.lock().expect("seen lock").clone()
    }
}

static UNBOUNDED_GATE: Gate = Gate::new();
static KEYED_GATE: Gate = Gate::new();
static STUCK_GATE: Gate = Gate::new();
static BYTES_GATE: Gate = Gate::new();
/// Records of the stuck-key topic that started, the stuck one included.
static STUCK_TOPIC_STARTED: AtomicUsize = AtomicUsize::new(0);

/// Unordered and without a concurrency cap: every record handed to the
/// partition's worker starts at once, so `started` counts what the
/// dispatcher took from Kafka.
#[dispatcher::kafka_handler(topic = "it-backpressure-unordered", ordering = unordered)]
async fn gated_unordered(msg: &Message) -> Result<(), std::io::Error> {
    UNBOUNDED_GATE.pass(msg).await;
    Ok(())
}

#[dispatcher::kafka_handler(topic = "it-backpressure-keyed", ordering = key)]
async fn gated_keyed(msg: &Message) -> Result<(), std::io::Error> {
    KEYED_GATE.pass(msg).await;
    Ok(())
}

/// Unordered, like the first: counts what the dispatcher took in.
#[dispatcher::kafka_handler(topic = "it-backpressure-bytes", ordering = unordered)]
async fn gated_bytes(msg: &Message) -> Result<(), std::io::Error> {
    BYTES_GATE.pass(msg).await;
    Ok(())
}

/// Key mode: the record with key "stuck" waits at the gate; every other
/// key finishes at once.
#[dispatcher::kafka_handler(topic = "it-backpressure-stuck", ordering = key)]
async fn one_key_stuck(msg: &Message) -> Result<(), std::io::Error> {
    STUCK_TOPIC_STARTED.fetch_add(1, Ordering::SeqCst);
    if msg.key() == Some(&b"stuck"[..]) {
        STUCK_GATE.pass(msg).await;
    }
    Ok(())
}

/// Publishes records 1.. of `RECORDS` to partition 0, each with its own
/// key, while the partition's first record is still unfinished; then checks
/// that the dispatcher took in (as `taken` counts) at least `BUFFER` of them
/// but not many more.
async fn publish_the_rest_and_check_taken_in(
    kit: &TestKit,
    topic: &str,
    published: &mut Vec<i64>,
    taken: impl Fn() -> usize,
) {
    for i in 1..RECORDS {
        let (_, o) = kit
            .publish_to(topic, 0, Some(&format!("k{i}")), format!("r{i}"))
            .await
            .expect("publish");
        published.push(o);
    }
    kit.wait_until(
        "the partition's limit to fill",
        Duration::from_secs(60),
        |_| taken() >= BUFFER,
    )
    .await
    .expect("records reach the handler");
    // Give the dispatcher time to take more than it should, if it would:
    // every record is published and nothing is committed.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let n = taken();
    assert!(
        n <= 5 * BUFFER,
        "with partition_buffer({BUFFER}) and the first record unfinished, {n} of {RECORDS} records were taken in"
    );
}

async fn wait_committed_to_end(kit: &TestKit, topic: &str) {
    kit.wait_committed_to_end(topic, Duration::from_secs(30))
        .await
        .expect("commits reach the end");
}

fn assert_exactly_once(seen: &[i64], published: &[i64]) {
    let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
    for o in seen {
        *counts.entry(*o).or_default() += 1;
    }
    let duplicated: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(
        duplicated.is_empty(),
        "records handled twice: {duplicated:?}"
    );
    let missing: Vec<_> = published
        .iter()
        .filter(|o| !counts.contains_key(o))
        .collect();
    assert!(missing.is_empty(), "records never handled: {missing:?}");
    assert_eq!(counts.len(), published.len(), "no unexpected records");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_partition_buffer_stops_taking_records() {
    let topic = "it-backpressure-unordered";
    let gate = &UNBOUNDED_GATE;
    let kit = TestKit::start(TestKit::builder().topics([topic]).partition_buffer(BUFFER))
        .await
        .expect("start the test kit");
    // One record first, so the group is joined and the partition is being
    // fetched while the rest arrive one by one: what the dispatcher takes
    // in is then limited by the pause, not by what one fetch returns.
    let mut published = Vec::with_capacity(RECORDS);
    let (_, o) = kit
        .publish_to(topic, 0, Some("k0"), "r0")
        .await
        .expect("publish");
    published.push(o);
    kit.wait_until("the first record to start", Duration::from_secs(60), |_| {
        gate.started() >= 1
    })
    .await
    .expect("the first record reaches the handler");
    // Nothing caps an unordered handler here: without backpressure every
    // record would start.
    publish_the_rest_and_check_taken_in(&kit, topic, &mut published, || gate.started()).await;
    gate.open.store(true, Ordering::SeqCst);
    kit.wait_until("every record finished", Duration::from_secs(120), |k| {
        k.finished_count(topic) >= RECORDS
    })
    .await
    .expect("all records handled after the gate opened");
    assert_exactly_once(&gate.seen(), &published);
    wait_committed_to_end(&kit, topic).await;
    kit.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_resume_lose_and_duplicate_nothing_and_keep_key_order() {
    let topic = "it-backpressure-keyed";
    let gate = &KEYED_GATE;
    let kit = TestKit::start(TestKit::builder().topics([topic]).partition_buffer(BUFFER))
        .await
        .expect("start the test kit");
    let mut published = Vec::with_capacity(RECORDS);
    for i in 0..RECORDS {
        let (_, o) = kit
            .publish_to(topic, 0, Some("the-only-key"), format!("r{i}"))
            .await
            .expect("publish");
        published.push(o);
    }
    kit.wait_until("the first record to start", Duration::from_secs(60), |_| {
        gate.started() >= 1
    })
    .await
    .expect("records reach the handler");
    assert_eq!(gate.started(), 1, "one key: one record at a time");
    gate.open.store(true, Ordering::SeqCst);
    kit.wait_until("every record finished", Duration::from_secs(120), |k| {
        k.finished_count(topic) >= RECORDS
    })
    .await
    .expect("all records handled after the gate opened");
    let seen = gate.seen();
    assert_exactly_once(&seen, &published);
    assert_eq!(seen, published, "one key: handled in offset order");
    assert!(
        kit.final_outcomes(topic)
            .values()
            .all(|o| matches!(o, Outcome::Handled { attempts: 1 })),
        "handled on the first attempt"
    );
    wait_committed_to_end(&kit, topic).await;
    kit.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_record_bounds_the_uncommitted_records_behind_it() {
    let topic = "it-backpressure-stuck";
    let kit = TestKit::start(TestKit::builder().topics([topic]).partition_buffer(BUFFER))
        .await
        .expect("start the test kit");
    let started = || STUCK_TOPIC_STARTED.load(Ordering::SeqCst);
    // One record that is handled, then the one that hangs: the committed
    // offset is then exactly the hanging record's.
    let (_, warm) = kit
        .publish_to(topic, 0, Some("warm"), "warm")
        .await
        .expect("publish");
    let mut published = vec![warm];
    let (_, stuck) = kit
        .publish_to(topic, 0, Some("stuck"), "stuck")
        .await
        .expect("publish");
    published.push(stuck);
    kit.wait_until("the stuck record to start", Duration::from_secs(60), |_| {
        STUCK_GATE.started() == 1
    })
    .await
    .expect("the stuck record reaches the handler");
    let committed_at = |want: i64| {
        let kit = &kit;
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                let committed = kit
                    .committed_offsets(topic)
                    .await
                    .expect("committed offsets");
                if committed.get(&0) == Some(&want) {
                    return;
                }
                assert!(
                    committed.get(&0).is_none_or(|&c| c < want),
                    "committed {committed:?} past the hanging record at offset {want}"
                );
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the commit never reached {want}: {committed:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    committed_at(stuck).await;
    // Every later record has its own key: each finishes at once, but none
    // can be committed while the hanging record hangs.
    publish_the_rest_and_check_taken_in(&kit, topic, &mut published, started).await;
    let committed = kit
        .committed_offsets(topic)
        .await
        .expect("read the committed offsets");
    assert_eq!(
        committed.get(&0),
        Some(&stuck),
        "the committed offset stays exactly at the hanging record"
    );
    STUCK_GATE.open.store(true, Ordering::SeqCst);
    kit.wait_until("every record finished", Duration::from_secs(120), |k| {
        k.finished_count(topic) >= published.len()
    })
    .await
    .expect("all records handled after the gate opened");
    assert_eq!(started(), published.len(), "each record handled once");
    wait_committed_to_end(&kit, topic).await;
    kit.shutdown().await.expect("clean shutdown");
}

/// Records of 10 KiB under a 64 KiB byte limit and a record limit that
/// does not bind: the bytes a partition holds are bounded too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_holds_no_more_bytes_than_its_byte_limit() {
    const RECORD: usize = 10 * 1024;
    const LIMIT: usize = 64 * 1024;
    let topic = "it-backpressure-bytes";
    let gate = &BYTES_GATE;
    let kit = TestKit::start(
        TestKit::builder()
            .topics([topic])
            .partition_buffer(1_000)
            .partition_buffer_bytes(LIMIT),
    )
    .await
    .expect("start the test kit");
    let payload = vec![b'x'; RECORD];
    let mut published = Vec::new();
    for i in 0..100 {
        let (_, o) = kit
            .publish_to(topic, 0, Some(&format!("k{i}")), &payload)
            .await
            .expect("publish");
        published.push(o);
    }
    kit.wait_until(
        "the partition's byte limit to fill",
        Duration::from_secs(60),
        |_| gate.started() * RECORD >= LIMIT,
    )
    .await
    .expect("records reach the handler");
    // Give the dispatcher time to take more than it should, if it would.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let taken = gate.started();
    assert!(
        taken * RECORD <= LIMIT + RECORD,
        "with a {LIMIT}-byte limit, {taken} records of {RECORD} bytes were taken in"
    );
    gate.open.store(true, Ordering::SeqCst);
    kit.wait_until("every record finished", Duration::from_secs(120), |k| {
        k.finished_count(topic) >= published.len()
    })
    .await
    .expect("all records handled after the gate opened");
    assert_exactly_once(&gate.seen(), &published);
    wait_committed_to_end(&kit, topic).await;
    kit.shutdown().await.expect("clean shutdown");
}
