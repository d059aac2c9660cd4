//! With the `otel` feature and an OpenTelemetry layer, a record's W3C
//! `traceparent` is the parent of its span, and its dead letter carries the
//! trace on: same trace, the handler's span as parent.

use dispatcher::testing::TestKit;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use std::time::Duration;
use tracing_subscriber::layer::SubscriberExt;

#[derive(Debug, thiserror::Error)]
#[error("rejected")]
struct Rejected;

#[dispatcher::kafka_handler(topic = "it-otel")]
async fn rejecting(_body: &str) -> Result<(), Rejected> {
    Err(Rejected)
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traceparent_goes_from_the_record_to_its_span_and_on_to_its_dead_letter() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("it-otel")));
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");

    let kit = TestKit::start(TestKit::builder().topics(["it-otel"]))
        .await
        .expect("start");
    let traceparent = format!("00-{TRACE_ID}-{PARENT_SPAN}-01");
    let (partition, offset) = kit
        .producer()
        .send(
            "it-otel",
            None,
            Some(b"k".as_slice()),
            Some(b"payload".as_slice()),
            &[("traceparent", traceparent.as_bytes())],
        )
        .await
        .expect("publish");
    kit.outcome("it-otel", partition, offset, Duration::from_secs(30))
        .await
        .expect("dead-lettered");
    let letters = kit
        .read("it-otel.DLT", 1, Duration::from_secs(30))
        .await
        .expect("the dead letter");
    kit.shutdown().await.expect("clean shutdown");

    let carried = letters[0]
        .header("traceparent")
        .expect("the dead letter has a traceparent");
    let parts: Vec<&str> = carried.split('-').collect();
    assert_eq!(parts.len(), 4, "{carried}");
    assert_eq!(parts[1], TRACE_ID, "the same trace: {carried}");
    assert_ne!(parts[2], PARENT_SPAN, "a span of the handler's: {carried}");
    assert_eq!(
        letters[0]
            .headers
            .iter()
            .filter(|(name, _)| name == "traceparent")
            .count(),
        1,
        "one traceparent"
    );

    let _ = provider.force_flush();
    let spans = exporter.get_finished_spans().expect("spans");
    let process = spans
        .iter()
        .find(|s| s.name == "process it-otel")
        .unwrap_or_else(|| panic!("a span named after the topic in {spans:#?}"));
    assert_eq!(process.span_context.trace_id().to_string(), TRACE_ID);
    assert_eq!(process.parent_span_id.to_string(), PARENT_SPAN);
    assert_eq!(
        process.span_context.span_id().to_string(),
        parts[2],
        "the dead letter's parent is the handler's span"
    );
}
