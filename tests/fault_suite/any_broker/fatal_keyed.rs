//! Scenario 5, the fatal path in key mode across partitions: a handler in
//! `ordering = key` that takes a few milliseconds per record reads many
//! keys on four partitions, and fails one record in the middle of one
//! partition with an error its attribute lists as `fatal`.
//!
//! It proves that
//! - `run()` returns `Error::Fatal` naming that record (topic, partition,
//!   offset) and its error;
//! - the committed offset of the fatal record's partition never passes it,
//!   polled while the consumer runs and read at the end;
//! - every record any partition had started is finished before `run()`
//!   returns on the other partitions (the drain), and each partition's
//!   committed offset is then exactly its first record not handled: all
//!   below it handled, nothing handled left uncommitted at the watermark;
//! - a restart in the same group with the fix deployed (the handler no
//!   longer fails) delivers the fatal record again, redelivers nothing
//!   below the committed offsets, and handles every record: nothing lost.
//!
//! The row's duplicates are the records handled by both runs (those that
//! finished above a watermark in the first run); its recovery is the time
//! from the restart until every record is handled and committed.

use crate::report::Row;
use crate::setup;
use dispatcher::event::Outcome;
use dispatcher::extract::State;
use dispatcher::testing::TestKit;
use dispatcher::Error;
use dispatcher_tests::{committed_to, ends_of};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The topic in the handler's attribute; each run reads a unique topic
/// instead (`handler_topics`).
const ATTRIBUTE_TOPIC: &str = "fs-fatal-keyed";
/// The handler's name, for `handler_topics`.
const HANDLER: &str = "fs_fatal_keyed";
/// Partitions of the topic.
const PARTITIONS: i32 = 4;
/// Distinct keys; key `i` goes to partition `i % PARTITIONS`.
const KEYS: u64 = 64;
/// Records published.
const RECORDS: u64 = 4_000;
/// How long the handler takes per record.
const HANDLER_TIME: Duration = Duration::from_millis(4);
/// How long any one wait may take (tansu's group joins take seconds).
const WAIT: Duration = Duration::from_secs(60);

/// The error the handler's attribute lists as fatal.
#[derive(Debug, thiserror::Error)]
#[error("record {seq} is poisoned: the downstream schema rejects it")]
struct Poisoned {
    seq: u64,
}

/// What one run of the consumer is told and what it saw.
#[derive(Clone, Default)]
struct RunState {
    /// The record (by its sequence number) the handler fails as fatal;
    /// `None` once the fix is deployed.
    poison: Option<u64>,
    /// Every (partition, offset) the handler started on.
    started: Arc<Mutex<BTreeSet<(i32, i64)>>>,
}

