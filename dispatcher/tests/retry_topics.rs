//! Retry topics: a record that used up its attempts in place goes to the
//! next level's topic, with headers that carry its history, is handled
//! there no earlier than it is due, and after the last level goes to the
//! dead-letter topic with every attempt counted.

use dispatcher::dead_letter::headers;
use dispatcher::event::Outcome;
use dispatcher::testing::TestKit;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// When each attempt at a payload ran.
type Calls = HashMap<String, Vec<(Instant, SystemTime)>>;

static CALLS: Mutex<Option<Calls>> = Mutex::new(None);

/// `always` fails with an I/O error every time; `once` fails its first
/// attempt only.
#[dispatcher::kafka_handler(
    topic = "it-retry-topics",
    retry = std::io::Error,
    max_attempts = 1,
    retry_topics = ["300ms", "600ms"]
)]
async fn flaky(body: &str) -> std::io::Result<()> {
    let calls = note_call(body);
    if body.starts_with("always") || (body.starts_with("once") && calls == 1) {
        return Err(std::io::Error::other(format!(
            "gateway down (call {calls})"
        )));
    }
    Ok(())
}

/// Notes an attempt at `body`; returns how many there were.
fn note_call(body: &str) -> usize {
    let mut all = CALLS.lock().expect("lock");
    let calls = all
        .get_or_insert_with(HashMap::new)
        .entry(body.to_owned())
        .or_default();
    calls.push((Instant::now(), SystemTime::now()));
    calls.len()
}

/// Asserts that the call at `later` came at least `delay` after the one at
/// `earlier` (wall clock, the clock a retry topic's due time is on). Due
/// times travel in whole milliseconds (the `retry.due` header, the record's
/// timestamp), truncated, so a record can be due up to a millisecond short
/// of `delay` after its failure: that much is allowed.
fn assert_waited(earlier: SystemTime, later: SystemTime, delay: Duration) {
    let waited = later.duration_since(earlier).expect("later");
    assert!(
        waited + Duration::from_millis(1) >= delay,
        "the next attempt came {waited:?} after the last, before its delay of {delay:?}"
    );
}

