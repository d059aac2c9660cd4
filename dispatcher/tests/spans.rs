//! A handler's own `tracing` events carry the coordinates of the record it
//! handles, from the span the dispatcher opens around every attempt.

use dispatcher::testing::TestKit;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Every line the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("try again")]
struct Again;

/// Logs, and fails its first attempt at `retry` records.
#[dispatcher::kafka_handler(topic = "it-spans", retry = Again, max_attempts = 2, backoff = fixed("10ms"))]
async fn logging(body: &str) -> Result<(), Again> {
    tracing::info!(body, "the handler speaks");
    static FAILED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if body == "retry" && !FAILED.swap(true, std::sync::atomic::Ordering::AcqRel) {
        return Err(Again);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handlers_events_carry_the_records_coordinates_and_attempt() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .with_env_filter("info")
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    let kit = TestKit::start(TestKit::builder().topics(["it-spans"]))
        .await
        .expect("start");
    let (partition, offset) = kit
        .publish("it-spans", Some("customer-9"), "retry")
        .await
        .expect("publish");
    kit.outcome("it-spans", partition, offset, Duration::from_secs(30))
        .await
        .expect("handled");
    kit.shutdown().await.expect("clean shutdown");
    let text = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf-8");
    let spoke: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("the handler speaks"))
        .collect();
    assert_eq!(spoke.len(), 2, "two attempts:\n{text}");
    for (line, attempt) in spoke.iter().zip(1..) {
        for field in [
            "process{".to_owned(),
            r#"messaging.destination.name="it-spans""#.to_owned(),
            format!("messaging.destination.partition.id={partition}"),
            format!("messaging.kafka.offset={offset}"),
            r#"messaging.kafka.message.key="customer-9""#.to_owned(),
            format!(r#"messaging.consumer.group.name="{}""#, kit_group(&text)),
            r#"handler="spans::logging""#.to_owned(),
            format!("attempt={attempt}"),
        ] {
            assert!(line.contains(&field), "{field} missing from: {line}");
        }
    }
}

/// The group the kit ran in, as the dispatcher logged it at startup.
fn kit_group(log: &str) -> String {
    log.lines()
        .find_map(|l| {
            let rest = l.split("consumer started group=\"").nth(1)?;
            Some(rest.split('"').next()?.to_owned())
        })
        .unwrap_or_default()
}
