//! The quickstart: three handlers on the embedded broker.
//!
//! It publishes a few hundred sample records, lets the handlers process
//! them (some fail and are retried, some cannot be processed and go to the
//! dead-letter topic), prints a summary and exits.
//!
//! ```text
//! cargo run --example quickstart
//! KAFKA_BROKERS=localhost:9092 cargo run --example quickstart   # a real cluster
//! ```

use dispatcher::event::{Outcome, RecordEvent};
use dispatcher::{kafka_handler, Dispatcher, Json, Message};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,dispatcher=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

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
    let shutdown = dispatcher.shutdown_handle();
    let running = tokio::spawn(dispatcher.run());

    let records = samples();
    let total = records.len();
    let producer = dispatcher::testing::Producer::new(&brokers)?;
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
    println!("published {total} records to {brokers}; processing...");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(50);
    while tally.lock().expect("not poisoned").finished() < total
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.shutdown();
    running.await??;

    let tally = tally.lock().expect("not poisoned");
    println!();
    println!("Quickstart summary (brokers {brokers}, consumer group {group:?})");
    println!(
        "{:<10} {:>9} {:>8} {:>8} {:>14}",
        "topic", "published", "handled", "retries", "dead-lettered"
    );
    for (topic, c) in &tally.by_topic {
        println!(
            "{topic:<10} {:>9} {:>8} {:>8} {:>14}",
            c.published, c.handled, c.retries, c.dead_lettered
        );
    }
    let finished = tally.finished();
    println!();
    for ((topic, why), n) in &tally.dead_letters {
        println!("dead letters in {topic}: {n} {why}");
    }
    println!(
        "Dead letters keep the original key, payload and headers, plus dlt.* headers saying why."
    );
    println!("Offsets were committed only after each record finished.");
    if finished < total {
        return Err(format!("only {finished} of {total} records finished within 50 s").into());
    }
    Ok(())
}
