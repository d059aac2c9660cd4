//! Scaling: I/O-bound handlers (a simulated call of 1 ms or 10 ms) at
//! in-flight caps from 16 to 4096, at default settings, on the embedded
//! broker (or `KAFKA_BROKERS`).
//!
//! ```text
//! cargo bench -p dispatcher --bench scaling
//! BENCH_LATENCIES_MS=1 BENCH_CAPS=16,256 cargo bench -p dispatcher --bench scaling
//! ```
//!
//! Each row gives the achieved rate against its bound, min(cap / measured
//! handler time, raw rate), where the handler time is measured inside the
//! handler (a 1 ms tokio sleep takes longer than 1 ms, and much longer on a
//! saturated machine) and the raw rate is a plain rdkafka loop over the
//! same records; the longest stretch during which records were waiting in
//! Kafka and no handler was running; the CPU the whole process spent per
//! record; and how many handlers ran at once on average. Rates, CPU and the
//! average are measured over the steady state: from the 10th to the 90th
//! percent of the records.

use dispatcher::broker::EmbeddedBroker;
use dispatcher::handler::{Handler, HandlerFuture, HandlerSpec};
use dispatcher::{Dispatcher, Message};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;
use support::cpu_time;

const PARTITIONS: i32 = 4;
const KEYS: usize = 10_000;

static DONE: AtomicUsize = AtomicUsize::new(0);
static RUNNING: AtomicUsize = AtomicUsize::new(0);
static BUSY_NANOS: AtomicU64 = AtomicU64::new(0);
static LATENCY_MICROS: AtomicU64 = AtomicU64::new(1_000);

struct Sleeper;
impl Handler for Sleeper {
    fn call(&self, _msg: Message) -> HandlerFuture<'static> {
        Box::pin(async move {
            RUNNING.fetch_add(1, Ordering::Relaxed);
            let t = Instant::now();
            tokio::time::sleep(Duration::from_micros(
                LATENCY_MICROS.load(Ordering::Relaxed),
            ))
            .await;
            BUSY_NANOS.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
            RUNNING.fetch_sub(1, Ordering::Relaxed);
            DONE.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
    }
}
static SLEEPER: Sleeper = Sleeper;

fn produce(brokers: &str, topic: &str, n: usize) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    let payload = [b'x'; 100];
    for i in 0..n {
        let key = format!("key-{:05}", i % KEYS);
        let mut record = BaseRecord::to(topic)
            .key(key.as_str())
            .payload(&payload[..]);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(5));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
}

/// A plain BaseConsumer loop over the topic: the ceiling for this machine.
fn raw_rate(brokers: &str, topic: &str, n: usize) -> f64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("scaling-raw-{topic}"))
        .set("auto.offset.reset", "earliest")
        .set("fetch.queue.backoff.ms", "10")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut seen = 0;
    let mut start = None;
    while seen < n {
        if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
            start.get_or_insert_with(Instant::now);
            seen += 1;
        }
    }
    n as f64 / start.expect("records").elapsed().as_secs_f64()
}

struct Row {
    rate: f64,
    handler_ms: f64,
    longest_idle: Duration,
    cpu_us_per_record: f64,
    /// Handlers running at once, on average over the run.
    avg_running: f64,
}

