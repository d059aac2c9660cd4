//! Ordering modes under real concurrency on the embedded broker: `key`
//! keeps each key in offset order while different keys overlap, `partition`
//! runs one record at a time per partition, `unordered` respects the
//! handler's `concurrency` cap.

use dispatcher::event::Outcome;
use dispatcher::testing::TestKit;
use dispatcher::Message;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

const PARTITIONS: i32 = 4;
const KEYS: usize = 30;
const PER_KEY: usize = 40;

/// A deterministic pseudo-random sleep of 0 to 5 ms for a record
/// (splitmix64 of a fixed seed, the partition and the offset).
fn jitter(msg: &Message) -> Duration {
    let mut z = 0x5eed_u64
        ^ (u64::from(msg.partition().unsigned_abs()) << 40)
        ^ msg.offset().unsigned_abs();
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    Duration::from_micros(z % 5_001)
}

/// Counts records running at once: overall, and per partition.
struct Gauge {
    running: AtomicUsize,
    max: AtomicUsize,
    per_partition: [AtomicUsize; PARTITIONS as usize],
    max_per_partition: AtomicUsize,
    /// (key, partition, offset) in the order the handler started them.
    seen: Mutex<Vec<(String, i32, i64)>>,
}

impl Gauge {
    const fn new() -> Self {
        Gauge {
            running: AtomicUsize::new(0),
            max: AtomicUsize::new(0),
            per_partition: [
                AtomicUsize::new(0),
                AtomicUsize::new(0),
                AtomicUsize::new(0),
                AtomicUsize::new(0),
            ],
            max_per_partition: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
        }
    }

    async fn run(&self, msg: &Message) {
        let p = usize::try_from(msg.partition()).expect("partition >= 0");
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        let in_p = self.per_partition[p].fetch_add(1, Ordering::SeqCst) + 1;
        self.max_per_partition.fetch_max(in_p, Ordering::SeqCst);
        let key = String::from_utf8_lossy(msg.key().unwrap_or_default()).into_owned();
        self.seen
            .lock()
            .expect("seen lock")
            .push((key, msg.partition(), msg.offset()));
        tokio::time::sleep(jitter(msg)).await;
        self.per_partition[p].fetch_sub(1, Ordering::SeqCst);
        self.running.fetch_sub(1, Ordering::SeqCst);
    }

    fn seen(&self) -> Vec<(String, i32, i64)> {
        self.seen.lock().expect("seen lock").clone()
    }
}

static KEYED: Gauge = Gauge::new();
static PARTITIONED: Gauge = Gauge::new();
static UNORDERED: Gauge = Gauge::new();

#[dispatcher::kafka_handler(topic = "it-order-keys", ordering = key)]
async fn keyed(msg: &Message) -> Result<(), std::io::Error> {
    KEYED.run(msg).await;
    Ok(())
}

#[dispatcher::kafka_handler(topic = "it-order-partition", ordering = partition)]
async fn partitioned(msg: &Message) -> Result<(), std::io::Error> {
    PARTITIONED.run(msg).await;
    Ok(())
}

#[dispatcher::kafka_handler(topic = "it-order-unordered", ordering = unordered, concurrency = 3)]
async fn unordered(msg: &Message) -> Result<(), std::io::Error> {
    UNORDERED.run(msg).await;
    Ok(())
}

/// Publishes `KEYS` x `PER_KEY` records, keys interleaved, all sends in
/// flight at once; returns the (partition, offset) of each record by key.
async fn publish_keyed(kit: &TestKit, topic: &str) -> HashMap<String, Vec<(i32, i64)>> {
    let mut sends = Vec::with_capacity(KEYS * PER_KEY);
    for i in 0..PER_KEY {
        for k in 0..KEYS {
            let key = format!("key-{k}");
            sends.push(async move {
                let at = kit
                    .publish(topic, Some(&key), format!("{key}#{i}"))
                    .await
                    .expect("publish");
                (key, at)
            });
        }
    }
    let mut by_key: HashMap<String, Vec<(i32, i64)>> = HashMap::new();
    for (key, at) in futures::future::join_all(sends).await {
        by_key.entry(key).or_default().push(at);
    }
    for offsets in by_key.values_mut() {
        offsets.sort_unstable();
    }
    by_key
}

