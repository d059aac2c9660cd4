//! Throughput: a no-op handler through the dispatcher against a raw rdkafka
//! consume loop, on the same embedded broker and the same records.
//!
//! ```text
//! cargo bench -p dispatcher --bench throughput            # 1 000 000 records, 3 rounds
//! BENCH_RECORDS=400000 BENCH_ROUNDS=1 cargo bench -p dispatcher --bench throughput
//! BENCH_METRICS=1 cargo bench -p dispatcher --bench throughput   # with the Prometheus recorder
//! BENCH_LOG=1 cargo bench -p dispatcher --bench throughput 2>/dev/null  # with the INFO log subscriber
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

mod support;
use support::cpu_time;

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

/// A run's records per second and CPU per record (the whole process,
/// from the first record to the last).
#[derive(Clone, Copy)]
struct Measure {
    rate: f64,
    cpu_us: f64,
}

/// The baseline: one thread polling a BaseConsumer, touching each payload.
fn raw(brokers: &str, n: usize, round: usize) -> Measure {
    let consumer: BaseConsumer = consumer_config(brokers, &format!("bench-raw-{round}"))
        .create()
        .expect("consumer");
    consumer.subscribe(&[TOPIC]).expect("subscribe");
    let mut seen = 0usize;
    let mut bytes = 0usize;
    let mut start = None;
    while seen < n {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            start.get_or_insert_with(|| (Instant::now(), cpu_time()));
            bytes += m.payload().map_or(0, <[u8]>::len) + m.key().map_or(0, <[u8]>::len);
            seen += 1;
        }
    }
    let (t0, cpu0) = start.expect("records seen");
    let secs = t0.elapsed().as_secs_f64();
    assert!(bytes > 0);
    Measure {
        rate: n as f64 / secs,
        cpu_us: cpu_time().saturating_sub(cpu0).as_secs_f64() * 1e6 / n as f64,
    }
}

static COUNT: AtomicUsize = AtomicUsize::new(0);
static FIRST: Mutex<Option<(Instant, Duration)>> = Mutex::new(None);
static LAST_NANOS: AtomicU64 = AtomicU64::new(0);

struct NoOp;
impl Handler for NoOp {
    fn call(&self, msg: Message) -> HandlerFuture<'static> {
        Box::pin(async move {
            std::hint::black_box(msg.payload());
            if COUNT.fetch_add(1, AtomicOrdering::Relaxed) == 0 {
                *FIRST.lock().expect("lock") = Some((Instant::now(), cpu_time()));
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
) -> Measure {
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
            .handle_signals(false);
        // BENCH_METRICS=1: the Prometheus recorder records every series.
        let d = if std::env::var("BENCH_METRICS").is_ok_and(|v| v == "1") {
            d.metrics_address("127.0.0.1:0")
        } else {
            d
        };
        let d = d.build().expect("build");
        let stop = d.shutdown_handle();
        let run = tokio::spawn(d.run());
        let t0 = Instant::now();
        while COUNT.load(AtomicOrdering::Relaxed) < n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let (end, cpu_end) = (Instant::now(), cpu_time());
        LAST_NANOS.store((end - t0).as_nanos() as u64, AtomicOrdering::Relaxed);
        stop.shutdown();
        run.await.expect("join").expect("clean run");
        let (first, cpu0) = FIRST.lock().expect("lock").expect("records seen");
        Measure {
            rate: n as f64 / (end - first).as_secs_f64(),
            cpu_us: cpu_end.saturating_sub(cpu0).as_secs_f64() * 1e6 / n as f64,
        }
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
    // BENCH_LOG=1: the log subscriber `run()` installs (INFO, to stderr),
    // so every record's span is recorded.
    if std::env::var("BENCH_LOG").is_ok_and(|v| v == "1") {
        dispatcher::logging::init();
    }
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
    let mut raw_runs: Vec<Measure> = Vec::new();
    let mut runs: Vec<Vec<Measure>> = vec![Vec::new(); modes.len()];
    for round in 0..rounds {
        if wanted("raw") {
            raw_runs.push(raw(&brokers, n, round));
        }
        for (i, (ordering, label)) in modes.iter().enumerate() {
            if wanted(label) {
                runs[i].push(dispatched(&broker, n, *ordering, label, round));
            }
        }
    }
    let rates = |ms: &[Measure]| ms.iter().map(|m| m.rate).collect::<Vec<_>>();
    let cpus = |ms: &[Measure]| ms.iter().map(|m| m.cpu_us).collect::<Vec<_>>();
    if raw_runs.is_empty() || runs.iter().any(Vec::is_empty) {
        let us = |ms: &[Measure]| {
            ms.iter()
                .map(|m| format!("{:.2}us", m.cpu_us))
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!(
            "raw: {} ({}); modes: {}",
            fmt(&rates(&raw_runs)),
            us(&raw_runs),
            runs.iter()
                .map(|r| format!("{} ({})", fmt(&rates(r)), us(r)))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        return;
    }
    let raw_rate = median(rates(&raw_runs));
    let raw_cpu = median(cpus(&raw_runs));
    println!(
        "raw rdkafka BaseConsumer loop:             {raw_rate:>10.0} records/s, {raw_cpu:.2} us CPU/record  (rounds: {})",
        fmt(&rates(&raw_runs))
    );
    for (i, (_, label)) in modes.iter().enumerate() {
        let rate = median(rates(&runs[i]));
        let cpu = median(cpus(&runs[i]));
        println!(
            "dispatcher, no-op handler, {label:<9} mode:  {rate:>10.0} records/s, {cpu:.2} us CPU/record  ({:.2} of raw, CPU +{:.2} us; commits on; rounds: {})",
            rate / raw_rate,
            cpu - raw_cpu,
            fmt(&rates(&runs[i]))
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
