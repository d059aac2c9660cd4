//! Throughput: a no-op handler through the dispatcher against a raw rdkafka
//! consume loop, on the same embedded broker and the same records.
//!
//! ```text
//! cargo bench -p dispatcher --bench throughput            # 1 000 000 records, 3 rounds
//! BENCH_RECORDS=400000 BENCH_ROUNDS=1 cargo bench -p dispatcher --bench throughput
//! ```
//!
//! Prints records per second for both and their ratio. Group joins are
//! excluded: each clock starts at the first record and stops at the last.
//! Each measurement runs `BENCH_ROUNDS` times, alternating raw and
//! dispatcher runs so that both see the same machine, and the median is
//! reported.

use dispatcher::broker::EmbeddedBroker;
use dispatcher::handler::{Handler, HandlerFuture, HandlerSpec};
use dispatcher::policy::{OrderingMode as Ordering, Policy};
use dispatcher::{Dispatcher, Message};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOPIC: &str = "bench";
const PARTITIONS: i32 = 64;
const KEYS: usize = 1_000;

fn produce(brokers: &str, n: usize) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    let payload = [b'x'; 100];
    let keys: Vec<String> = (0..KEYS).map(|k| format!("key-{k:04}")).collect();
    for i in 0..n {
        let key = &keys[i % KEYS];
        loop {
            match producer.send(
                BaseRecord::to(TOPIC)
                    .key(key.as_str())
                    .payload(&payload[..]),
            ) {
                Ok(()) => break,
                Err((_, _)) => {
                    producer.poll(Duration::from_millis(5));
                }
            }
        }
        if i % 10_000 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
}

fn consumer_config(brokers: &str, group: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "true")
        .set("fetch.wait.max.ms", "20")
        .set("fetch.queue.backoff.ms", "10");
    c
}

/// The baseline: one thread polling a BaseConsumer, touching each payload.
fn raw(brokers: &str, n: usize, round: usize) -> f64 {
    let consumer: BaseConsumer = consumer_config(brokers, &format!("bench-raw-{round}"))
        .create()
        .expect("consumer");
    consumer.subscribe(&[TOPIC]).expect("subscribe");
    let mut seen = 0usize;
    let mut bytes = 0usize;
    let mut start = None;
    while seen < n {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            start.get_or_insert_with(Instant::now);
            bytes += m.payload().map_or(0, <[u8]>::len) + m.key().map_or(0, <[u8]>::len);
            seen += 1;
        }
    }
    let secs = start.expect("records seen").elapsed().as_secs_f64();
    assert!(bytes > 0);
    n as f64 / secs
}

static COUNT: AtomicUsize = AtomicUsize::new(0);
static FIRST: Mutex<Option<Instant>> = Mutex::new(None);
static LAST_NANOS: AtomicU64 = AtomicU64::new(0);

struct NoOp;
impl Handler for NoOp {
    fn call(&self, msg: Message) -> HandlerFuture<'static> {
        Box::pin(async move {
            std::hint::black_box(msg.payload());
            if COUNT.fetch_add(1, AtomicOrdering::Relaxed) == 0 {
                *FIRST.lock().expect("lock") = Some(Instant::now());
            }
            Ok(())
        })
    }
}
static NOOP: NoOp = NoOp;

fn dispatched(
    broker: &Arc<EmbeddedBroker>,
    n: usize,
    ordering: Ordering,
    label: &'static str,
    round: usize,
) -> f64 {
    COUNT.store(0, AtomicOrdering::SeqCst);
    *FIRST.lock().expect("lock") = None;
    let spec = HandlerSpec::new(label, &[TOPIC], &NOOP)
        .with_policy(Policy::DEFAULT.with_ordering(ordering));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let d = Dispatcher::builder()
            .ignore_environment()
            .without_registered_handlers()
            .handler(spec)
            .embedded_broker(broker.clone())
            .group_id(format!("bench-{label}-{round}"))
            .handle_signals(false)
            .build()
            .expect("build");
        let stop = d.shutdown_handle();
        let run = tokio::spawn(d.run());
        let t0 = Instant::now();
        while COUNT.load(AtomicOrdering::Relaxed) < n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let end = Instant::now();
        LAST_NANOS.store((end - t0).as_nanos() as u64, AtomicOrdering::Relaxed);
        stop.shutdown();
        run.await.expect("join").expect("clean run");
        let first = FIRST.lock().expect("lock").expect("records seen");
        n as f64 / (end - first).as_secs_f64()
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let n: usize = std::env::var("BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let broker = Arc::new(EmbeddedBroker::start(1).expect("broker"));
    broker.create_topic(TOPIC, PARTITIONS).expect("topic");
    let brokers = broker.bootstrap_servers().to_owned();
    let t = Instant::now();
    produce(&brokers, n);
    println!("produced {n} records of 100 bytes, {KEYS} keys, {PARTITIONS} partitions in {:.2?}; {rounds} rounds, medians", t.elapsed());
    let modes = [
        (Ordering::Key, "key"),
        (Ordering::Partition, "partition"),
        (Ordering::Unordered, "unordered"),
    ];
    // BENCH_ONLY=raw|key|partition|unordered runs one measurement, for profiling.
    let only = std::env::var("BENCH_ONLY").ok();
    let wanted = |label: &str| only.as_deref().is_none_or(|o| o == label);
    let mut raw_rates = Vec::new();
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    for round in 0..rounds {
        if wanted("raw") {
            raw_rates.push(raw(&brokers, n, round));
        }
        for (i, (ordering, label)) in modes.iter().enumerate() {
            if wanted(label) {
                rates[i].push(dispatched(&broker, n, *ordering, label, round));
            }
        }
    }
    if raw_rates.is_empty() || rates.iter().any(Vec::is_empty) {
        println!(
            "raw: {}; modes: {}",
            fmt(&raw_rates),
            rates.iter().map(|r| fmt(r)).collect::<Vec<_>>().join(" | ")
        );
        return;
    }
    let raw_rate = median(raw_rates.clone());
    println!(
        "raw rdkafka BaseConsumer loop:             {raw_rate:>10.0} records/s  (rounds: {})",
        fmt(&raw_rates)
    );
    for (i, (_, label)) in modes.iter().enumerate() {
        let rate = median(rates[i].clone());
        println!(
            "dispatcher, no-op handler, {label:<9} mode:  {rate:>10.0} records/s  ({:.2} of raw, commits on; rounds: {})",
            rate / raw_rate,
            fmt(&rates[i])
        );
    }
}

fn fmt(rates: &[f64]) -> String {
    rates
        .iter()
        .map(|r| format!("{:.2}M", r / 1e6))
        .collect::<Vec<_>>()
        .join(" ")
}