async fn run_all(topic: &str, gauge: &Gauge) -> (TestKit, HashMap<String, Vec<(i32, i64)>>) {
    let kit = TestKit::start(
        TestKit::builder()
            .topics([topic])
            .embedded_partitions(PARTITIONS),
    )
    .await
    .expect("start the test kit");
    let published = publish_keyed(&kit, topic).await;
    let n = KEYS * PER_KEY;
    kit.wait_until(
        &format!("{n} records of {topic} finished"),
        Duration::from_secs(120),
        |k| k.finished_count(topic) >= n,
    )
    .await
    .expect("every record finishes");
    let outcomes = kit.final_outcomes(topic);
    assert_eq!(outcomes.len(), n, "one final outcome per record");
    assert!(
        outcomes
            .values()
            .all(|o| matches!(o, Outcome::Handled { attempts: 1 })),
        "every record handled on the first attempt: {outcomes:?}"
    );
    // Each record was seen exactly once by the handler.
    let seen = gauge.seen();
    let mut counts: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    for (_, p, o) in &seen {
        *counts.entry((*p, *o)).or_default() += 1;
    }
    let expected: BTreeMap<(i32, i64), usize> = published
        .values()
        .flatten()
        .map(|at| (*at, 1usize))
        .collect();
    assert_eq!(counts, expected, "every record seen exactly once");
    (kit, published)
}

/// The offsets each key's records were started at, in start order.
fn started_by_key(seen: &[(String, i32, i64)]) -> HashMap<String, Vec<(i32, i64)>> {
    let mut by_key: HashMap<String, Vec<(i32, i64)>> = HashMap::new();
    for (k, p, o) in seen {
        by_key.entry(k.clone()).or_default().push((*p, *o));
    }
    by_key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_mode_keeps_each_key_in_offset_order_while_keys_overlap() {
    let topic = "it-order-keys";
    let (kit, published) = run_all(topic, &KEYED).await;
    let started = started_by_key(&KEYED.seen());
    assert_eq!(started.len(), KEYS, "every key seen");
    for (key, offsets) in &started {
        // A key always lands in one partition, and its records start in
        // strictly increasing offset order: exactly the published order.
        assert_eq!(
            Some(offsets),
            published.get(key),
            "records of {key} ran out of offset order (or some were missing)"
        );
        assert!(
            offsets
                .windows(2)
                .all(|w| w[0].0 == w[1].0 && w[0].1 < w[1].1),
            "offsets of {key} not strictly increasing: {offsets:?}"
        );
    }
    let max = KEYED.max.load(Ordering::SeqCst);
    assert!(
        max >= 2,
        "records of different keys never overlapped (max running {max})"
    );
    kit.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_mode_runs_one_record_at_a_time_per_partition() {
    let topic = "it-order-partition";
    let (kit, _) = run_all(topic, &PARTITIONED).await;
    let seen = PARTITIONED.seen();
    let mut by_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for (_, p, o) in &seen {
        by_partition.entry(*p).or_default().push(*o);
    }
    for (p, offsets) in &by_partition {
        assert!(
            offsets.windows(2).all(|w| w[0] < w[1]),
            "partition {p} ran out of offset order"
        );
    }
    let per_partition = PARTITIONED.max_per_partition.load(Ordering::SeqCst);
    assert_eq!(
        per_partition, 1,
        "at most one record at a time per partition"
    );
    let max = PARTITIONED.max.load(Ordering::SeqCst);
    assert!(
        max >= 2,
        "different partitions never overlapped (max running {max})"
    );
    kit.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unordered_mode_respects_the_handler_concurrency_cap() {
    let topic = "it-order-unordered";
    let (kit, _) = run_all(topic, &UNORDERED).await;
    let max = UNORDERED.max.load(Ordering::SeqCst);
    assert!(max <= 3, "concurrency = 3, but {max} records ran at once");
    assert!(max >= 2, "unordered records never overlapped (max {max})");
    kit.shutdown().await.expect("clean shutdown");
}
