//! Scenario 6, dead-letter writes failing end to end: a poison record
//! (non-retryable, so it is dead-lettered) whose dead-letter write fails
//! because every Produce request is refused (`TOPIC_AUTHORIZATION_FAILED`,
//! injected after the records are published: the test's producer shares
//! the broker; the poison record waits in the handler until then).
//!
//! - (a) The fault clears after three seconds, within the dead-letter
//!   retry schedule. While it lasts, checked again and again, the record
//!   is not finished and its partition's committed offset stays at or
//!   below its offset, while the records behind it with other keys are
//!   handled; after it clears, the dead letter is in the dead-letter topic
//!   with headers naming the source topic, partition and offset, the
//!   committed offset moves past it to the end, and the records behind it
//!   with its own key are handled. The recovery time runs from the moment
//!   the fault is cleared until all of that holds.
//! - (b) The fault never clears (a short retry schedule runs out): `run()`
//!   returns a fatal error whose text names the record's topic, partition
//!   and offset, and the committed offset is not past it. A restart in the
//!   same group, with the fault gone, delivers the record again and
//!   dead-letters it, and the partition is committed to its end. The
//!   recovery time runs from the fault's clearing (just before the restart)
//!   until then.
//!
//! One report row for each. Each part has a dedicated embedded broker.

use super::common::{
    ends, expected, is_poison, letters_for, missing_letters, poison_of, recorder, settle,
    unfinished, LIVENESS, POISON,
};
use crate::report::Row;
use crate::setup::{one_at_a_time, unique};
use dispatcher::broker::{BrokerError, EmbeddedBroker, Request};
use dispatcher::event::Outcome;
use dispatcher::handler::HandlerSpec;
use dispatcher::policy::{Backoff, RetrySchedule};
use dispatcher::testing::TestKit;
use dispatcher::Error;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Records before the poison record (offsets 0..BEFORE).
const BEFORE: i64 = 5;
/// Records behind the poison record with keys of their own.
const BEHIND_OTHER_KEYS: usize = 20;
/// Records behind the poison record with its key (they wait for it).
const BEHIND_SAME_KEY: usize = 3;
/// The poison record's key.
const POISON_KEY: &str = "poison-key";

/// A single-partition topic on a broker of its own, and a kit running the
/// scenario's handler on it.
struct Setup {
    /// The part's own broker.
    broker: Arc<EmbeddedBroker>,
    /// Its single-partition topic.
    topic: String,
    /// The handler, reused by a restart.
    spec: HandlerSpec,
    /// What the handler saw, across restarts.
    calls: Arc<super::common::Calls>,
}

impl Setup {
    /// Starts the broker and creates a topic named after `base`, consumed
    /// by a handler called `handler`.
    fn new(base: &str, handler: &'static str) -> Self {
        let broker = Arc::new(EmbeddedBroker::start(1).expect("a dedicated embedded broker"));
        let topic = unique(base);
        broker.create_topic(&topic, 1).expect("create the topic");
        let (spec, calls) = recorder(handler, &topic);
        Setup {
            broker,
            topic,
            spec,
            calls,
        }
    }

    /// A kit running the handler in `group` (a new one when `None`),
    /// retrying dead-letter writes on `retry`.
    async fn kit(&self, group: Option<&str>, retry: RetrySchedule) -> TestKit {
        let mut builder = TestKit::builder()
            .without_registered_handlers()
            .handler(self.spec)
            .embedded_broker(self.broker.clone())
            .embedded_partitions(1)
            .dead_letter_retry(retry);
        if let Some(g) = group {
            builder = builder.group_id(g);
        }
        TestKit::start(builder).await.expect("start the test kit")
    }

    /// Publishes `BEFORE` records and waits until they are handled and
    /// committed (so the group is joined); then, with poison records held
    /// in the handler, the poison record and the records behind it.
    /// Returns every published record, (partition, offset) -> payload, and
    /// the poison record's place.
    async fn publish(&self, kit: &TestKit) -> (BTreeMap<(i32, i64), String>, (i32, i64)) {
        let mut published = BTreeMap::new();
        for i in 0..BEFORE {
            let payload = format!("k{i}:{i}");
            let at = kit
                .publish_to(&self.topic, 0, Some(&format!("k{i}")), &payload)
                .await
                .expect("publish");
            assert_eq!(at, (0, i), "a fresh single-partition topic");
            published.insert(at, payload);
        }
        let ends = BTreeMap::from([(0, BEFORE)]);
        settle(
            kit,
            &self.topic,
            |k| unfinished(k, &self.topic, &published),
            &ends,
            LIVENESS,
        )
        .await
        .expect("the first records are handled and committed");

        self.calls.hold_poison(true);
        let payload = format!("{POISON_KEY}:{BEFORE}{POISON}");
        let poison = kit
            .publish_to(&self.topic, 0, Some(POISON_KEY), &payload)
            .await
            .expect("publish the poison record");
        published.insert(poison, payload);
        for i in 0..BEHIND_OTHER_KEYS + BEHIND_SAME_KEY {
            let key = if i < BEHIND_OTHER_KEYS {
                format!("behind{i}")
            } else {
                POISON_KEY.to_owned()
            };
            let payload = format!("{key}:{i}");
            let at = kit
                .publish_to(&self.topic, 0, Some(&key), &payload)
                .await
                .expect("publish");
            published.insert(at, payload);
        }
        (published, poison)
    }

