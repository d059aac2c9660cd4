//! A record waiting for its retry blocks later records of its key, and
//! nothing else: other keys of the same partition go on. On shutdown the
//! waiting record is abandoned after the drain timeout and its offset is
//! not committed.

use dispatcher::event::Outcome;
use dispatcher::testing::TestKit;
use dispatcher::{kafka_handler, Message};
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

const TOPIC: &str = "retry-isolation";

/// Offsets the handler completed.
static DONE: Mutex<BTreeSet<i64>> = Mutex::new(BTreeSet::new());

#[kafka_handler(topic = "retry-isolation", retry = std::io::Error, max_attempts = 5, backoff = fixed("1h"))]
async fn isolated(msg: &Message) -> Result<(), std::io::Error> {
    if msg.key() == Some(&b"stuck"[..]) {
        return Err(std::io::Error::other("dependency is down"));
    }
    DONE.lock().expect("lock").insert(msg.offset());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retrying_record_blocks_only_its_own_key() {
    let builder = TestKit::builder()
        .topics([TOPIC])
        .embedded_partitions(1)
        .drain_timeout(Duration::from_millis(200));
    let kit = TestKit::start(builder).await.expect("start");
    let (_, first) = kit
        .publish_to(TOPIC, 0, Some("free"), "before")
        .await
        .expect("publish");
    let (_, stuck) = kit
        .publish_to(TOPIC, 0, Some("stuck"), "x")
        .await
        .expect("publish");
    let (_, stuck_later) = kit
        .publish_to(TOPIC, 0, Some("stuck"), "y")
        .await
        .expect("publish");
    let mut others = Vec::new();
    for i in 0..20 {
        let key = format!("other-{}", i % 4);
        others.push(
            kit.publish_to(TOPIC, 0, Some(&key), "z")
                .await
                .expect("publish")
                .1,
        );
    }
    let timeout = Duration::from_secs(30);
    kit.wait_until("the other keys are handled", timeout, |_| {
        let done = DONE.lock().expect("lock");
        others.iter().all(|o| done.contains(o)) && done.contains(&first)
    })
    .await
    .expect("other keys are not blocked by a retrying record");

    // The stuck record failed once and waits for its retry; the record
    // behind it on the same key has not started.
    let events = kit.events(TOPIC, 0, stuck);
    assert!(
        matches!(events.as_slice(), [Outcome::Retrying { attempt: 1, .. }]),
        "{events:?}"
    );
    assert!(
        kit.events(TOPIC, 0, stuck_later).is_empty(),
        "same key waits behind the retry"
    );

    // Commits stop right before the stuck record, even though later
    // offsets are finished.
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let committed = kit.committed_offsets(TOPIC).await.expect("committed");
        match committed.get(&0) {
            Some(&c) if c == stuck => break,
            Some(&c) => assert!(
                c < stuck,
                "committed {c} passed the unfinished record {stuck}"
            ),
            None => {}
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the commit never reached {stuck}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Shutdown abandons the waiting retry after the drain timeout, and the
    // final commit still stops before it: it is delivered again on restart.
    let (brokers, group) = (
        kit.bootstrap_servers().to_owned(),
        kit.group_id().to_owned(),
    );
    tokio::time::timeout(timeout, kit.shutdown())
        .await
        .expect("shutdown is bounded by the drain timeout")
        .expect("clean shutdown");
    let committed = tokio::task::spawn_blocking(move || {
        dispatcher::testing::committed_offsets(&brokers, &group, TOPIC)
    })
    .await
    .expect("task")
    .expect("committed");
    assert_eq!(committed.get(&0), Some(&stuck));
}

/// Offsets of the always-failing handler's records that were attempted.
static BACKING_OFF: Mutex<BTreeSet<i64>> = Mutex::new(BTreeSet::new());

#[kafka_handler(topic = "retry-isolation-drain", retry = std::io::Error, max_attempts = 5, backoff = fixed("1h"))]
async fn always_down(msg: &Message) -> Result<(), std::io::Error> {
    BACKING_OFF.lock().expect("lock").insert(msg.offset());
    Err(std::io::Error::other("dependency is down"))
}

/// A revoke or shutdown must not wait out a backoff: the record waiting to
/// retry is abandoned at once (uncommitted, delivered again), so draining
/// ends long before the drain timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_waiting_to_retry_does_not_hold_up_the_drain() {
    const TOPIC: &str = "retry-isolation-drain";
    let drain_timeout = Duration::from_secs(60);
    let builder = TestKit::builder()
        .topics([TOPIC])
        .embedded_partitions(1)
        .drain_timeout(drain_timeout);
    let kit = TestKit::start(builder).await.expect("start");
    let (_, offset) = kit
        .publish_to(TOPIC, 0, Some("k"), "x")
        .await
        .expect("publish");
    kit.wait_until(
        "the record to wait for its retry",
        Duration::from_secs(30),
        |k| {
            matches!(
                k.events(TOPIC, 0, offset).as_slice(),
                [Outcome::Retrying { .. }]
            )
        },
    )
    .await
    .expect("the first attempt fails");
    let (brokers, group) = (
        kit.bootstrap_servers().to_owned(),
        kit.group_id().to_owned(),
    );
    let started = tokio::time::Instant::now();
    kit.shutdown().await.expect("clean shutdown");
    let took = started.elapsed();
    assert!(
        took < drain_timeout / 4,
        "the drain waited for the backoff: shutdown took {took:?} with a drain timeout of {drain_timeout:?}"
    );
    let committed = tokio::task::spawn_blocking(move || {
        dispatcher::testing::committed_offsets(&brokers, &group, TOPIC)
    })
    .await
    .expect("task")
    .expect("committed");
    assert!(
        committed.get(&0).is_none_or(|&c| c <= offset),
        "committed {committed:?} past the abandoned record {offset}"
    );
    assert_eq!(BACKING_OFF.lock().expect("lock").len(), 1, "attempted once");
}
