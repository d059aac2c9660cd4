//! Throughput: a no-op handler through the dispatcher against a raw rdkafka
//! consume loop, on the same embedded broker and the same records.
//!
//! ```text
//! cargo bench -p dispatcher --bench throughput            # 400 000 records
//! BENCH_RECORDS=1000000 cargo bench -p dispatcher --bench throughput
//! ```
//!
//! Prints records per second for both and their ratio. Group joins are
//! excluded: each clock starts at the first record and stops at the last.

use dispatcher::{
    Dispatcher, EmbeddedBroker, Handler, HandlerFuture, HandlerSpec, Message, Ordering, Policy,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOPIC: &str = "bench";
const PARTITIONS: i32 = 32;
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
fn raw(brokers: &str, n: usize) -> f64 {
    let consumer: BaseConsumer = consumer_config(brokers, "bench-raw")
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
    fn call<'a>(&'a self, msg: &'a Message) -> HandlerFuture<'a> {
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
) -> f64 {
    COUNT.store(0, AtomicOrdering::SeqCst);
    *FIRST.lock().expect("lock") = None;
    let spec = HandlerSpec {
        name: label,
        module_path: "bench",
        file: file!(),
        line: line!(),
        topics: &[TOPIC],
        group: None,
        policy: Policy::DEFAULT.ordering(ordering),
        handler: &NOOP,
    };
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
            .group_id(format!("bench-{label}"))
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

fn main() {
    let n: usize = std::env::var("BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400_000);
    let broker = Arc::new(EmbeddedBroker::start(1).expect("broker"));
    broker.create_topic(TOPIC, PARTITIONS).expect("topic");
    let brokers = broker.bootstrap_servers().to_owned();
    let t = Instant::now();
    produce(&brokers, n);
    println!(
        "produced {n} records of 100 bytes, {KEYS} keys, {PARTITIONS} partitions in {:.2?}",
        t.elapsed()
    );
    let raw_rate = raw(&brokers, n);
    println!(
        "raw rdkafka BaseConsumer loop:        {:>10.0} records/s",
        raw_rate
    );
    for (ordering, label) in [
        (Ordering::Key, "key"),
        (Ordering::Partition, "partition"),
        (Ordering::Unordered, "unordered"),
    ] {
        let rate = dispatched(&broker, n, ordering, label);
        println!(
            "dispatcher, no-op handler, {label:<9} mode: {:>10.0} records/s  ({:.2} of raw, commits on)",
            rate,
            rate / raw_rate
        );
    }
}