    /// Makes every Produce request fail from now on (the dead-letter
    /// writes among them), then lets the poison record fail.
    fn break_dead_letters(&self) {
        self.broker
            .fail_requests(
                Request::Produce,
                BrokerError::TopicAuthorizationFailed,
                100_000,
            )
            .expect("inject Produce errors");
        self.calls.hold_poison(false);
    }

    /// Ends the Produce errors.
    fn mend_dead_letters(&self) {
        self.broker
            .clear_failures(Request::Produce)
            .expect("clear the Produce errors");
    }
}

/// Emits part `scenario`'s report row: the `published` records, `lost`
/// of them, the handler's extra calls, the `dead_lettered` poison records,
/// and the recovery time when `settled`; else `notes` end with why not.
fn emit_row(
    scenario: &str,
    setup: &Setup,
    published: &BTreeMap<(i32, i64), String>,
    lost: usize,
    dead_lettered: usize,
    settled: Result<Duration, impl std::fmt::Display>,
    mut notes: String,
) {
    if let Err(e) = &settled {
        notes.push_str(&format!("; NOT RECOVERED within {LIVENESS:?}: {e}"));
    }
    Row {
        scenario: scenario.into(),
        broker: "embedded".into(),
        records: published.len() as u64,
        lost: lost as u64,
        duplicates: setup.calls.extra(),
        dead_lettered: dead_lettered as u64,
        recovery: settled.ok(),
        notes,
    }
    .emit();
}

/// Part (a): the outage clears within the retry schedule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_outage_that_clears() {
    let _one = one_at_a_time().await;
    let setup = Setup::new("fault-dlt-clears", "fault_suite_dead_letter_clears");
    // Retried every 200 ms for up to 20 s: longer than the fault.
    let retry = RetrySchedule::new(100, Backoff::fixed(Duration::from_millis(200)));
    let kit = setup.kit(None, retry).await;
    let group = kit.group_id().to_owned();
    let topic = setup.topic.clone();
    let (published, poison) = setup.publish(&kit).await;
    setup.break_dead_letters();

    // While the fault lasts: the poison record is not finished and its
    // partition is not committed past it, checked every 300 ms for 3 s;
    // the records behind it with other keys are handled meanwhile.
    let behind_other_keys: Vec<(i32, i64)> = published
        .iter()
        .filter(|(at, payload)| at.1 > poison.1 && !payload.starts_with(POISON_KEY))
        .map(|(at, _)| *at)
        .collect();
    let fault_ends = Instant::now() + Duration::from_secs(3);
    let mut checks = 0;
    let mut highest_committed = None;
    while Instant::now() < fault_ends {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let outcomes = kit.final_outcomes(&topic);
        assert!(
            !outcomes.get(&poison).is_some_and(Outcome::is_final),
            "the poison record {poison:?} finished while its dead letter could not be written: {:?}",
            outcomes.get(&poison)
        );
        let committed = kit
            .committed_offsets(&topic)
            .await
            .expect("read the committed offsets");
        let at = committed.get(&0).copied();
        assert!(
            at.is_some_and(|c| c <= poison.1),
            "committed {at:?} past the poison record at offset {} while its dead letter could not be written",
            poison.1
        );
        highest_committed = highest_committed.max(at);
        checks += 1;
    }
    assert!(checks >= 5, "only {checks} checks while the fault lasted");
    let outcomes = kit.final_outcomes(&topic);
    let handled_behind = behind_other_keys
        .iter()
        .filter(|at| matches!(outcomes.get(at), Some(Outcome::Handled { .. })))
        .count();
    assert_eq!(
        handled_behind,
        behind_other_keys.len(),
        "the records behind the poison record with other keys are handled while its dead letter waits"
    );

    setup.mend_dead_letters();
    let cleared_at = Instant::now();
    let settled = settle(
        &kit,
        &topic,
        |k| unfinished(k, &topic, &published),
        &ends(&published),
        LIVENESS,
    )
    .await;
    let recovery = cleared_at.elapsed();

    let poison_records = poison_of(&published);
    let letters = letters_for(&kit, &format!("{topic}.DLT"), &poison_records).await;
    let no_letter = missing_letters(&letters, &topic, &group, &poison_records);
    let open = unfinished(&kit, &topic, &published);
    let lost = published
        .keys()
        .filter(|at| open.contains(at) || no_letter.contains(at) || setup.calls.count(**at) == 0)
        .count();
    let notes = format!(
        "every Produce refused (TOPIC_AUTHORIZATION_FAILED) for 3 s after the poison record at offset {} failed; \
         {checks} checks during the fault: not finished, committed offset at most {highest_committed:?} (<= {}); \
         {handled_behind} records behind it with other keys handled meanwhile; dead-letter retry 100 x 200 ms",
        poison.1, poison.1
    );
    emit_row(
        "6a. dead-letter outage that clears",
        &setup,
        &published,
        lost,
        poison_records.len() - no_letter.len(),
        settled.as_ref().map(|()| recovery),
        notes,
    );

    settled.expect("after the fault clears, everything is finished and committed to the end");
    assert!(no_letter.is_empty(), "no dead letter for {no_letter:?}");
    assert_eq!(lost, 0, "records lost");
    assert_eq!(
        setup.calls.count(poison),
        1,
        "the dead-letter write is retried, not the handler"
    );
    tokio::time::timeout(LIVENESS, kit.shutdown())
        .await
        .expect("shutdown does not hang")
        .expect("a clean shutdown");
}

