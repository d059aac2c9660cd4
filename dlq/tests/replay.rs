//! `dlq replay` on the embedded broker: a round trip through a real
//! handler, a replay interrupted and resumed, and a dry run.

mod common;

use common::{brokers, committed, create_topic, end_offsets, header, read_all, replay, Letter};
use dispatcher::event::Outcome;
use dispatcher::testing::{Producer, TestKit};
use dispatcher_dlq::REPLAYED_FROM;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static FIXED: AtomicBool = AtomicBool::new(false);
static HANDLED: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[derive(Debug, thiserror::Error)]
#[error("the rules reject it")]
struct Rejected;

/// Rejects everything until its behaviour is "fixed".
#[dispatcher::kafka_handler(topic = "dlq-it-roundtrip")]
async fn judge(body: &str) -> Result<(), Rejected> {
    if !FIXED.load(Ordering::SeqCst) {
        return Err(Rejected);
    }
    HANDLED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(body.to_owned());
    Ok(())
}

fn handled() -> Vec<String> {
    let mut h = HANDLED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    h.sort();
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_replayed_to_a_fixed_handler_are_handled_once() {
    let topic = "dlq-it-roundtrip";
    let dlt = "dlq-it-roundtrip.DLT";
    let kit = TestKit::start(TestKit::builder().topics([topic]))
        .await
        .expect("start");
    let brokers = kit.bootstrap_servers().to_owned();
    let payloads: Vec<String> = (0..5).map(|i| format!("record-{i}")).collect();
    for (i, p) in payloads.iter().enumerate() {
        let key = format!("key-{i}");
        kit.publish(topic, Some(&key), p).await.expect("publish");
    }
    let letters = kit
        .dead_letters(dlt, 5, Duration::from_secs(30))
        .await
        .expect("five dead letters");
    assert!(letters
        .iter()
        .all(|(_, info)| info.handler == "replay::judge"));
    kit.wait_committed_to_end(topic, Duration::from_secs(30))
        .await
        .expect("the failures are committed");
    assert!(handled().is_empty());

    // The handler is fixed; the dead letters go back.
    FIXED.store(true, Ordering::SeqCst);
    let (summary, printed) = replay(&[dlt, "--brokers", &brokers]).await.expect("replay");
    println!("{printed}");
    assert_eq!(summary.sent, 5, "{printed}");
    assert_eq!(summary.sent_to, BTreeMap::from([(topic.to_owned(), 5)]));
    assert_eq!(summary.read, 5);
    assert!(summary.transactions >= 1);
    assert!(
        printed.contains("dlq-it-roundtrip.DLT: 5 read, 5 sent, 0 skipped"),
        "{printed}"
    );
    assert!(
        printed.contains("  sent to dlq-it-roundtrip: 5"),
        "{printed}"
    );

    kit.wait_until(
        "the replayed records handled",
        Duration::from_secs(30),
        |_| handled().len() >= 5,
    )
    .await
    .expect("handled");
    kit.wait_committed_to_end(topic, Duration::from_secs(30))
        .await
        .expect("committed");
    assert_eq!(handled(), payloads, "each payload handled exactly once");
    let outcomes = kit.final_outcomes(topic);
    assert_eq!(outcomes.len(), 10);
    assert_eq!(
        outcomes
            .values()
            .filter(|o| matches!(o, Outcome::Handled { .. }))
            .count(),
        5
    );

    // The replayed records: original key, payload and headers, no dlt.*
    // headers but the one saying where they came from.
    let records = read_all(&brokers, topic).await;
    let replayed: Vec<_> = records
        .iter()
        .filter(|r| header(r, REPLAYED_FROM).is_some())
        .collect();
    assert_eq!(replayed.len(), 5);
    let sources: BTreeSet<String> = letters
        .iter()
        .map(|(r, _)| format!("{dlt}/{}/{}", r.partition, r.offset))
        .collect();
    let from: BTreeSet<String> = replayed
        .iter()
        .filter_map(|r| header(r, REPLAYED_FROM))
        .collect();
    assert_eq!(from, sources);
    for r in &replayed {
        let (letter, _) = letters
            .iter()
            .find(|(l, _)| {
                Some(format!("{dlt}/{}/{}", l.partition, l.offset)) == header(r, REPLAYED_FROM)
            })
            .expect("its dead letter");
        assert_eq!(r.key, letter.key);
        assert_eq!(r.payload, letter.payload);
        assert_eq!(r.headers.len(), 1, "{:?}", r.headers);
    }

    // A second replay finds the group at the end: nothing is sent twice.
    let (again, printed) = replay(&[dlt, "--brokers", &brokers])
        .await
        .expect("replay again");
    assert_eq!((again.read, again.sent), (0, 0), "{printed}");
    assert_eq!(handled(), payloads);
    kit.shutdown().await.expect("clean shutdown");
}

/// Seven dead letters of `source` in two partitions of `dlt`.
async fn seven_dead_letters(brokers: &str, source: &'static str, dlt: &str) -> Vec<String> {
    create_topic(source, 3);
    create_topic(dlt, 2);
    let producer = Producer::new(brokers).expect("producer");
    let mut payloads = Vec::new();
    for i in 0..7 {
        let payload = format!(r#"{{"order":{i}}}"#);
        let mut letter = Letter::new(source, i, &format!("customer-{}", i % 3), &payload);
        if i % 2 == 1 {
            letter.handler = "billing::on_refund";
        }
        letter.write(&producer, dlt, (i % 2) as i32).await;
        payloads.push(payload);
    }
    payloads
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_replay_resumes_without_duplicates() {
    let brokers = brokers();
    let (source, dlt) = ("dlq-it-resume", "dlq-it-resume.DLT");
    let payloads = seven_dead_letters(&brokers, source, dlt).await;
    let group = "dlq-replay-dlq-it-resume.DLT";

    let (first, printed) = replay(&[dlt, "--limit", "3", "--brokers", &brokers])
        .await
        .expect("the first part");
    println!("{printed}");
    assert_eq!(first.sent, 3, "{printed}");
    assert!(first.limit_reached);
    assert!(
        printed.contains("stopped at --limit: run again to go on"),
        "{printed}"
    );
    assert_eq!(end_offsets(&brokers, source).await.values().sum::<i64>(), 3);
    let after_first = committed(&brokers, group, dlt).await;
    assert_eq!(after_first.values().sum::<i64>(), 3, "{after_first:?}");

    let (second, printed) = replay(&[dlt, "--limit", "3", "--brokers", &brokers])
        .await
        .expect("the second part");
    assert_eq!(second.sent, 3, "{printed}");
    let (third, printed) = replay(&[dlt, "--brokers", &brokers])
        .await
        .expect("the rest");
    assert_eq!(third.sent, 1, "{printed}");
    assert!(!third.limit_reached);
    let (fourth, printed) = replay(&[dlt, "--brokers", &brokers])
        .await
        .expect("nothing left");
    assert_eq!((fourth.read, fourth.sent), (0, 0), "{printed}");

    // The source topic holds each record exactly once.
    let records = read_all(&brokers, source).await;
    let mut got: Vec<String> = records
        .iter()
        .map(|r| String::from_utf8_lossy(r.payload.as_deref().unwrap_or_default()).into_owned())
        .collect();
    got.sort();
    let mut want = payloads.clone();
    want.sort();
    assert_eq!(got, want);
    let from: BTreeSet<String> = records
        .iter()
        .filter_map(|r| header(r, REPLAYED_FROM))
        .collect();
    assert_eq!(from.len(), 7);
    assert_eq!(
        committed(&brokers, group, dlt).await,
        end_offsets(&brokers, dlt).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_writes_and_commits_nothing() {
    let brokers = brokers();
    let (source, dlt, target) = ("dlq-it-dry", "dlq-it-dry.DLT", "dlq-it-dry-target");
    seven_dead_letters(&brokers, source, dlt).await;
    create_topic(target, 2);
    let group = "dlq-it-dry-group";

    // A first replay of one handler's dead letters, stopped after one.
    let (first, printed) = replay(&[
        dlt,
        "--to",
        target,
        "--group",
        group,
        "--handler",
        "on_order",
        "--limit",
        "1",
        "--brokers",
        &brokers,
    ])
    .await
    .expect("replay one");
    assert_eq!(first.sent, 1, "{printed}");
    let targets_before = end_offsets(&brokers, target).await;
    let committed_before = committed(&brokers, group, dlt).await;
    assert_eq!(targets_before.values().sum::<i64>(), 1);
    assert!(!committed_before.is_empty());

    let (dry, printed) = replay(&[
        dlt,
        "--to",
        target,
        "--group",
        group,
        "--handler",
        "on_order",
        "--dry-run",
        "--brokers",
        &brokers,
    ])
    .await
    .expect("dry run");
    println!("{printed}");
    // on_order's are the even ones, in partition 0: 0, 2, 4, 6; the first
    // is sent already. on_refund's are in partition 1: the first replay
    // skipped them if it read that partition first.
    assert_eq!(dry.sent, 3, "{printed}");
    assert_eq!(
        first.skipped_filtered + dry.skipped_filtered,
        3,
        "{printed}"
    );
    assert_eq!(
        printed
            .lines()
            .filter(|l| l.starts_with("would send "))
            .count(),
        3,
        "{printed}"
    );
    assert!(
        printed.contains("-> dlq-it-dry-target: key customer-"),
        "{printed}"
    );
    let line = format!(
        "dry run, nothing written or committed: dlq-it-dry.DLT: {} read, 3 would send, {} skipped",
        3 + dry.skipped_filtered,
        dry.skipped_filtered
    );
    assert!(printed.contains(&line), "{line:?} missing from {printed}");
    // The group and the target are where they were.
    assert_eq!(end_offsets(&brokers, target).await, targets_before);
    assert_eq!(committed(&brokers, group, dlt).await, committed_before);
    assert_eq!(end_offsets(&brokers, source).await.values().sum::<i64>(), 0);

    // A dry run of a group that never ran commits nothing either.
    let (fresh, _) = replay(&[
        dlt,
        "--group",
        "dlq-it-dry-fresh",
        "--dry-run",
        "--brokers",
        &brokers,
    ])
    .await
    .expect("dry run of a new group");
    assert_eq!((fresh.read, fresh.sent), (7, 7));
    assert!(committed(&brokers, "dlq-it-dry-fresh", dlt)
        .await
        .is_empty());
    assert_eq!(end_offsets(&brokers, source).await.values().sum::<i64>(), 0);

    // The real thing: the skipped dead letters' offsets advance too.
    let (rest, printed) = replay(&[
        dlt,
        "--to",
        target,
        "--group",
        group,
        "--handler",
        "on_order",
        "--brokers",
        &brokers,
    ])
    .await
    .expect("replay the rest");
    assert_eq!(rest.sent, 3, "{printed}");
    assert_eq!(
        first.skipped_filtered + rest.skipped_filtered,
        3,
        "{printed}"
    );
    assert_eq!(
        committed(&brokers, group, dlt).await,
        end_offsets(&brokers, dlt).await
    );
    assert_eq!(end_offsets(&brokers, target).await.values().sum::<i64>(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_to_a_missing_topic_stops_before_writing() {
    let brokers = brokers();
    let dlt = "dlq-it-missing-target.DLT";
    create_topic(dlt, 1);
    let producer = Producer::new(&brokers).expect("producer");
    Letter::new("dlq-it-gone", 0, "k", "v")
        .write(&producer, dlt, 0)
        .await;
    let started = Instant::now();
    let error = replay(&[dlt, "--brokers", &brokers])
        .await
        .expect_err("no such topic");
    assert!(
        error
            .to_string()
            .contains("cannot replay 0:0 to dlq-it-gone: topic dlq-it-gone does not exist"),
        "{error:#}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(
        committed(&brokers, "dlq-replay-dlq-it-missing-target.DLT", dlt)
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_that_cannot_be_replayed_are_skipped_and_passed() {
    let brokers = brokers();
    let (source, dlt) = ("dlq-it-skip", "dlq-it-skip.DLT");
    create_topic(source, 1);
    create_topic(dlt, 1);
    let producer = Producer::new(&brokers).expect("producer");
    let mut omitted = Letter::new(source, 0, "big", "");
    omitted.payload_omitted =
        Some("the record (2 MiB) was too large; the original is at dlq-it-skip[0]@0");
    omitted.write(&producer, dlt, 0).await;
    producer
        .send(
            dlt,
            Some(0),
            Some(b"stray"),
            Some(b"not a dead letter"),
            &[],
        )
        .await
        .expect("a record that is not a dead letter");
    Letter::new(source, 1, "fine", "replay me")
        .write(&producer, dlt, 0)
        .await;

    let (summary, printed) = replay(&[dlt, "--brokers", &brokers]).await.expect("replay");
    assert_eq!(summary.read, 3, "{printed}");
    assert_eq!(summary.sent, 1, "{printed}");
    assert_eq!(summary.skipped_payload_omitted, 1, "{printed}");
    assert_eq!(summary.skipped_not_dead_letters, 1, "{printed}");
    assert!(
        printed.contains("skipped, written without their payload (dlt.payload.omitted): 1"),
        "{printed}"
    );
    assert!(
        printed.contains("skipped, not dead letters: 1"),
        "{printed}"
    );
    let records = read_all(&brokers, source).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].payload.as_deref(), Some(b"replay me".as_slice()));
    assert_eq!(
        committed(&brokers, "dlq-replay-dlq-it-skip.DLT", dlt).await,
        BTreeMap::from([(0, 3)])
    );
}
