//! Consume-transform-produce with a `Publisher` argument: what a handler
//! writes reaches its topic, its input is committed after that, and a
//! publish the broker refuses fails the attempt (retried by the policy)
//! instead of being lost.

use dispatcher::broker::{BrokerError, EmbeddedBroker, Request};
use dispatcher::event::Outcome;
use dispatcher::extract::{PublishError, Publisher};
use dispatcher::testing::TestKit;
use dispatcher::Message;
use std::sync::Arc;
use std::time::Duration;

#[dispatcher::kafka_handler(
    topic = ["it-publish-in", "it-publish-refused-in"],
    retry = PublishError,
    max_attempts = 5,
    backoff = fixed("20ms")
)]
async fn shout(msg: &Message, text: &str, out: Publisher) -> Result<(), PublishError> {
    let target = format!("{}.out", msg.topic());
    out.send(&target, msg.key(), text.to_uppercase().as_bytes())
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_handler_publishes_is_written_and_its_input_committed() {
    let kit = TestKit::start(TestKit::builder().topics(["it-publish-in"]))
        .await
        .expect("a Publisher needs no state from the builder");
    let words = ["alpha", "beta", "gamma"];
    for w in words {
        let (p, o) = kit
            .publish("it-publish-in", Some(w), w)
            .await
            .expect("publish");
        let outcome = kit
            .outcome("it-publish-in", p, o, Duration::from_secs(30))
            .await
            .expect("an outcome");
        assert!(matches!(outcome, Outcome::Handled { .. }), "{outcome:?}");
    }
    let written = kit
        .read("it-publish-in.out", words.len(), Duration::from_secs(30))
        .await
        .expect("the handler's records");
    let mut payloads: Vec<_> = written
        .iter()
        .map(|r| String::from_utf8(r.payload.clone().unwrap_or_default()).expect("utf-8"))
        .collect();
    payloads.sort();
    assert_eq!(payloads, ["ALPHA", "BETA", "GAMMA"]);
    assert!(written.iter().all(|r| r.key.is_some()), "keys are kept");
    kit.wait_committed_to_end("it-publish-in", Duration::from_secs(30))
        .await
        .expect("the input is committed to its end");
    kit.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_publish_fails_the_attempt_and_is_retried() {
    // A broker of its own: the refused produce requests must not reach
    // other tests.
    let broker = Arc::new(EmbeddedBroker::start(1).expect("embedded broker"));
    let kit = TestKit::start(
        TestKit::builder()
            .embedded_broker(broker.clone())
            .topics(["it-publish-refused-in"]),
    )
    .await
    .expect("start");
    let (p, o) = kit
        .publish("it-publish-refused-in", Some("k"), "delta")
        .await
        .expect("publish");
    broker
        .fail_requests(Request::Produce, BrokerError::MessageTooLarge, 2)
        .expect("inject");
    let outcome = kit
        .outcome("it-publish-refused-in", p, o, Duration::from_secs(30))
        .await
        .expect("an outcome");
    match outcome {
        Outcome::Handled { attempts } => assert!(attempts >= 2, "refused first: {attempts}"),
        other => panic!("expected Handled after retries, got {other:?}"),
    }
    let written = kit
        .read("it-publish-refused-in.out", 1, Duration::from_secs(30))
        .await
        .expect("the record was written in the end");
    assert_eq!(written[0].payload.as_deref(), Some(b"DELTA".as_slice()));
    kit.wait_committed_to_end("it-publish-refused-in", Duration::from_secs(30))
        .await
        .expect("committed after the write");
    kit.shutdown().await.expect("clean shutdown");
}