fn calls(body: &str) -> Vec<(Instant, SystemTime)> {
    CALLS
        .lock()
        .expect("lock")
        .as_ref()
        .and_then(|m| m.get(body).cloned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_goes_through_every_level_when_due_then_to_the_dead_letter_topic() {
    let kit = TestKit::start(TestKit::builder().topics(["it-retry-topics"]))
        .await
        .expect("start");
    let (partition, offset) = kit
        .publish("it-retry-topics", Some("k-1"), "always-1")
        .await
        .expect("publish");
    let (p_once, o_once) = kit
        .publish("it-retry-topics", Some("k-2"), "once-1")
        .await
        .expect("publish");

    // The source record is finished once it is on the first retry topic,
    // named after the topic and the group by default.
    let level1_topic = format!("it-retry-topics.{}.retry.300ms", kit.group_id());
    let first = kit
        .outcome(
            "it-retry-topics",
            partition,
            offset,
            Duration::from_secs(30),
        )
        .await
        .expect("an outcome");
    assert!(
        matches!(&first, Outcome::RetryScheduled { attempts: 1, level: 1, topic, .. } if *topic == level1_topic),
        "{first:?}"
    );

    let letters = kit
        .dead_letters("it-retry-topics.DLT", 1, Duration::from_secs(30))
        .await
        .expect("the dead letter after the last level");
    let (record, info) = &letters[0];
    assert_eq!(record.payload.as_deref(), Some(b"always-1".as_slice()));
    assert_eq!(record.key.as_deref(), Some(b"k-1".as_slice()));
    assert_eq!(
        (
            info.original_topic.as_str(),
            info.original_partition,
            info.original_offset
        ),
        ("it-retry-topics", partition, offset),
        "the dead letter names the record it started as"
    );
    assert_eq!(info.reason, "retries-exhausted");
    assert_eq!(info.attempts, 3, "one attempt at each of three reads");
    assert_eq!(record.header(headers::RETRY_LEVEL).as_deref(), Some("2"));

    // Each level's attempt ran no earlier than it was due.
    let attempts = calls("always-1");
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    assert_waited(attempts[0].1, attempts[1].1, Duration::from_millis(300));
    assert_waited(attempts[1].1, attempts[2].1, Duration::from_millis(600));

    // The first level's record carries the history.
    let level1 = kit
        .read(&level1_topic, 2, Duration::from_secs(30))
        .await
        .expect("the first level's records");
    let r = level1
        .iter()
        .find(|r| r.payload.as_deref() == Some(b"always-1".as_slice()))
        .expect("the record at level 1");
    assert_eq!(r.header(headers::RETRY_LEVEL).as_deref(), Some("1"));
    assert_eq!(r.header(headers::RETRY_ATTEMPTS).as_deref(), Some("1"));
    assert_eq!(
        r.header(headers::RETRY_ORIGINAL_TOPIC).as_deref(),
        Some("it-retry-topics")
    );
    assert_eq!(
        r.header(headers::RETRY_ORIGINAL_OFFSET),
        Some(offset.to_string())
    );
    assert!(r
        .header(headers::RETRY_LAST_ERROR)
        .is_some_and(|e| e.contains("gateway down (call 1)")));
    let first_failed = attempts[0]
        .1
        .duration_since(UNIX_EPOCH)
        .expect("after 1970");
    let due: u128 = r
        .header(headers::RETRY_DUE)
        .and_then(|d| d.parse().ok())
        .expect("a due time");
    assert!(
        due >= first_failed.as_millis() + 300,
        "due {due}, failed {first_failed:?}"
    );

    // `once` succeeded at the first level: handled, no dead letter, and
    // its attempts count both reads.
    assert_eq!(calls("once-1").len(), 2);
    let handled_once = kit.final_outcomes(&level1_topic);
    assert!(
        handled_once
            .values()
            .any(|o| matches!(o, Outcome::Handled { attempts: 2 })),
        "{handled_once:?}"
    );
    kit.wait_committed_to_end("it-retry-topics", Duration::from_secs(30))
        .await
        .expect("the source topic is committed to its end");
    kit.wait_committed_to_end(&level1_topic, Duration::from_secs(30))
        .await
        .expect("the first level is committed to its end");
    let once_outcome = kit
        .outcome("it-retry-topics", p_once, o_once, Duration::from_secs(5))
        .await
        .expect("an outcome");
    assert!(matches!(once_outcome, Outcome::RetryScheduled { .. }));
    let all = kit
        .read("it-retry-topics.DLT", 1, Duration::from_secs(5))
        .await
        .expect("read");
    assert_eq!(all.len(), 1, "only `always` was dead-lettered");
    kit.shutdown().await.expect("clean shutdown");
}

/// Fails every time.
#[dispatcher::kafka_handler(
    topic = "it-retry-restart",
    retry = std::io::Error,
    max_attempts = 1,
    retry_topics = ["2s", "3s"]
)]
async fn failing(body: &str) -> std::io::Result<()> {
    note_call(body);
    Err(std::io::Error::other("still down"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_and_due_times_carry_across_a_restart() {
    let group = format!("it-retry-restart-{}", std::process::id());
    let builder = || {
        TestKit::builder()
            .topics(["it-retry-restart"])
            .group_id(group.clone())
    };
    let kit = TestKit::start(builder()).await.expect("start");
    let (partition, offset) = kit
        .publish("it-retry-restart", Some("k"), "restart-1")
        .await
        .expect("publish");
    let first = kit
        .outcome(
            "it-retry-restart",
            partition,
            offset,
            Duration::from_secs(30),
        )
        .await
        .expect("an outcome");
    assert!(
        matches!(first, Outcome::RetryScheduled { level: 1, .. }),
        "{first:?}"
    );
    // Stop while the record waits on the first level (due in 2 s).
    kit.shutdown().await.expect("clean shutdown");
    assert_eq!(calls("restart-1").len(), 1);

    let kit = TestKit::start(builder()).await.expect("restart");
    let letters = kit
        .dead_letters("it-retry-restart.DLT", 1, Duration::from_secs(60))
        .await
        .expect("the dead letter after the last level");
    let (_, info) = &letters[0];
    assert_eq!(info.attempts, 3, "attempts counted across the restart");
    assert_eq!(
        (info.original_partition, info.original_offset),
        (partition, offset)
    );
    let attempts = calls("restart-1");
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    assert_waited(attempts[0].1, attempts[1].1, Duration::from_secs(2));
    assert_waited(attempts[1].1, attempts[2].1, Duration::from_secs(3));
    kit.shutdown().await.expect("clean shutdown");
}

#[test]
fn two_groups_cannot_share_a_retry_topic() {
    use dispatcher::handler::{Handler, HandlerFuture, HandlerSpec};
    use dispatcher::policy::Policy;
    struct Nothing;
    impl Handler for Nothing {
        fn call(&self, _msg: dispatcher::Message) -> HandlerFuture<'static> {
            Box::pin(async { Ok(()) })
        }
    }
    static NOTHING: Nothing = Nothing;
    static DELAYS: [Duration; 1] = [Duration::from_secs(1)];
    let policy = Policy::DEFAULT
        .with_retry_topics(&DELAYS)
        .with_retry_topic_name("{topic}-retry-{level}");
    let spec = |name: &'static str, group: &'static str| {
        HandlerSpec::new(name, &["it-shared"], &NOTHING)
            .with_policy(policy)
            .with_group(group)
    };
    let built = dispatcher::Dispatcher::builder()
        .ignore_environment()
        .without_registered_handlers()
        .handler(spec("billing", "billing"))
        .handler(spec("audit", "audit"))
        .brokers("127.0.0.1:9")
        .build();
    let error = built.expect_err("a shared retry topic").to_string();
    assert!(
        error.contains("it-shared-retry-1") && error.contains("each other's retries"),
        "{error}"
    );
}

/// Succeeds.
#[dispatcher::kafka_handler(
    topic = "it-retry-cap",
    retry = std::io::Error,
    max_attempts = 1,
    retry_topics = ["300ms"]
)]
async fn fine(_body: &str) -> std::io::Result<()> {
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_time_past_the_levels_delay_does_not_hold_the_partition() {
    let kit = TestKit::start(TestKit::builder().topics(["it-retry-cap"]))
        .await
        .expect("start");
    // A hand-made record on the first level, due in an hour: it is handled
    // once the level's delay (300 ms) has passed since it was written.
    let level1 = format!("it-retry-cap.{}.retry.300ms", kit.group_id());
    let an_hour = SystemTime::now() + Duration::from_secs(3600);
    let due = an_hour
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis()
        .to_string();
    let (partition, offset) = kit
        .producer()
        .send(
            &level1,
            None,
            Some(b"k".as_slice()),
            Some(b"cap-1".as_slice()),
            &[
                (headers::RETRY_LEVEL, b"1".as_slice()),
                (headers::RETRY_DUE, due.as_bytes()),
            ],
        )
        .await
        .expect("publish");
    let outcome = kit
        .outcome(&level1, partition, offset, Duration::from_secs(30))
        .await
        .expect("handled well before the hour");
    assert!(matches!(outcome, Outcome::Handled { .. }), "{outcome:?}");
    kit.shutdown().await.expect("clean shutdown");
}

#[test]
fn latest_offsets_are_refused_with_retry_topics() {
    let built = dispatcher::Dispatcher::builder()
        .ignore_environment()
        .topics(["it-retry-cap"])
        .consumer_property("auto.offset.reset", "latest")
        .brokers("127.0.0.1:9")
        .build();
    let error = built.expect_err("latest with retry topics").to_string();
    assert!(
        error.contains("auto.offset.reset=latest") && error.contains("retry topic"),
        "{error}"
    );
}

/// Fails `bad` on its first read; everything else succeeds.
#[dispatcher::kafka_handler(
    topic = "it-retry-unblocks",
    retry = std::io::Error,
    max_attempts = 1,
    retry_topics = ["10s"]
)]
async fn unblocked(body: &str) -> std::io::Result<()> {
    let calls = note_call(body);
    if body == "bad" && calls == 1 {
        return Err(std::io::Error::other("not yet"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_waiting_on_a_retry_topic_holds_up_neither_its_key_nor_its_partition() {
    let kit = TestKit::start(TestKit::builder().topics(["it-retry-unblocks"]))
        .await
        .expect("start");
    let (p, o) = kit
        .producer()
        .send(
            "it-retry-unblocks",
            Some(0),
            Some(b"k".as_slice()),
            Some(b"bad".as_slice()),
            &[],
        )
        .await
        .expect("publish");
    let mut good = Vec::new();
    for i in 0..10 {
        let body = format!("good-{i}");
        good.push(
            kit.producer()
                .send(
                    "it-retry-unblocks",
                    Some(0),
                    Some(b"k".as_slice()),
                    Some(body.as_bytes()),
                    &[],
                )
                .await
                .expect("publish"),
        );
    }
    // The records behind it, of the same key, are handled and committed
    // while it waits out its 10 s on the retry topic.
    for &(gp, go) in &good {
        let outcome = kit
            .outcome("it-retry-unblocks", gp, go, Duration::from_secs(30))
            .await
            .expect("handled");
        assert!(matches!(outcome, Outcome::Handled { .. }), "{outcome:?}");
    }
    kit.wait_committed_to_end("it-retry-unblocks", Duration::from_secs(30))
        .await
        .expect("the source partition is committed past the failed record");
    let bad = calls("bad");
    assert_eq!(bad.len(), 1, "its second attempt is not due yet");
    let retried = format!("it-retry-unblocks.{}.retry.10s", kit.group_id());
    let outcome = kit
        .outcome("it-retry-unblocks", p, o, Duration::from_secs(5))
        .await
        .expect("an outcome");
    assert!(
        matches!(outcome, Outcome::RetryScheduled { .. }),
        "{outcome:?}"
    );
    kit.wait_until(
        "the retried record to be handled",
        Duration::from_secs(30),
        |k| {
            k.final_outcomes(&retried)
                .values()
                .any(|o| matches!(o, Outcome::Handled { attempts: 2 }))
        },
    )
    .await
    .expect("handled on the retry topic");
    assert_waited(bad[0].1, calls("bad")[1].1, Duration::from_secs(10));
    kit.shutdown().await.expect("clean shutdown");
}
