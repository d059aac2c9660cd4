//! A rebalance while partitions are full: a partition that holds its
//! `partition_buffer` of records behind a slow handler is revoked, assigned
//! again, and fetched again, with eager and with cooperative-sticky
//! assignment. Every record is then handled and the committed offsets reach
//! the end of every partition.
//!
//! librdkafka keeps an application's pause flag across unassign and assign
//! (`rdkafka_assignment.c`): a dispatcher that paused a full partition and
//! dropped it on revoke without resuming it got the partition back paused,
//! and it never fetched again.

use dispatcher::testing::TestKit;
use dispatcher::Message;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

const PARTITIONS: i32 = 4;
const PER_PARTITION: usize = 50;
const BUFFER: usize = 20;

/// Handlers wait here until the test opens it.
struct Gate {
    open: AtomicBool,
    started: AtomicUsize,
    seen: Mutex<BTreeSet<(i32, i64)>>,
}

impl Gate {
    const fn new() -> Self {
        Gate {
            open: AtomicBool::new(false),
            started: AtomicUsize::new(0),
            seen: Mutex::new(BTreeSet::new()),
        }
    }

    async fn pass(&self, msg: &Message) {
        self.started.fetch_add(1, Ordering::SeqCst);
        while !self.open.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.seen
            .lock()
            .expect("seen lock")
            .insert((msg.partition(), msg.offset()));
    }

    fn started(&self) -> usize {
        self.started.load(Ordering::SeqCst)
    }
}

static EAGER: Gate = Gate::new();
static COOPERATIVE: Gate = Gate::new();

#[dispatcher::kafka_handler(topic = "it-rebalance-backlog-eager", ordering = unordered)]
async fn eager(msg: &Message) -> Result<(), std::io::Error> {
    EAGER.pass(msg).await;
    Ok(())
}

#[dispatcher::kafka_handler(topic = "it-rebalance-backlog-cooperative", ordering = unordered)]
async fn cooperative(msg: &Message) -> Result<(), std::io::Error> {
    COOPERATIVE.pass(msg).await;
    Ok(())
}

fn member(topic: &str, group: &str, strategy: &str) -> dispatcher::DispatcherBuilder {
    TestKit::builder()
        .topics([topic])
        .group_id(group)
        .partition_buffer(BUFFER)
        .drain_timeout(Duration::from_secs(1))
        .kafka_property("partition.assignment.strategy", strategy)
}

async fn full_partitions_survive_a_member_joining_and_leaving(
    topic: &str,
    strategy: &str,
    gate: &'static Gate,
) {
    let group = format!("{topic}-{}", std::process::id());
    let first = TestKit::start(member(topic, &group, strategy))
        .await
        .expect("start the first member");
    let mut published = BTreeSet::new();
    for p in 0..PARTITIONS {
        for i in 0..PER_PARTITION {
            let at = first
                .publish_to(topic, p, Some(&format!("k{p}-{i}")), "x")
                .await
                .expect("publish");
            published.insert(at);
        }
    }
    let long = Duration::from_secs(90);
    // Every partition of the first member holds its limit.
    first
        .wait_until("every partition to fill up", long, |_| {
            gate.started() >= PARTITIONS as usize * BUFFER
        })
        .await
        .expect("the first member takes records");

    // A second member joins: the first gives partitions up (all of them,
    // with eager assignment) while they are full, and gets some back.
    let before = gate.started();
    let second = TestKit::start(member(topic, &group, strategy))
        .await
        .expect("start the second member");
    first
        .wait_until("the second member to fill its partitions", long, |_| {
            gate.started() >= before + 2 * BUFFER
        })
        .await
        .expect("the second member takes records");
    // The second member leaves: the first gets every partition back.
    second.shutdown().await.expect("the second member stops");
    gate.open.store(true, Ordering::SeqCst);
    first
        .wait_until("every record to be handled", long, |_| {
            published.is_subset(&gate.seen.lock().expect("seen lock"))
        })
        .await
        .expect("no partition is left behind");
    first
        .wait_committed_to_end(topic, long)
        .await
        .expect("the committed offsets reach the end of every partition");
    first.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eager_assignment_leaves_no_full_partition_behind() {
    full_partitions_survive_a_member_joining_and_leaving(
        "it-rebalance-backlog-eager",
        "range",
        &EAGER,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_assignment_leaves_no_full_partition_behind() {
    full_partitions_survive_a_member_joining_and_leaving(
        "it-rebalance-backlog-cooperative",
        "cooperative-sticky",
        &COOPERATIVE,
    )
    .await;
}
