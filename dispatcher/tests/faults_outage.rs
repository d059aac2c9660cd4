//! A broker outage of about two seconds in the middle of a stream, on a
//! dedicated embedded broker (so the outage cannot disturb other tests):
//! every record is handled at least once, the committed offsets reach the
//! end after recovery, and the dispatcher still shuts down cleanly.

use dispatcher::broker::EmbeddedBroker;
use dispatcher::testing::{Producer, TestKit};
use dispatcher::Message;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TOPIC: &str = "it-faults-outage";
const RECORDS: usize = 300;

/// (partition, offset) of every record the handler saw.
static SEEN: Mutex<Vec<(i32, i64)>> = Mutex::new(Vec::new());
/// The payload of every record the handler saw.
static PAYLOADS: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
static HANDLED: AtomicUsize = AtomicUsize::new(0);
static PUBLISHED: AtomicUsize = AtomicUsize::new(0);

#[dispatcher::kafka_handler(topic = "it-faults-outage")]
async fn record(msg: &Message, payload: String) -> Result<(), std::io::Error> {
    tokio::time::sleep(Duration::from_millis(2)).await;
    PAYLOADS.lock().expect("payloads lock").insert(payload);
    SEEN.lock()
        .expect("seen lock")
        .push((msg.partition(), msg.offset()));
    HANDLED.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

fn seen() -> BTreeSet<(i32, i64)> {
    SEEN.lock().expect("seen lock").iter().copied().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_mid_stream_loses_nothing() {
    let broker = Arc::new(EmbeddedBroker::start(1).expect("a dedicated embedded broker"));
    let kit = TestKit::start(
        TestKit::builder()
            .topics([TOPIC])
            .embedded_broker(broker.clone()),
    )
    .await
    .expect("start the test kit");
    assert_eq!(kit.bootstrap_servers(), broker.bootstrap_servers());

    // One record first, so the group is joined and fetching.
    let producer = Producer::new(kit.bootstrap_servers()).expect("producer");
    let first = producer
        .publish(TOPIC, Some("warm-up"), "warm-up")
        .await
        .expect("publish");
    kit.wait_until("the first record handled", Duration::from_secs(60), |_| {
        seen().contains(&first)
    })
    .await
    .expect("the group is joined");
    // Then publish in the background, one record at a time, so records are
    // still arriving when the broker goes down and after it is back.
    let publisher = tokio::spawn(async move {
        let mut published = BTreeSet::from([first]);
        for i in 1..RECORDS {
            let at = producer
                .publish(TOPIC, Some(&format!("k{}", i % 11)), format!("{i}"))
                .await
                .expect("publish (the producer waits out the outage)");
            published.insert(at);
            PUBLISHED.fetch_add(1, Ordering::SeqCst);
        }
        published
    });
    kit.wait_until("records flowing", Duration::from_secs(60), |_| {
        HANDLED.load(Ordering::SeqCst) >= 50
    })
    .await
    .expect("records are handled before the outage");

    broker.broker_down(1).expect("broker down");
    let (handled_before, published_before) = (
        HANDLED.load(Ordering::SeqCst),
        PUBLISHED.load(Ordering::SeqCst),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    broker.broker_up(1).expect("broker up");

    let published = tokio::time::timeout(Duration::from_secs(120), publisher)
        .await
        .expect("publishing finishes after the outage")
        .expect("publisher task");
    assert_eq!(published.len(), RECORDS);
    kit.wait_until(
        "every record handled at least once",
        Duration::from_secs(120),
        |_| published.is_subset(&seen()),
    )
    .await
    .expect("nothing lost");
    // A write whose acknowledgement was lost in the outage may be stored
    // twice by the producer's retry (at another offset): compare payloads,
    // not offsets, to check that nothing unpublished was handled.
    let payloads: BTreeSet<String> = std::iter::once("warm-up".to_owned())
        .chain((1..RECORDS).map(|i| i.to_string()))
        .collect();
    assert_eq!(
        *PAYLOADS.lock().expect("payloads lock"),
        payloads,
        "no records other than the published"
    );

    kit.wait_committed_to_end(TOPIC, Duration::from_secs(60))
        .await
        .expect("commits catch up with the ends");
    let duplicates = SEEN.lock().expect("seen lock").len() - published.len();
    eprintln!(
        "outage began after {handled_before} handled and {published_before} of {RECORDS} published; \
         records handled more than once: {duplicates}"
    );
    tokio::time::timeout(Duration::from_secs(60), kit.shutdown())
        .await
        .expect("shutdown does not hang")
        .expect("clean shutdown after the outage");
}
