//! Broker faults on the shared embedded broker: offset commits that fail
//! for a while are retried, so nothing is skipped and the committed offsets
//! catch up with the end of each partition.

use dispatcher::broker::EmbeddedBroker;
use dispatcher::event::Outcome;
use dispatcher::testing::TestKit;
use dispatcher::Message;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

const TOPIC: &str = "it-faults-commits";
const RECORDS: usize = 200;

/// (partition, offset) of every record the handler saw.
static SEEN: Mutex<Vec<(i32, i64)>> = Mutex::new(Vec::new());

#[dispatcher::kafka_handler(topic = "it-faults-commits")]
async fn record(msg: &Message) -> Result<(), std::io::Error> {
    tokio::time::sleep(Duration::from_millis(1)).await;
    SEEN.lock()
        .expect("seen lock")
        .push((msg.partition(), msg.offset()));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_commits_are_retried_and_catch_up_with_the_end() {
    let broker = EmbeddedBroker::shared().expect("shared broker");
    let kit = TestKit::start(TestKit::builder().topics([TOPIC]))
        .await
        .expect("start the test kit");
    // One record first, so the group is joined and committing.
    let mut published = BTreeSet::new();
    let first = kit
        .publish(TOPIC, Some("warm-up"), "0")
        .await
        .expect("publish");
    published.insert(first);
    let outcome = kit
        .outcome(TOPIC, first.0, first.1, Duration::from_secs(60))
        .await
        .expect("the first record is handled");
    assert_eq!(outcome, Outcome::Handled { attempts: 1 });

    // The next 20 commit requests fail (about two seconds of periodic
    // commits at the kit's 100 ms interval) while records keep coming.
    broker.fail_next_commits(20).expect("inject commit errors");
    for i in 0..RECORDS {
        let at = kit
            .publish(TOPIC, Some(&format!("k{}", i % 13)), format!("{i}"))
            .await
            .expect("publish");
        published.insert(at);
    }
    let n = published.len();
    kit.wait_until("every record finished", Duration::from_secs(120), |k| {
        k.finished_count(TOPIC) >= n
    })
    .await
    .expect("every record handled");

    let seen = SEEN.lock().expect("seen lock").clone();
    let mut counts: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    for s in &seen {
        *counts.entry(*s).or_default() += 1;
    }
    let seen_set: BTreeSet<(i32, i64)> = counts.keys().copied().collect();
    assert_eq!(seen_set, published, "every record handled, nothing else");
    assert!(
        counts.values().all(|c| *c == 1),
        "failed commits alone cause no redelivery: {:?}",
        counts.iter().filter(|(_, c)| **c > 1).collect::<Vec<_>>()
    );

    kit.wait_committed_to_end(TOPIC, Duration::from_secs(60))
        .await
        .expect("commits catch up with the ends");
    kit.shutdown().await.expect("clean shutdown");
}