fn dispatched(broker: &Arc<EmbeddedBroker>, topic: &'static str, n: usize, cap: usize) -> Row {
    DONE.store(0, Ordering::SeqCst);
    BUSY_NANOS.store(0, Ordering::SeqCst);
    let spec = HandlerSpec::new(
        "sleeper",
        Box::leak(vec![topic].into_boxed_slice()),
        &SLEEPER,
    );
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
            .group_id(format!("scaling-{topic}"))
            .max_in_flight(cap)
            .partition_buffer(
                std::env::var("BENCH_PARTITION_BUFFER")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(5_000),
            )
            .handle_signals(false)
            .build()
            .expect("build");
        let stop = d.shutdown_handle();
        let run = tokio::spawn(d.run());
        // Sample every millisecond. Rates, CPU and the in-flight
        // average are taken over the steady state, from the 10th to the
        // 90th percent of the records (the ramp up and the last records of
        // each key are left out); idle stretches over the whole run.
        let mut started = false;
        let mut window: Option<(Instant, Duration, usize)> = None;
        let mut measured: Option<(f64, f64)> = None;
        let mut idle_since: Option<Instant> = None;
        let mut longest_idle = Duration::ZERO;
        let (mut running_sum, mut samples) = (0u64, 0u64);
        loop {
            let done = DONE.load(Ordering::Relaxed);
            let now = Instant::now();
            let running = RUNNING.load(Ordering::Relaxed);
            if done >= n {
                break;
            }
            if done > 0 || running > 0 {
                started = true;
            }
            if started {
                if running == 0 {
                    let since = *idle_since.get_or_insert(now);
                    longest_idle = longest_idle.max(now - since);
                } else {
                    idle_since = None;
                }
            }
            match window {
                None if done >= n / 10 => window = Some((now, cpu_time(), done)),
                Some((t0, cpu0, done0)) if measured.is_none() => {
                    running_sum += running as u64;
                    samples += 1;
                    if done >= n * 9 / 10 {
                        let count = (done - done0) as f64;
                        let cpu = cpu_time().saturating_sub(cpu0).as_secs_f64();
                        measured = Some((count / (now - t0).as_secs_f64(), cpu * 1e6 / count));
                    }
                }
                _ => {}
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let (rate, cpu_us_per_record) = measured.expect("the run passed 90 percent");
        stop.shutdown();
        run.await.expect("join").expect("clean run");
        Row {
            rate,
            handler_ms: BUSY_NANOS.load(Ordering::Relaxed) as f64 / n as f64 / 1e6,
            longest_idle,
            cpu_us_per_record,
            avg_running: running_sum as f64 / samples.max(1) as f64,
        }
    })
}

fn list<T: std::str::FromStr>(var: &str, default: &str) -> Vec<T> {
    std::env::var(var)
        .unwrap_or_else(|_| default.to_owned())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

fn main() {
    let latencies: Vec<u64> = list("BENCH_LATENCIES_MS", "1,10");
    let caps: Vec<usize> = list("BENCH_CAPS", "16,64,256,1024,4096");
    let broker = Arc::new(EmbeddedBroker::start(1).expect("broker"));
    let brokers = broker.bootstrap_servers().to_owned();
    // The raw ceiling, on a topic of its own.
    let raw_n = 100_000;
    broker
        .create_topic("scaling-raw", PARTITIONS)
        .expect("topic");
    produce(&brokers, "scaling-raw", raw_n);
    let raw = raw_rate(&brokers, "scaling-raw", raw_n);
    println!("raw BaseConsumer loop: {raw:.0} records/s ({PARTITIONS} partitions, 100-byte records, {KEYS} keys)");
    println!(
        "{:>8} {:>6} {:>9} {:>12} {:>12} {:>8} {:>14} {:>12} {:>12}",
        "handler",
        "cap",
        "records",
        "rate/s",
        "bound/s",
        "ratio",
        "longest idle",
        "cpu us/rec",
        "avg running"
    );
    let mut worst = f64::MAX;
    for &ms in &latencies {
        LATENCY_MICROS.store(ms * 1000, Ordering::SeqCst);
        for &cap in &caps {
            // About three seconds of work at the bound, within what the
            // embedded broker keeps (about 5 MiB per partition).
            let guess = (cap as f64 / (ms as f64 * 1.2e-3)).min(raw);
            let n = ((guess * 3.0) as usize).clamp(5_000, 120_000);
            let topic: &'static str = Box::leak(format!("scaling-{ms}ms-{cap}").into_boxed_str());
            broker.create_topic(topic, PARTITIONS).expect("topic");
            produce(&brokers, topic, n);
            let row = dispatched(&broker, topic, n, cap);
            let bound = (cap as f64 / (row.handler_ms / 1e3)).min(raw);
            let ratio = row.rate / bound;
            worst = worst.min(ratio);
            println!(
                "{:>6}ms {:>6} {:>9} {:>12.0} {:>12.0} {:>8.2} {:>12.1}ms {:>12.2} {:>12.0}",
                ms,
                cap,
                n,
                row.rate,
                bound,
                ratio,
                row.longest_idle.as_secs_f64() * 1e3,
                row.cpu_us_per_record,
                row.avg_running
            );
        }
    }
    println!("worst_ratio_to_bound={worst:.2}");
}
