//! The quickstart: three handlers on an embedded broker, no Kafka needed.
//!
//! It publishes 350 sample records to `orders`, `payments` and `audit` and
//! lets three handlers process them: every tenth payment fails once and is
//! retried, and orders that cannot be processed (malformed JSON, a negative
//! amount) go to the dead-letter topic `orders.DLT`. It then prints a
//! summary, reads one dead letter back from `orders.DLT` with its headers
//! (the `dlt.*` ones say why it is there), and exits.
//!
//! Only the dispatcher's errors are logged (a fatal stop, a dead letter that
//! could not be written) unless `RUST_LOG` is set, which then replaces that
//! filter: `RUST_LOG=info` shows every retry, dead letter and lifecycle step.
//!
//! ```text
//! cargo run --example quickstart
//! RUST_LOG=info cargo run --example quickstart                   # the full logs
//! DISPATCHER_METRICS_ADDRESS=127.0.0.1:9898 cargo run --example quickstart
//! KAFKA_BROKERS=localhost:9092 cargo run --example quickstart    # a real cluster
//! cargo test --workspace                                         # the tests
//! ```
//!
//! With `DISPATCHER_METRICS_ADDRESS` set, the quickstart keeps running after
//! the summary, serving Prometheus metrics at `http://<address>/metrics` and
//! readiness at `http://<address>/health/ready`, until Ctrl-C.

use dispatcher::dead_letter::headers::{
    ORIGINAL_OFFSET, ORIGINAL_PARTITION, ORIGINAL_TOPIC, REASON,
};
use dispatcher::event::{Outcome, RecordEvent};
use dispatcher::testing::{self, ReadRecord};
use dispatcher::{kafka_handler, Dispatcher, Json, Message};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Deserialize)]
struct Order {
    id: u64,
    customer: String,
    amount_cents: i64,
}

/// A business rule violation: retrying cannot fix it, so the record is
/// dead-lettered with this message.
#[derive(Debug, thiserror::Error)]
enum OrderError {
    #[error("order {0} has a negative amount")]
    NegativeAmount(u64),
}

/// Orders arrive as JSON. Malformed JSON never reaches this function: it
/// is dead-lettered as undecodable. Negative amounts are rejected.
#[kafka_handler(topic = "orders", max_attempts = 3, backoff = fixed("50ms"))]
async fn on_order(order: Json<Order>) -> Result<(), OrderError> {
    if order.amount_cents < 0 {
        return Err(OrderError::NegativeAmount(order.id));
    }
    tracing::debug!(id = order.id, customer = %order.customer, "order accepted");
    Ok(())
}

/// Offsets whose first attempt already failed, to simulate a gateway that
/// times out once and then works.
static FLAKY_SEEN: Mutex<Option<HashSet<(i32, i64)>>> = Mutex::new(None);

/// Payments call a flaky gateway: every tenth payment fails once with an
/// I/O error, is retried after a short backoff, and then succeeds.
#[kafka_handler(
    topic = "payments",
    retry = std::io::Error,
    max_attempts = 4,
    backoff = exponential(initial = "20ms", max = "200ms", factor = 2.0)
)]
async fn on_payment(msg: &Message, body: String) -> anyhow::Result<()> {
    let flaky = body.ends_with('0');
    if flaky {
        let mut seen = FLAKY_SEEN.lock().expect("not poisoned");
        if seen
            .get_or_insert_with(HashSet::new)
            .insert((msg.partition(), msg.offset()))
        {
            let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "payment gateway timed out");
            return Err(anyhow::Error::new(io).context(format!("charging {body}")));
        }
    }
    Ok(())
}

/// Audit events are plain bytes, in any order.
#[kafka_handler(topic = "audit", ordering = unordered, concurrency = 8)]
async fn on_audit(event: &[u8]) -> Result<(), std::io::Error> {
    tracing::trace!(bytes = event.len(), "audit event");
    Ok(())
}

/// Counts of what happened, per topic.
#[derive(Default)]
struct Tally {
    by_topic: BTreeMap<String, Counts>,
    /// Dead letters by topic and reason.
    dead_letters: BTreeMap<(String, String), usize>,
    /// The source (topic, partition, offset) of every dead letter of this
    /// run, in the order they were written.
    dead_lettered: Vec<(String, i32, i64)>,
}

#[derive(Default, Clone, Copy)]
struct Counts {
    published: usize,
    handled: usize,
    retries: usize,
    dead_lettered: usize,
    fatal: usize,
}

