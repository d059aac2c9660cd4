//! The source design's own scenario, on the embedded broker: a handler fails
//! with an I/O error for offsets divisible by 5, with a non-retryable error
//! for offsets divisible by 6, and with a fatal error for offsets divisible
//! by 7 (offset 0 is handled). Checks each record's outcome, the retries
//! and their delays, that dispatch stops at the first fatal record with the
//! committed offset not past it, and that a restart delivers it again.

use dispatcher::event::Outcome;
use dispatcher::testing::TestKit;
use dispatcher::{kafka_handler, Error, Message};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

const TOPIC: &str = "seed-scenario";

#[derive(Debug, thiserror::Error)]
#[error("validation failed for offset {0}")]
struct ValidationError(i64);

#[derive(Debug, thiserror::Error)]
#[error("illegal state at offset {0}")]
struct IllegalState(i64);

/// Attempts per offset, across both runs.
static ATTEMPTS: Mutex<BTreeMap<i64, u32>> = Mutex::new(BTreeMap::new());
/// Set once "the fix" is deployed: offsets divisible by 7 no longer fail.
static FIXED: AtomicBool = AtomicBool::new(false);

#[kafka_handler(
    topic = "seed-scenario",
    retry = std::io::Error,
    fatal = IllegalState,
    max_attempts = 3,
    backoff = fixed("100ms"),
    ordering = partition
)]
async fn seed(msg: &Message) -> anyhow::Result<()> {
    let offset = msg.offset();
    *ATTEMPTS.lock().expect("lock").entry(offset).or_default() += 1;
    if offset == 0 {
        return Ok(());
    }
    if offset % 7 == 0 && !FIXED.load(Ordering::SeqCst) {
        return Err(IllegalState(offset).into());
    }
    if offset % 5 == 0 {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "downstream reset");
        return Err(anyhow::Error::new(io).context(format!("calling downstream for {offset}")));
    }
    if offset % 6 == 0 {
        return Err(ValidationError(offset).into());
    }
    Ok(())
}

fn attempts(offset: i64) -> u32 {
    ATTEMPTS
        .lock()
        .expect("lock")
        .get(&offset)
        .copied()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_scenario_outcomes_retries_fatal_stop_and_redelivery() {
    let builder = TestKit::builder().topics([TOPIC]).embedded_partitions(1);
    let mut kit = TestKit::start(builder).await.expect("start");
    let group = kit.group_id().to_owned();
    for i in 0..20 {
        let (p, o) = kit
            .publish_to(TOPIC, 0, Some("k"), format!("record {i}"))
            .await
            .expect("publish");
        assert_eq!((p, o), (0, i), "a fresh single-partition topic");
    }

    // run() stops by itself with the fatal error, naming the record.
    let err = tokio::time::timeout(Duration::from_secs(60), kit.join())
        .await
        .expect("run() returns after the fatal record")
        .expect_err("a fatal error");
    match &err {
        Error::Fatal(f) => {
            assert_eq!(
                (f.topic.as_str(), f.partition, f.offset),
                (TOPIC, 0, 7),
                "{err}"
            );
            assert!(f.handler.ends_with("seed"), "{err}");
            assert!(f.error.is::<IllegalState>());
        }
        other => panic!("expected a fatal error, got {other}"),
    }
    // What `main` prints when it returns the error: the record's
    // coordinates, then the cause chain.
    let message = format!("{err:?}");
    assert!(
        message.contains("seed-scenario[0] offset 7")
            && message.contains("Caused by:")
            && message.contains("illegal state"),
        "{message}"
    );

    // Outcomes up to the fatal record.
    let outcomes = kit.final_outcomes(TOPIC);
    for offset in [0, 1, 2, 3, 4] {
        assert_eq!(
            outcomes.get(&(0, offset)),
            Some(&Outcome::Handled { attempts: 1 }),
            "offset {offset}"
        );
    }
    match outcomes.get(&(0, 5)) {
        Some(Outcome::DeadLettered {
            attempts: 3,
            reason,
            dead_letter_topic,
        }) => {
            assert!(
                reason.starts_with("retries-exhausted") && reason.contains("downstream reset"),
                "{reason}"
            );
            assert_eq!(dead_letter_topic, "seed-scenario.DLT");
        }
        other => panic!("offset 5: {other:?}"),
    }
    match outcomes.get(&(0, 6)) {
        Some(Outcome::DeadLettered {
            attempts: 1,
            reason,
            ..
        }) => assert!(reason.starts_with("not-retryable"), "{reason}"),
        other => panic!("offset 6: {other:?}"),
    }
    assert!(
        matches!(
            outcomes.get(&(0, 7)),
            Some(Outcome::Fatal { attempts: 1, .. })
        ),
        "{:?}",
        outcomes.get(&(0, 7))
    );
    // Dispatch stopped at the first fatal record.
    assert!(
        (8..20).all(|o| attempts(o) == 0),
        "records after the fatal one ran: {:?}",
        ATTEMPTS.lock()
    );
    assert_eq!((attempts(5), attempts(6), attempts(7)), (3, 1, 1));

    // Two retries of offset 5, each announced with the configured delay.
    let retries: Vec<Outcome> = kit
        .events(TOPIC, 0, 5)
        .into_iter()
        .filter(|e| matches!(e, Outcome::Retrying { .. }))
        .collect();
    assert_eq!(retries.len(), 2, "{retries:?}");
    for (i, r) in retries.iter().enumerate() {
        match r {
            Outcome::Retrying { attempt, delay, .. } => {
                assert_eq!(*attempt, i as u32 + 1);
                assert_eq!(*delay, Duration::from_millis(100));
            }
            other => panic!("{other:?}"),
        }
    }

    // The committed offset stops at the fatal record: 7 is the next to read.
    let committed = kit.committed_offsets(TOPIC).await.expect("committed");
    assert_eq!(committed.get(&0), Some(&7), "committed {committed:?}");
    drop(kit);

    // "Deploy the fix" and restart the same group: the fatal record is
    // delivered again and everything after it is processed.
    FIXED.store(true, Ordering::SeqCst);
    let builder = TestKit::builder().topics([TOPIC]).group_id(group);
    let kit = TestKit::start(builder).await.expect("restart");
    let handled_7 = kit
        .outcome(TOPIC, 0, 7, Duration::from_secs(60))
        .await
        .expect("offset 7 again");
    assert_eq!(handled_7, Outcome::Handled { attempts: 1 });
    assert_eq!(
        attempts(7),
        2,
        "the fatal record was delivered exactly once more"
    );
    kit.wait_until("all records finished", Duration::from_secs(60), |k| {
        k.finished_count(TOPIC) == 13
    })
    .await
    .expect("records 7..20 finish");
    assert!(
        (0..7).all(|o| kit.events(TOPIC, 0, o).is_empty()),
        "records before the fatal one were not delivered again"
    );
    let outcomes = kit.final_outcomes(TOPIC);
    for offset in 7..20 {
        let expected_dead = offset % 5 == 0 || offset % 6 == 0;
        let dead = matches!(
            outcomes.get(&(0, offset)),
            Some(Outcome::DeadLettered { .. })
        );
        assert_eq!(
            dead,
            expected_dead,
            "offset {offset}: {:?}",
            outcomes.get(&(0, offset))
        );
    }
    let committed = kit
        .wait_committed_to_end(TOPIC, Duration::from_secs(30))
        .await
        .expect("commits reach the end");
    assert_eq!(committed.get(&0), Some(&20));
    kit.shutdown().await.expect("clean shutdown");
}