/// Part (b): the outage outlasts the retry schedule; a restart recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_outage_that_never_clears() {
    let _one = one_at_a_time().await;
    let setup = Setup::new("fault-dlt-stuck", "fault_suite_dead_letter_stuck");
    // Three attempts, 200 ms apart: the fault outlasts them.
    let retry = RetrySchedule::new(3, Backoff::fixed(Duration::from_millis(200)));
    let mut kit = setup.kit(None, retry).await;
    let group = kit.group_id().to_owned();
    let topic = setup.topic.clone();
    let (published, poison) = setup.publish(&kit).await;
    setup.break_dead_letters();
    let broken_at = Instant::now();

    let result = tokio::time::timeout(LIVENESS, kit.join())
        .await
        .expect("run() returns once the dead-letter write has failed for good");
    let stopped_after = broken_at.elapsed();
    let error = result.expect_err("run() fails when a dead letter cannot be written");
    let text = error.to_string();
    let place = format!("{topic}[{}] offset {}", poison.0, poison.1);
    assert!(text.contains(&place), "the error names {place}: {text}");
    match &error {
        Error::Fatal(f) => {
            assert_eq!(
                (f.topic.as_str(), f.partition, f.offset),
                (topic.as_str(), poison.0, poison.1),
                "{error:?}"
            );
        }
        other => panic!("expected a fatal error naming the record, got {other:?}"),
    }
    let chain = format!("{error:?}");
    assert!(
        chain.contains("dead letter"),
        "the cause says the dead letter could not be written: {chain}"
    );
    let first_run = kit.final_outcomes(&topic);
    // Nothing was committed past the record.
    let committed = kit
        .committed_offsets(&topic)
        .await
        .expect("read the committed offsets")
        .get(&0)
        .copied();
    let not_past = committed.is_some_and(|c| c <= poison.1);
    drop(kit);
    setup.mend_dead_letters();
    let cleared_at = Instant::now();

    // The restart in the same group delivers the record again.
    let kit = setup.kit(Some(&group), retry).await;
    // A record counts as finished when either run finished it.
    let finished_first = |at: &(i32, i64)| {
        first_run
            .get(at)
            .is_some_and(|o| expected(Some(o), is_poison(&published[at])))
    };
    let settled = settle(
        &kit,
        &topic,
        |k| {
            unfinished(k, &topic, &published)
                .into_iter()
                .filter(|at| !finished_first(at))
                .collect()
        },
        &ends(&published),
        LIVENESS,
    )
    .await;
    let recovery = cleared_at.elapsed();
    let poison_records = poison_of(&published);
    let letters = letters_for(&kit, &format!("{topic}.DLT"), &poison_records).await;
    let no_letter = missing_letters(&letters, &topic, &group, &poison_records);
    let open = unfinished(&kit, &topic, &published);
    let lost = published
        .keys()
        .filter(|at| (open.contains(at) && !finished_first(at)) || no_letter.contains(at))
        .count();
    let delivered_again = setup.calls.count(poison);
    let notes = format!(
        "every Produce refused (TOPIC_AUTHORIZATION_FAILED); dead-letter retry 3 x 200 ms; run() failed after {:.2} s naming {place}; \
         committed offset then {committed:?} (poison at {}); poison record delivered {delivered_again} times in all; \
         recovery from the fault's clearing and a restart in the same group",
        stopped_after.as_secs_f64(),
        poison.1
    );
    emit_row(
        "6b. dead-letter outage that never clears",
        &setup,
        &published,
        lost,
        poison_records.len() - no_letter.len(),
        settled.as_ref().map(|()| recovery),
        notes,
    );

    assert!(
        not_past,
        "committed {committed:?} past the poison record at offset {} that was never dead-lettered",
        poison.1
    );
    settled.expect("after the restart, everything is finished and committed to the end");
    assert_eq!(
        delivered_again, 2,
        "the restart delivers the poison record again, once"
    );
    assert!(no_letter.is_empty(), "no dead letter for {no_letter:?}");
    assert_eq!(lost, 0, "records lost");
    tokio::time::timeout(LIVENESS, kit.shutdown())
        .await
        .expect("shutdown does not hang")
        .expect("a clean shutdown");
}
