//! Faults of the Kafka client itself, each on an embedded broker of its own
//! (injected errors hit every client of a broker):
//!
//! - a fatal client error (a fenced static member) stops `run()` with the
//!   cause and the fix, instead of leaving a consumer that does nothing;
//! - an error that will not clear by itself (a topic the consumer may not
//!   read) stops `run()` once nothing was consumed for the error timeout;
//! - a shutdown while the group coordinator is down returns within the
//!   drain timeout plus the commit timeout (plus the wait for closing),
//!   instead of retrying a commit that cannot succeed.

use dispatcher::broker::{BrokerError, EmbeddedBroker, Request};
use dispatcher::error::ConsumerError;
use dispatcher::testing::TestKit;
use dispatcher::{Error, Message};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[dispatcher::kafka_handler(topic = ["it-client-fenced", "it-client-denied"])]
async fn quick(_msg: &Message) -> Result<(), std::io::Error> {
    Ok(())
}

#[dispatcher::kafka_handler(topic = "it-client-outage")]
async fn slowish(_msg: &Message) -> Result<(), std::io::Error> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(())
}

fn own_broker() -> Arc<EmbeddedBroker> {
    Arc::new(EmbeddedBroker::start(1).expect("start an embedded broker"))
}

/// Starts a kit on `broker` and waits until a first record is handled, so
/// the group is joined and fetching.
async fn running(
    broker: &Arc<EmbeddedBroker>,
    topic: &str,
    builder: dispatcher::DispatcherBuilder,
) -> TestKit {
    let kit = TestKit::start(builder.topics([topic]).embedded_broker(broker.clone()))
        .await
        .expect("start the test kit");
    let (p, o) = kit
        .publish(topic, Some("k"), "first")
        .await
        .expect("publish");
    kit.outcome(topic, p, o, Duration::from_secs(60))
        .await
        .expect("the first record is handled");
    kit
}

fn consumer_error(result: dispatcher::Result<()>) -> Box<ConsumerError> {
    match result {
        Err(Error::Consumer(c)) => c,
        other => panic!("expected a consumer error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_client_error_stops_run_with_the_cause_and_the_fix() {
    let broker = own_broker();
    let builder = TestKit::builder().kafka_property("group.instance.id", "it-client-fenced-1");
    let mut kit = running(&broker, "it-client-fenced", builder).await;
    // Another member with the same group.instance.id took over: the
    // coordinator fences this one.
    broker
        .fail_requests(Request::Heartbeat, BrokerError::FencedInstanceId, 1)
        .expect("inject the error");
    let result = tokio::time::timeout(Duration::from_secs(60), kit.join())
        .await
        .expect("run() returns after a fatal client error");
    let error = consumer_error(result);
    assert_eq!(error.code, "FENCED_INSTANCE_ID", "{error}");
    assert!(error.persisted.is_none(), "fatal at once: {error}");
    assert!(error.fix.contains("group.instance.id"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_that_does_not_clear_stops_run_after_the_error_timeout() {
    let broker = own_broker();
    let builder = TestKit::builder().error_timeout(Duration::from_secs(3));
    let mut kit = running(&broker, "it-client-denied", builder).await;
    // From now on the consumer may not read the topic; librdkafka reports
    // it once per partition and keeps retrying quietly.
    broker
        .fail_requests(
            Request::Fetch,
            BrokerError::TopicAuthorizationFailed,
            100_000,
        )
        .expect("inject the error");
    let result = tokio::time::timeout(Duration::from_secs(60), kit.join())
        .await
        .expect("run() returns once nothing was consumed for the error timeout");
    broker.clear_failures(Request::Fetch).expect("clear");
    let error = consumer_error(result);
    assert_eq!(error.code, "TOPIC_AUTHORIZATION_FAILED", "{error}");
    let persisted = error.persisted.expect("not fatal at once");
    assert!(persisted >= Duration::from_secs(3), "{error}");
    assert!(error.fix.contains("READ"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_during_a_coordinator_outage_is_bounded() {
    let broker = own_broker();
    let (drain, commit) = (Duration::from_secs(2), Duration::from_secs(2));
    let builder = TestKit::builder()
        .drain_timeout(drain)
        .commit_timeout(commit)
        // librdkafka would wait this long for a coordinator before failing
        // a commit.
        .kafka_property("session.timeout.ms", "30000");
    let kit = running(&broker, "it-client-outage", builder).await;
    for i in 0..20 {
        kit.publish("it-client-outage", Some(&format!("k{i}")), "x")
            .await
            .expect("publish");
    }
    // Records are in flight; then the only broker (the coordinator) goes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    broker.broker_down(1).expect("take the broker down");
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(120), kit.shutdown())
        .await
        .expect("shutdown returns");
    let took = started.elapsed();
    result.expect("a shutdown is clean even when the commit cannot be made");
    // Draining, committing and waiting for the consumer to leave the group
    // are each bounded; some slack for the drain's own margin and a slow machine.
    let bound = drain + commit + commit + Duration::from_secs(5);
    assert!(
        took <= bound,
        "shutdown took {took:?}, more than drain + commit timeout + close wait ({bound:?})"
    );
    broker.broker_up(1).expect("bring the broker back");
}