impl Tally {
    fn record(&mut self, e: &RecordEvent) {
        let c = self.by_topic.entry(e.topic.to_string()).or_default();
        match &e.outcome {
            Outcome::Handled { .. } => c.handled += 1,
            Outcome::Retrying { .. } => c.retries += 1,
            Outcome::DeadLettered {
                reason,
                dead_letter_topic,
                ..
            } => {
                c.dead_lettered += 1;
                let why = reason.split(':').next().unwrap_or_default().to_owned();
                *self
                    .dead_letters
                    .entry((dead_letter_topic.clone(), why))
                    .or_default() += 1;
                self.dead_lettered
                    .push((e.topic.to_string(), e.partition, e.offset));
            }
            Outcome::Fatal { .. } => c.fatal += 1,
            _ => {}
        }
    }

    fn finished(&self) -> usize {
        self.by_topic
            .values()
            .map(|c| c.handled + c.dead_lettered + c.fatal)
            .sum()
    }

    fn print(&self) {
        println!(
            "{:<10} {:>9} {:>8} {:>8} {:>14}",
            "topic", "published", "handled", "retries", "dead-lettered"
        );
        for (topic, c) in &self.by_topic {
            println!(
                "{topic:<10} {:>9} {:>8} {:>8} {:>14}",
                c.published, c.handled, c.retries, c.dead_lettered
            );
        }
        let mut by_dlt: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for ((topic, why), n) in &self.dead_letters {
            by_dlt.entry(topic).or_default().push(format!("{n} {why}"));
        }
        println!();
        for (topic, counts) in by_dlt {
            println!("Dead letters in {topic}: {}.", counts.join(", "));
        }
    }
}

/// The sample data: (topic, key, payload).
fn samples() -> Vec<(&'static str, String, String)> {
    let mut out = Vec::new();
    for i in 0..200u64 {
        let customer = format!("customer-{}", i % 12);
        let payload = match i {
            i if i % 25 == 7 => format!("{{\"id\": {i}, \"customer\": "), // truncated JSON
            i if i % 40 == 13 => {
                format!(r#"{{"id":{i},"customer":"{customer}","amount_cents":-{i}}}"#)
            }
            i => format!(
                r#"{{"id":{i},"customer":"{customer}","amount_cents":{}}}"#,
                100 + i
            ),
        };
        out.push(("orders", customer, payload));
    }
    for i in 0..100u64 {
        out.push((
            "payments",
            format!("account-{}", i % 7),
            format!("payment-{i}"),
        ));
    }
    for i in 0..50u64 {
        out.push(("audit", format!("session-{i}"), format!("login {i}")));
    }
    out
}

/// The dead-letter topic the example reads back.
const DEAD_LETTER_TOPIC: &str = "orders.DLT";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Reads `topic` back from Kafka and returns one of this run's dead
/// letters (`ours` are their sources), preferring one the handler itself
/// rejected over one that could not be decoded.
async fn read_dead_letter(
    brokers: &str,
    topic: &str,
    ours: Vec<(String, i32, i64)>,
) -> Result<Option<ReadRecord>, BoxError> {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        // Everything in the topic, older runs' dead letters included (a real
        // cluster keeps them): the reader starts at the beginning.
        let count = testing::end_offsets(&brokers, &topic)?
            .values()
            .sum::<i64>();
        let count = usize::try_from(count).unwrap_or_default();
        let records = testing::read_topic(&brokers, &topic, count, Duration::from_secs(10))?;
        let source = |r: &ReadRecord| {
            Some((
                r.header(ORIGINAL_TOPIC)?,
                r.header(ORIGINAL_PARTITION)?.parse::<i32>().ok()?,
                r.header(ORIGINAL_OFFSET)?.parse::<i64>().ok()?,
            ))
        };
        // The same one every run on the embedded broker: the earliest
        // source, among the records the handler rejected if there are any.
        let undecodable = |r: &ReadRecord| r.header(REASON).as_deref() == Some("undecodable");
        Ok(records
            .into_iter()
            .filter_map(|r| Some((undecodable(&r), source(&r)?, r)))
            .filter(|(_, source, _)| ours.contains(source))
            .min_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)))
            .map(|(_, _, r)| r))
    })
    .await?
}