impl RunState {
    fn started(&self) -> BTreeSet<(i32, i64)> {
        self.started
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Takes a record's sequence number (its payload), a few milliseconds per
/// record; fails the poisoned one with [`Poisoned`].
#[dispatcher::kafka_handler(topic = "fs-fatal-keyed", ordering = key, fatal = Poisoned)]
async fn fs_fatal_keyed(
    seq: &str,
    msg: &dispatcher::Message,
    run: State<RunState>,
) -> Result<(), Poisoned> {
    run.started
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert((msg.partition(), msg.offset()));
    tokio::time::sleep(HANDLER_TIME).await;
    match seq.parse::<u64>() {
        Ok(seq) if run.poison == Some(seq) => Err(Poisoned { seq }),
        _ => Ok(()),
    }
}

/// The builder of one run: the handler alone, on `topic`, in `group`.
fn builder(topic: &str, group: &str, run: RunState) -> dispatcher::DispatcherBuilder {
    let builder = TestKit::builder()
        .topics([ATTRIBUTE_TOPIC])
        .handler_topics(HANDLER, [topic.to_owned()])
        .embedded_partitions(PARTITIONS)
        .group_id(group)
        .state(run);
    if setup::external().is_some() {
        builder.create_topics(PARTITIONS, 1)
    } else {
        builder
    }
}

/// The records a kit handled, by (partition, offset).
fn handled(kit: &TestKit, topic: &str) -> BTreeSet<(i32, i64)> {
    kit.final_outcomes(topic)
        .into_iter()
        .filter(|(_, o)| matches!(o, Outcome::Handled { .. }))
        .map(|(k, _)| k)
        .collect()
}

/// Per partition: the first offset (of those published) not handled, and
/// one past the last handled offset below it; a watermark lies between the
/// two (they are equal when the offsets have no gaps).
fn watermarks(
    offsets: &BTreeMap<i32, Vec<i64>>,
    handled: &BTreeSet<(i32, i64)>,
) -> BTreeMap<i32, (i64, i64)> {
    offsets
        .iter()
        .map(|(p, offs)| {
            let first_unhandled = offs
                .iter()
                .copied()
                .find(|o| !handled.contains(&(*p, *o)))
                .unwrap_or_else(|| offs.last().map_or(0, |o| o + 1));
            let after_handled = offs
                .iter()
                .copied()
                .take_while(|o| *o < first_unhandled)
                .last()
                .map_or(first_unhandled, |o| o + 1);
            (*p, (after_handled, first_unhandled))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fatal_keyed() {
    let _one = setup::one_at_a_time().await;
    let topic = setup::unique("fs-fatal-keyed");
    let group = setup::unique("fs-fatal-keyed-group");
    // The poisoned record: the middle record of partition 0.
    let poison = (RECORDS / 2..RECORDS)
        .find(|s| (s % KEYS).is_multiple_of(PARTITIONS as u64))
        .expect("a record on partition 0");
    let first = RunState {
        poison: Some(poison),
        ..RunState::default()
    };
    let mut kit = TestKit::start(builder(&topic, &group, first.clone()))
        .await
        .expect("start the first run");

    // Publish every record at once (the producer keeps each partition's
    // order); key `seq % KEYS` on partition `key % PARTITIONS`.
    let keys: Vec<String> = (0..KEYS).map(|k| format!("key-{k}")).collect();
    let payloads: Vec<String> = (0..RECORDS).map(|s| s.to_string()).collect();
    let sends = (0..RECORDS).map(|s| {
        let key = (s % KEYS) as usize;
        let partition = i32::try_from(s % KEYS % PARTITIONS as u64).unwrap_or(0);
        kit.publish_to(&topic, partition, Some(&keys[key]), &payloads[s as usize])
    });
    let at: Vec<(i32, i64)> = futures::future::join_all(sends)
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("publish the records");
    let (fatal_p, fatal_o) = at[poison as usize];
    let mut offsets: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for (p, o) in &at {
        offsets.entry(*p).or_default().push(*o);
    }
    for offs in offsets.values_mut() {
        offs.sort_unstable();
    }
    let ends = ends_of(at.iter().copied());

    // While the first run runs, watch the fatal partition's commits.
    let stop = Arc::new(AtomicBool::new(false));
    let highest = Arc::new(AtomicI64::new(-1));
    let watcher = {
        let (stop, highest) = (stop.clone(), highest.clone());
        let (brokers, group, topic) = (
            kit.bootstrap_servers().to_owned(),
            group.clone(),
            topic.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let mut polls = 0u32;
            while !stop.load(Ordering::SeqCst) {
                if let Ok(c) = dispatcher::testing::committed_offsets(&brokers, &group, &topic) {
                    if let Some(o) = c.get(&fatal_p) {
                        highest.fetch_max(*o, Ordering::SeqCst);
                    }
                    polls += 1;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            polls
        })
    };

    // run() stops by itself with the fatal error.
    let ran = tokio::time::timeout(WAIT, kit.join()).await;
    stop.store(true, Ordering::SeqCst);
    let polls = watcher.await.expect("the commit watcher");
    let committed_1 = kit
        .committed_offsets(&topic)
        .await
        .expect("committed offsets after the first run");
    let handled_1 = handled(&kit, &topic);
    let started_1 = first.started();
    let fatal_events = kit.events(&topic, fatal_p, fatal_o);
    let outcomes_1 = kit.final_outcomes(&topic);
    drop(kit);

    // Restart in the same group with the fix deployed.
    let second = RunState::default();
    let restart = Instant::now();
    let kit = TestKit::start(builder(&topic, &group, second.clone()))
        .await
        .expect("start the second run");
    let all_handled = kit
        .wait_until("every record handled by one of the runs", WAIT, |k| {
            let h2 = handled(k, &topic);
            at.iter().all(|r| handled_1.contains(r) || h2.contains(r))
        })
        .await;
    let (committed_2, _) = committed_to(&kit, &topic, &ends, WAIT).await;
    let recovery = restart.elapsed();
    let handled_2 = handled(&kit, &topic);
    let outcomes_2 = kit.final_outcomes(&topic);
    let fatal_again = kit.events(&topic, fatal_p, fatal_o);
    let stopped = kit.shutdown().await;

    // The row.
    let lost = at
        .iter()
        .filter(|r| !handled_1.contains(r) && !handled_2.contains(r))
        .count();
    let duplicates = handled_1.intersection(&handled_2).count();
    let dead_lettered = outcomes_1
        .values()
        .chain(outcomes_2.values())
        .filter(|o| matches!(o, Outcome::DeadLettered { .. }))
        .count();
    let drained: usize = offsets
        .keys()
        .filter(|p| **p != fatal_p)
        .map(|p| started_1.iter().filter(|(q, _)| q == p).count())
        .sum();
    Row {
        scenario: "5. fatal, key mode".to_owned(),
        broker: setup::broker_name(),
        records: at.len() as u64,
        lost: lost as u64,
        duplicates: duplicates as u64,
        dead_lettered: dead_lettered as u64,
        recovery: Some(recovery),
        notes: format!(
            "{KEYS} keys on {PARTITIONS} partitions, {} ms per record; fatal at [{fatal_p}]@{fatal_o}; first run handled {} (other partitions started {drained}), committed {committed_1:?}; fatal partition's commit polled {polls} times, highest {}",
            HANDLER_TIME.as_millis(),
            handled_1.len(),
            highest.load(Ordering::SeqCst)
        ),
    }
    .emit();

    // run() returned the fatal error, naming the record.
    let err = ran
        .expect("run() returns after the fatal record")
        .expect_err("run() returns an error");
    match &err {
        Error::Fatal(f) => {
            assert_eq!(
                (f.topic.as_str(), f.partition, f.offset),
                (topic.as_str(), fatal_p, fatal_o),
                "{err}"
            );
            assert!(f.handler.ends_with(HANDLER), "{err}");
            assert!(f.error.is::<Poisoned>(), "{err}");
        }
        other => panic!("expected a fatal error, got {other}"),
    }
    let shown = format!("{err:?}");
    assert!(
        shown.contains(&format!("{topic}[{fatal_p}] offset {fatal_o}"))
            && shown.contains("poisoned"),
        "{shown}"
    );
    assert!(
        matches!(
            fatal_events.as_slice(),
            [Outcome::Fatal { attempts: 1, .. }]
        ),
        "{fatal_events:?}"
    );

    // The fatal partition's commits never passed the fatal record.
    assert!(polls > 0, "the commits were polled while the first run ran");
    assert!(
        highest.load(Ordering::SeqCst) <= fatal_o,
        "a commit of [{fatal_p}] passed the fatal record at {fatal_o}: {}",
        highest.load(Ordering::SeqCst)
    );
    assert!(
        committed_1.get(&fatal_p).is_none_or(|o| *o <= fatal_o),
        "{committed_1:?}"
    );
    // Other partitions drained what they had started, and every partition
    // is committed exactly to its first record not handled.
    for (p, o) in &started_1 {
        if *p != fatal_p {
            assert!(
                handled_1.contains(&(*p, *o)),
                "[{p}]@{o} was started and not finished before run() returned"
            );
        }
    }
    for (p, (low, high)) in watermarks(&offsets, &handled_1) {
        let committed = committed_1.get(&p).copied();
        let first_offset = offsets[&p][0];
        let ok = match committed {
            Some(c) => (low..=high).contains(&c),
            // No commit is right only when nothing was handled there.
            None => high == first_offset,
        };
        assert!(
            ok,
            "[{p}]: committed {committed:?} after the fatal stop, but the records below {high} were handled (watermark {low}..={high})"
        );
    }

    // The restart delivered the fatal record again, redelivered nothing
    // below the committed offsets, and handled and committed everything.
    assert!(
        matches!(fatal_again.as_slice(), [Outcome::Handled { .. }]),
        "the fatal record again: {fatal_again:?}"
    );
    all_handled.expect("every record handled");
    assert_eq!(lost, 0, "records handled by neither run");
    assert_eq!(dead_lettered, 0, "nothing dead-lettered");
    for (p, o) in second.started() {
        assert!(
            committed_1.get(&p).is_none_or(|c| o >= *c),
            "[{p}]@{o} redelivered below the committed offset {committed_1:?}"
        );
    }
    assert!(
        ends.iter().all(|(p, e)| committed_2.get(p) == Some(e)),
        "committed {committed_2:?}, published ends {ends:?}"
    );
    stopped.expect("the second run stops cleanly");
}
