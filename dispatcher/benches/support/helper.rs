//! The helper process: every producer runs in a child process of the
//! benchmark, so that the benchmark's CPU time and resident set are its
//! consumers' (and, on the embedded cluster, the broker's, which the
//! benchmark subtracts from CPU: see [`super::cpu_time`]).
//!
//! The benchmark starts the same executable with `BENCH_ROLE=helper` and
//! `BENCH_HELPER_BROKERS=<bootstrap servers>` and talks to it one line at a
//! time on its stdin and stdout:
//!
//! ```text
//! <- ready
//! -> topic <name> <partitions>                    <- ok | err <why>   (AdminClient)
//! -> produce <topic> <records> <compression>      <- produced <delivered> <failed> <seconds>
//! -> paced <topic> <records/s> <records>          <- produced <delivered> <failed> <seconds>
//! ```
//!
//! Counts are what the producer's delivery reports confirmed, never a
//! broker's high watermark (tansu's can be short). The helper ends when its
//! stdin closes.

use super::{unix_nanos, KEYS, PAYLOAD};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientConfig;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The benchmark's end of the helper.
pub(crate) struct Helper {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Helper {
    /// Starts the helper, producing to `brokers`, and waits until it is
    /// ready.
    pub(crate) fn start(brokers: &str) -> Helper {
        let exe = std::env::current_exe().expect("the benchmark's executable");
        let mut child = Command::new(exe)
            .env("BENCH_ROLE", "helper")
            .env("BENCH_HELPER_BROKERS", brokers)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the helper process");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("helper stdout"));
        let mut helper = Helper {
            child,
            stdin,
            stdout,
        };
        let ready = helper.reply();
        assert_eq!(ready, "ready", "helper");
        helper
    }

    fn reply(&mut self) -> String {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("read from the helper");
        assert!(!line.is_empty(), "the helper process ended");
        line.trim_end().to_owned()
    }

    fn call(&mut self, command: &str) -> String {
        let stdin = self.stdin.as_mut().expect("helper stdin");
        writeln!(stdin, "{command}").expect("write to the helper");
        stdin.flush().expect("write to the helper");
        self.reply()
    }

    /// Creates a topic on a real cluster with the AdminClient.
    pub(crate) fn topic(&mut self, name: &str, partitions: i32) {
        let reply = self.call(&format!("topic {name} {partitions}"));
        assert_eq!(reply, "ok", "creating topic {name}");
    }

    /// Produces `records` bulk records as fast as the producer goes;
    /// returns how many were delivered.
    pub(crate) fn produce(&mut self, topic: &str, records: usize, compression: &str) -> usize {
        parse_produced(&self.call(&format!("produce {topic} {records} {compression}")))
    }

