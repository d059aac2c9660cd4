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
//! The dispatcher's rebalance log events are appended to the same file as
//! marker lines, `# assigned PID ...`, `# revoked PID ...` and
//! `# drained PID ...`, so the checker can tell assignment epochs apart.
//!
//! The periodic commit runs every 200 ms unless `E2E_COMMIT_INTERVAL_MS`
//! says otherwise.
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
            let (key, seq) = payload
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
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_owned(),
            "partitions" => self.partitions = value.to_owned(),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "partitions" => self.partitions = format!("{value:?}"),
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
        } else {
            return;
        };
        let partitions = fields.partitions.replace(' ', "");
        append(&format!("# {kind} {} {partitions}\n", std::process::id()));
    }
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
    let max_sleep = std::env::var("E2E_MAX_SLEEP_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    MAX_SLEEP_MS.set(max_sleep).expect("set once");

    let commit_interval_ms = std::env::var("E2E_COMMIT_INTERVAL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);

    let stderr_filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,librdkafka=warn"));
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(stderr_filter),
        )
        .with(Markers.with_filter(filter::filter_fn(|m| {
            m.target().starts_with("dispatcher") && *m.level() <= Level::INFO
        })))
        .init();

    let spec = HandlerSpec::new("append_to_log", topics, &APPEND_TO_LOG)
        .declared_at(module_path!(), file!(), line!())
        .with_policy(Policy::DEFAULT.with_ordering(OrderingMode::Key));
    let built = Dispatcher::builder()
        .without_registered_handlers()
        .handler(spec)
        .client_id(format!("test_consumer-{}", std::process::id()))
        .kafka_property("session.timeout.ms", "6000")
        .kafka_property("heartbeat.interval.ms", "1000")
        .commit_interval(Duration::from_millis(commit_interval_ms))
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
