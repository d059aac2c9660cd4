//! A consumer process for end-to-end tests.
//!
//! Runs the dispatcher with one hand-written, key-ordered handler on the
//! topic `E2E_TOPIC`. For each record (payload `key:seq`) it appends the line
//! `key seq partition offset pid` to the file `E2E_LOG`, opened with
//! `O_APPEND` and written with one `write` per record, so a line in the log
//! means the record was handled. It sleeps a little (up to `E2E_MAX_SLEEP_MS`,
//! default 3 ms, split before and after the write) so that kills land while
//! records are in flight.
//!
//! A payload ending in `:poison` (`key:seq:poison`) is logged the same way,
//! then fails with an error the default policy dead-letters.
//!
//! The dispatcher's rebalance log events are appended to the same file as
//! marker lines, `# assigned PID ...`, `# revoked PID ...` and
//! `# drained PID ...`, so the checker can tell assignment epochs apart,
//! and each successful commit as `# committed PID topic[p]@offset,...`.
//!
//! Settings from the environment: `E2E_COMMIT_INTERVAL_MS` (default 200)
//! and `E2E_SESSION_TIMEOUT_MS` (default 6000); the dispatcher's own
//! environment settings apply as well (`DISPATCHER_PARTITION_BUFFER`,
//! `DISPATCHER_RDKAFKA_CONSUMER_PARTITION_ASSIGNMENT_STRATEGY`, ...).
//!
//! Brokers and group come from `KAFKA_BROKERS` and `KAFKA_GROUP_ID`. Exits 0
//! after a clean shutdown (SIGTERM/SIGINT), 1 when `run()` fails.

use dispatcher::handler::{Handler, HandlerFuture, HandlerSpec};
use dispatcher::policy::{OrderingMode, Policy};
use dispatcher::{Dispatcher, Message};
use std::fs::File;
use std::io::Write;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::Duration;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{filter, EnvFilter, Layer};

static LOG: OnceLock<File> = OnceLock::new();
static MAX_SLEEP_MS: OnceLock<u64> = OnceLock::new();

/// Appends one line with a single `write` (atomic with `O_APPEND`).
fn append(line: &str) {
    let mut file = LOG
        .get()
        .expect("the log is opened before the dispatcher runs");
    file.write_all(line.as_bytes())
        .expect("append a line to the e2e log");
}

struct AppendToLog;

/// What a poison record fails with: not retryable, so it is dead-lettered.
#[derive(Debug)]
struct Poison;

impl std::fmt::Display for Poison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("poison record (the test marks ~1% of records so)")
    }
}

impl std::error::Error for Poison {}

impl Handler for AppendToLog {
    fn call(&self, msg: Message) -> HandlerFuture<'static> {
        Box::pin(async move {
            let max = *MAX_SLEEP_MS.get().unwrap_or(&3);
            let before = rand::random_range(0..=max);
            let after = rand::random_range(0..=max.saturating_sub(before));
            if before > 0 {
                tokio::time::sleep(Duration::from_millis(before)).await;
            }
            let payload = String::from_utf8_lossy(msg.payload().unwrap_or_default()).into_owned();
            let (body, poison) = match payload.strip_suffix(":poison") {
                Some(body) => (body, true),
                None => (payload.as_str(), false),
            };
            let (key, seq) = body
                .split_once(':')
                .expect("payloads are written as key:seq");
            append(&format!(
                "{key} {seq} {} {} {}\n",
                msg.partition(),
                msg.offset(),
                std::process::id()
            ));
            if after > 0 {
                tokio::time::sleep(Duration::from_millis(after)).await;
            }
            if poison {
                return Err(dispatcher::handler::HandlerError::new(Poison));
            }
            Ok(())
        })
    }
}

static APPEND_TO_LOG: AppendToLog = AppendToLog;

/// Turns the dispatcher's rebalance log events into marker lines in the log.
struct Markers;

#[derive(Default)]
struct Fields {
    message: String,
    partitions: String,
    offsets: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_owned(),
            "partitions" => self.partitions = value.to_owned(),
            "offsets" => self.offsets = value.to_owned(),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "partitions" => self.partitions = format!("{value:?}"),
            "offsets" => self.offsets = format!("{value:?}"),
            _ => {}
        }
    }
}

impl<S: Subscriber> Layer<S> for Markers {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let kind = if fields.message.starts_with("partitions assigned") {
            "assigned"
        } else if fields.message.starts_with("partitions revoked") {
            "revoked"
        } else if fields.message.starts_with("partitions drained") {
            "drained"
        } else if fields.message == "offsets committed" {
            append(&format!(
                "# committed {} {}\n",
                std::process::id(),
                fields.offsets.replace(' ', "")
            ));
            return;
        } else {
            return;
        };
        let partitions = fields.partitions.replace(' ', "");
        append(&format!("# {kind} {} {partitions}\n", std::process::id()));
    }
}

/// The number in environment variable `name`, if set.
fn number(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
    })
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("the environment variable {name} is required"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let topic: &'static str = Box::leak(env("E2E_TOPIC").into_boxed_str());
    let topics: &'static [&'static str] = Box::leak(vec![topic].into_boxed_slice());
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(env("E2E_LOG"))
        .expect("open the e2e log");
    LOG.set(log).expect("the log is set once");
    MAX_SLEEP_MS
        .set(number("E2E_MAX_SLEEP_MS").unwrap_or(3))
        .expect("set once");

    let stderr_filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,librdkafka=warn"));
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(stderr_filter),
        )
        .with(Markers.with_filter(filter::filter_fn(|m| {
            m.target().starts_with("dispatcher")
                && (*m.level() <= Level::INFO || m.target() == "dispatcher::engine::commit")
        })))
        .init();

    let spec = HandlerSpec::new("append_to_log", topics, &APPEND_TO_LOG)
        .declared_at(module_path!(), file!(), line!())
        .with_policy(Policy::DEFAULT.with_ordering(OrderingMode::Key));
    let built = Dispatcher::builder()
        .without_registered_handlers()
        .handler(spec)
        .client_id(format!("test_consumer-{}", std::process::id()))
        .consumer_property(
            "session.timeout.ms",
            number("E2E_SESSION_TIMEOUT_MS").unwrap_or(6000).to_string(),
        )
        .consumer_property("heartbeat.interval.ms", "1000")
        .commit_interval(Duration::from_millis(
            number("E2E_COMMIT_INTERVAL_MS").unwrap_or(200),
        ))
        .drain_timeout(Duration::from_secs(5))
        .build();
    let dispatcher = match built {
        Ok(d) => d,
        Err(e) => {
            eprintln!("test_consumer: cannot build the dispatcher: {e}");
            return ExitCode::FAILURE;
        }
    };
    match dispatcher.run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("test_consumer: the dispatcher failed: {e}");
            ExitCode::FAILURE
        }
    }
}
