//! A program that installs its own `metrics` recorder gets the same series
//! in it, and asking for the dispatcher's server as well is a clear error.

use dispatcher::testing::TestKit;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[error("rejected")]
struct Rejected;

#[dispatcher::kafka_handler(topic = "it-own-recorder")]
async fn judging(body: &str) -> Result<(), Rejected> {
    if body == "bad" {
        Err(Rejected)
    } else {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_programs_own_recorder_gets_the_series() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().expect("the program's recorder");

    let kit = TestKit::start(TestKit::builder().topics(["it-own-recorder"]))
        .await
        .expect("start");
    for body in ["ok", "ok", "bad"] {
        kit.publish("it-own-recorder", None, body)
            .await
            .expect("publish");
    }
    kit.wait_until("three records finished", Duration::from_secs(30), |k| {
        k.finished_count("it-own-recorder") == 3
    })
    .await
    .expect("finished");
    // The counts reach the recorder once per worker pass; each snapshot
    // takes what was counted since the one before.
    let (mut handled, mut dead_lettered) = (0, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while (handled, dead_lettered) != (2, 1) {
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let k = key.key();
            let ours = key.kind() == MetricKind::Counter
                && k.name() == "dispatcher_records_finished_total"
                && k.labels()
                    .any(|l| l.key() == "topic" && l.value() == "it-own-recorder");
            let outcome = k
                .labels()
                .find(|l| l.key() == "outcome")
                .map(|l| l.value().to_owned());
            if let (true, DebugValue::Counter(n), Some(outcome)) = (ours, value, outcome) {
                match outcome.as_str() {
                    "handled" => handled += n,
                    "dead_lettered" => dead_lettered += n,
                    _ => {}
                }
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "handled {handled}, dead-lettered {dead_lettered}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The dead letter, read back with what its headers say.
    let letters = kit
        .dead_letters("it-own-recorder.DLT", 1, Duration::from_secs(30))
        .await
        .expect("the dead letter");
    let (record, info) = &letters[0];
    assert_eq!(record.payload.as_deref(), Some(b"bad".as_slice()));
    assert_eq!(info.original_topic, "it-own-recorder");
    assert_eq!(info.handler, "own_recorder::judging");
    assert_eq!(info.reason, "not-retryable");
    assert_eq!(info.error_message, "rejected");
    assert_eq!(info.attempts, 1);
    assert_eq!(info.consumer_group, kit.group_id());
    kit.shutdown().await.expect("clean shutdown");

    // The dispatcher cannot serve a recorder it does not own.
    let kit = TestKit::start(
        TestKit::builder()
            .topics(["it-own-recorder"])
            .metrics_address("0"),
    )
    .await
    .expect("builds");
    let mut kit = kit;
    let error = kit.join().await.expect_err("the server cannot start");
    let text = error.to_string();
    assert!(
        text.contains("metrics_address") && text.contains("recorder of its own"),
        "{text}"
    );
}