    /// Produces `records` records at `rate` per second, each stamped with
    /// its send time; returns how many were delivered once all are.
    pub(crate) fn paced(&mut self, topic: &str, rate: u64, records: usize) -> usize {
        parse_produced(&self.call(&format!("paced {topic} {rate} {records}")))
    }
}

fn parse_produced(reply: &str) -> usize {
    let words: Vec<&str> = reply.split_whitespace().collect();
    match words[..] {
        ["produced", ok, failed, _] => {
            if failed != "0" {
                eprintln!(
                    "helper: {failed} records failed to be produced; counting the {ok} delivered"
                );
            }
            ok.parse().expect("a count")
        }
        _ => panic!("helper: {reply}"),
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        // Closing stdin ends the helper; kill it (ours, by its handle) if
        // it does not end within 10 seconds.
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `KAFKA_BROKERS`, when set and not empty.
pub(crate) fn external_brokers() -> Option<String> {
    std::env::var("KAFKA_BROKERS")
        .ok()
        .filter(|b| !b.trim().is_empty())
}

/// Counts the producer's delivery reports.
#[derive(Default)]
struct Counting {
    delivered: AtomicUsize,
    failed: AtomicUsize,
}

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.delivered.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// The helper's side: runs until stdin closes.
pub(crate) fn serve() {
    let brokers = std::env::var("BENCH_HELPER_BROKERS").expect("BENCH_HELPER_BROKERS");
    println!("ready");
    let keys: Vec<String> = (0..KEYS).map(|k| format!("key-{k:05}")).collect();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        let reply = match words[..] {
            ["topic", name, partitions] => {
                let partitions: i32 = partitions.parse().expect("partitions");
                match create_topic(&brokers, name, partitions) {
                    Ok(()) => "ok".to_owned(),
                    Err(e) => format!("err {e}"),
                }
            }
            ["produce", topic, records, compression] => produce(
                &brokers,
                topic,
                records.parse().expect("records"),
                None,
                compression,
                &keys,
            ),
            ["paced", topic, rate, records] => produce(
                &brokers,
                topic,
                records.parse().expect("records"),
                Some(rate.parse().expect("rate")),
                "none",
                &keys,
            ),
            _ => format!("err unknown command {line}"),
        };
        println!("{reply}");
    }
}

/// Creates a topic on a real cluster with the AdminClient and waits until
/// its metadata shows every partition.
fn create_topic(brokers: &str, name: &str, partitions: i32) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let results = rt
        .block_on(admin.create_topics(
            &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        ))
        .map_err(|e| e.to_string())?;
    for result in results {
        result.map_err(|(topic, e)| format!("{topic}: {e}"))?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metadata = admin
            .inner()
            .fetch_metadata(Some(name), Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        let ready = metadata.topics().iter().any(|t| {
            t.name() == name
                && t.error().is_none()
                && t.partitions().len() == usize::try_from(partitions).unwrap_or(0)
                && t.partitions().iter().all(|p| p.leader() >= 0)
        });
        if ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{name} has no leaders for its {partitions} partitions after 30 s"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Produces `records` records of [`PAYLOAD`] bytes with keys taken in
/// turn: as fast as it goes (`rate` None), or paced at `rate` records per
/// second, sending every millisecond those due and stamping each with its
/// send time. Replies with the delivered and failed counts.
fn produce(
    brokers: &str,
    topic: &str,
    records: usize,
    rate: Option<u64>,
    compression: &str,
    keys: &[String],
) -> String {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("compression.type", compression)
        .set("queue.buffering.max.messages", "1000000")
        .set("message.timeout.ms", "120000");
    match rate {
        // Bulk: large batches.
        None => config
            .set("linger.ms", "20")
            .set("batch.num.messages", "10000"),
        // Paced: the producer's batching delay is part of every latency.
        Some(_) => config.set("linger.ms", paced_linger_ms()),
    };
    let producer: BaseProducer<Counting> = config
        .create_with_context(Counting::default())
        .expect("producer");
    let mut payload = [b'x'; PAYLOAD];
    // Bulk records are stamped zero (warm-up, for a paced run's consumer).
    payload[..8].fill(0);
    let start = Instant::now();
    let mut sent = 0usize;
    while sent < records {
        // How many records are due by now.
        let due = match rate {
            None => records,
            Some(r) => {
                let elapsed = start.elapsed().as_secs_f64();
                ((elapsed * r as f64) as usize + 1).min(records)
            }
        };
        while sent < due {
            if rate.is_some() {
                payload[..8].copy_from_slice(&unix_nanos().to_le_bytes());
            }
            let mut record = BaseRecord::to(topic)
                .key(keys[sent % keys.len()].as_str())
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
            sent += 1;
            if sent % 10_000 == 0 {
                producer.poll(Duration::ZERO);
            }
        }
        if rate.is_some() {
            producer.poll(Duration::ZERO);
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let _ = producer.flush(Duration::from_secs(120));
    let ctx = producer.context();
    format!(
        "produced {} {} {:.3}",
        ctx.delivered.load(Ordering::Relaxed),
        ctx.failed.load(Ordering::Relaxed),
        start.elapsed().as_secs_f64()
    )
}

/// The paced producer's `linger.ms`: `BENCH_LINGER_MS`, default 1 on a
/// real cluster and 5 on the embedded one. The embedded cluster finds the
/// batch that holds a fetch's offset by walking the partition's batches
/// from the first (librdkafka's mock, `rd_kafka_mock_msgset_find`, which
/// keeps no index), so a producer's many small batches make every fetch
/// slower as a run goes on: at `linger.ms=1`, 10,000 records/s for 10 s on
/// 4 partitions, the p99 latency of every consumer, raw or not, climbed to
/// hundreds of milliseconds. Five times fewer batches keep it flat.
pub(crate) fn paced_linger_ms() -> String {
    super::knob::<u64>("BENCH_LINGER_MS")
        .unwrap_or(if external_brokers().is_some() { 1 } else { 5 })
        .to_string()
}
