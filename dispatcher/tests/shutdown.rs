//! Shutdown with records in flight: `run` returns `Ok`, the committed
//! offsets never pass a record that was not handled, and a new dispatcher in
//! the same group handles the rest (nothing lost across the restart).

use dispatcher::testing::{self, TestKit};
use dispatcher::Message;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

const TOPIC: &str = "it-shutdown-slow";
const KEYS: usize = 8;
const PER_KEY: usize = 10;

/// Which run of the dispatcher is going on (1 or 2).
static PHASE: AtomicUsize = AtomicUsize::new(1);
/// (phase, partition, offset) of every record whose handler returned.
static HANDLED: Mutex<Vec<(usize, i32, i64)>> = Mutex::new(Vec::new());

#[dispatcher::kafka_handler(topic = "it-shutdown-slow")]
async fn slow(msg: &Message) -> Result<(), std::io::Error> {
    tokio::time::sleep(Duration::from_millis(200)).await;
    HANDLED.lock().expect("handled lock").push((
        PHASE.load(Ordering::SeqCst),
        msg.partition(),
        msg.offset(),
    ));
    Ok(())
}

fn handled(phase: usize) -> BTreeSet<(i32, i64)> {
    HANDLED
        .lock()
        .expect("handled lock")
        .iter()
        .filter(|(ph, _, _)| *ph == phase)
        .map(|(_, p, o)| (*p, *o))
        .collect()
}

async fn committed(brokers: &str, group: &str) -> BTreeMap<i32, i64> {
    let (brokers, group) = (brokers.to_owned(), group.to_owned());
    tokio::task::spawn_blocking(move || testing::committed_offsets(&brokers, &group, TOPIC))
        .await
        .expect("task")
        .expect("read committed offsets")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_commits_only_handled_records_and_a_restart_handles_the_rest() {
    let group = format!("it-shutdown-group-{}", std::process::id());
    let kit = TestKit::start(TestKit::builder().topics([TOPIC]).group_id(group.clone()))
        .await
        .expect("start the first dispatcher");
    let brokers = kit.bootstrap_servers().to_owned();
    assert_eq!(kit.group_id(), group);
    let mut published = BTreeSet::new();
    for i in 0..PER_KEY {
        for k in 0..KEYS {
            let at = kit
                .publish(TOPIC, Some(&format!("k{k}")), format!("{k}/{i}"))
                .await
                .expect("publish");
            published.insert(at);
        }
    }
    // Each key's records run one at a time, 200 ms each: the whole topic
    // takes at least PER_KEY x 200 ms, so stopping after the first few
    // leaves records in flight and records not yet started.
    kit.wait_until("a few records handled", Duration::from_secs(60), |_| {
        handled(1).len() >= 4
    })
    .await
    .expect("processing started");
    kit.shutdown()
        .await
        .expect("run() returns Ok after a shutdown");
    let first = handled(1);
    PHASE.store(2, Ordering::SeqCst);
    assert!(
        first.len() < published.len(),
        "the first run was stopped before it could finish everything"
    );

    let after_first = committed(&brokers, &group).await;
    for (p, c) in &after_first {
        for o in 0..*c {
            assert!(
                first.contains(&(*p, o)),
                "partition {p} committed {c}, but offset {o} was never handled"
            );
        }
    }
    assert!(
        after_first.values().any(|c| *c > 0),
        "the drained records were committed on shutdown: {after_first:?}"
    );

    // A new dispatcher in the same group picks up after the commit.
    let kit = TestKit::start(TestKit::builder().topics([TOPIC]).group_id(group.clone()))
        .await
        .expect("start the second dispatcher");
    kit.wait_until(
        "every record handled by one of the two runs",
        Duration::from_secs(120),
        |_| {
            let mut all = handled(1);
            all.extend(handled(2));
            published.is_subset(&all)
        },
    )
    .await
    .expect("nothing lost across the restart");
    let second = handled(2);
    for (p, o) in &second {
        let c = after_first.get(p).copied().unwrap_or(0);
        assert!(
            *o >= c,
            "{p}@{o} was handled again although {c} was committed"
        );
    }
    // Everything that was not committed is handled by the second run.
    for (p, o) in &published {
        if *o >= after_first.get(p).copied().unwrap_or(0) {
            assert!(
                second.contains(&(*p, *o)),
                "uncommitted {p}@{o} not redelivered to the second run"
            );
        }
    }
    let ends = kit.end_offsets(TOPIC).await.expect("end offsets");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = kit.committed_offsets(TOPIC).await.expect("committed");
        if ends.iter().all(|(p, e)| *e == 0 || now.get(p) == Some(e)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "committed {now:?} never reached the ends {ends:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    kit.shutdown().await.expect("clean second shutdown");
}