/// Prints a dead letter: where it came from, its key, payload and headers.
fn print_dead_letter(topic: &str, r: &ReadRecord) {
    let text = |b: &Option<Vec<u8>>| match b {
        Some(b) => String::from_utf8_lossy(b).into_owned(),
        None => "(null)".to_owned(),
    };
    println!(
        "One dead letter, read back from {topic} (partition {}, offset {}):",
        r.partition, r.offset
    );
    if let (Some(t), Some(p), Some(o)) = (
        r.header(ORIGINAL_TOPIC),
        r.header(ORIGINAL_PARTITION),
        r.header(ORIGINAL_OFFSET),
    ) {
        println!("  source   {t}, partition {p}, offset {o}");
    }
    println!("  key      {}", text(&r.key));
    println!("  payload  {}", text(&r.payload));
    println!("  headers  (the dlt.* ones say why it is here)");
    for (name, value) in &r.headers {
        println!("    {name} = {}", text(value));
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // Quiet by default: only the dispatcher's errors (a fatal stop, a dead
    // letter that could not be written). RUST_LOG, when set, replaces this.
    // `Dispatcher::run` keeps a subscriber the program installed.
    let filter = match std::env::var_os("RUST_LOG") {
        Some(_) => EnvFilter::from_default_env(),
        None => EnvFilter::new("dispatcher=error"),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // The dispatcher reads this setting itself and serves metrics there;
    // the quickstart then stays up until Ctrl-C to let you look at them.
    let metrics = std::env::var("DISPATCHER_METRICS_ADDRESS")
        .ok()
        .filter(|a| !a.is_empty());

    let tally = Arc::new(Mutex::new(Tally::default()));
    let t = tally.clone();
    let dispatcher = Dispatcher::builder()
        .topics(["orders", "payments", "audit"])
        .on_event(move |e| t.lock().expect("not poisoned").record(e))
        .build()?;
    let brokers = dispatcher.bootstrap_servers().to_owned();
    let group = dispatcher
        .subscriptions()
        .into_keys()
        .next()
        .unwrap_or_default();
    if dispatcher.embedded_broker().is_some() {
        println!("Embedded Kafka broker at {brokers} (set KAFKA_BROKERS for a real cluster).");
    } else {
        println!("Kafka brokers: {brokers}.");
    }
    let shutdown = dispatcher.shutdown_handle();
    let mut running = tokio::spawn(dispatcher.run());

    let records = samples();
    let total = records.len();
    let producer = testing::Producer::new(&brokers)?;
    for (topic, key, payload) in &records {
        producer.publish(topic, Some(key), payload).await?;
        tally
            .lock()
            .expect("not poisoned")
            .by_topic
            .entry(topic.to_string())
            .or_default()
            .published += 1;
    }
    println!(
        "Published {total} records to orders, payments and audit; group {group:?} is processing..."
    );

    let deadline = tokio::time::Instant::now() + Duration::from_secs(50);
    while tally.lock().expect("not poisoned").finished() < total
        && tokio::time::Instant::now() < deadline
        && !running.is_finished()
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Without a metrics address (or after a fatal stop), stop now: the
    // dispatcher drains, commits the final offsets and returns.
    let keep_running = metrics.filter(|_| !running.is_finished());
    if keep_running.is_none() {
        shutdown.shutdown();
        (&mut running).await??;
    }

    let (finished, ours) = {
        let tally = tally.lock().expect("not poisoned");
        println!();
        tally.print();
        (tally.finished(), tally.dead_lettered.clone())
    };
    println!("Offsets were committed only after each record finished.");
    if finished < total {
        return Err(format!("only {finished} of {total} records finished").into());
    }

    println!();
    match read_dead_letter(&brokers, DEAD_LETTER_TOPIC, ours).await {
        Ok(Some(record)) => print_dead_letter(DEAD_LETTER_TOPIC, &record),
        Ok(None) => println!("No dead letter of this run was found in {DEAD_LETTER_TOPIC}."),
        Err(e) => println!("Could not read {DEAD_LETTER_TOPIC} back: {e}"),
    }

    println!();
    println!("Next steps:");
    println!("  full logs       RUST_LOG=info cargo run --example quickstart");
    println!(
        "  serve metrics   DISPATCHER_METRICS_ADDRESS=127.0.0.1:9898 cargo run --example quickstart"
    );
    println!("  real cluster    KAFKA_BROKERS=host:9092 cargo run --example quickstart");
    println!("  the tests       cargo test --workspace");

    if let Some(address) = keep_running {
        println!();
        println!("Serving metrics at http://{address}/metrics and readiness at");
        println!("http://{address}/health/ready; press Ctrl-C to stop.");
        // Ctrl-C, or a fatal error that stopped the dispatcher by itself.
        let stopped = tokio::select! {
            signal = tokio::signal::ctrl_c() => { signal?; None }
            result = &mut running => Some(result),
        };
        let result = match stopped {
            Some(result) => result,
            None => {
                shutdown.shutdown();
                running.await
            }
        };
        result??;
    }
    Ok(())
}
