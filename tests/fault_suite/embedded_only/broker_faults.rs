//! Scenario 2, broker faults: a keyed stream on four partitions, published
//! in phases, with about 1% poison records (the handler fails them with a
//! non-retryable error, so each takes the dead-letter path: a Produce
//! request), while the embedded cluster injects one fault per phase:
//!
//! 1. every Fetch fails with `NOT_LEADER_OR_FOLLOWER`;
//! 2. every OffsetCommit fails with `NOT_COORDINATOR`;
//! 3. every Produce fails with `TOPIC_AUTHORIZATION_FAILED`, so the phase's
//!    dead-letter writes fail and are retried (the poison records are held
//!    in the handler until the fault is in place: the test's own producer
//!    shares the broker);
//! 4. one Heartbeat fails with `UNKNOWN_MEMBER_ID`: the member loses its
//!    partitions and rejoins;
//! 5. one Heartbeat fails with `REBALANCE_IN_PROGRESS` (the member rejoins)
//!    and every JoinGroup fails with `NOT_COORDINATOR`, so the rejoin keeps
//!    failing while the fault lasts;
//! 6. the broker goes down, and comes back up;
//! 7. a latency spike: every response is delayed by 500 ms.
//!
//! Each fault is held for two seconds (records are published during it
//! where the fault allows), then cleared. The scenario proves, for every
//! fault, that nothing is lost (each record is handled, or dead-lettered
//! with `dlt.original.*` headers naming it, read back from the dead-letter
//! topic), that the committed offsets reach the end of every partition
//! (the ends computed from the offsets the publishes returned, never from
//! the broker), and that during the dead-letter fault no poison record is
//! finished nor committed past. It reports one row per fault with the
//! recovery time: from the moment the fault is cleared until everything
//! published so far is handled and committed.
//!
//! The handler, its poison records and the helpers that build it are shared
//! with scenario 6 ([`super::dead_letter_outage`]).

use super::common::{
    ends, is_poison, letters_for, missing_letters, poison_of, recorder, settle, unfinished,
    LIVENESS, POISON,
};
use crate::report::Row;
use crate::setup::{one_at_a_time, unique};
use dispatcher::broker::{BrokerError, EmbeddedBroker, Request};
use dispatcher::event::Outcome;
use dispatcher::policy::{Backoff, RetrySchedule};
use dispatcher::testing::TestKit;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Partitions of the scenario's topic.
const PARTITIONS: i32 = 4;
/// Records published per phase (one phase per fault).
const PER_PHASE: usize = 500;
/// Distinct keys of the stream.
const KEYS: usize = 40;
/// How long each fault is held before it is cleared.
const HOLD: Duration = Duration::from_secs(2);
/// The faults of the scenario, one per phase, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Fetch requests fail.
    Fetch,
    /// Offset commits fail.
    OffsetCommit,
    /// Produce requests fail while poison records are dead-lettered.
    DeadLetterProduce,
    /// The member is told it is unknown: it loses its partitions.
    HeartbeatLost,
    /// The member is made to rejoin, and its joins fail.
    JoinGroup,
    /// The broker goes down.
    BrokerDown,
    /// Responses are delayed.
    Latency,
}

/// The phases, in order.
const FAULTS: [Fault; 7] = [
    Fault::Fetch,
    Fault::OffsetCommit,
    Fault::DeadLetterProduce,
    Fault::HeartbeatLost,
    Fault::JoinGroup,
    Fault::BrokerDown,
    Fault::Latency,
];

/// Many: a fault that lasts until it is cleared.
const UNTIL_CLEARED: usize = 100_000;

impl Fault {
    /// The row's scenario name.
    fn label(self) -> &'static str {
        match self {
            Fault::Fetch => "2. broker faults: Fetch errors",
            Fault::OffsetCommit => "2. broker faults: OffsetCommit errors",
            Fault::DeadLetterProduce => "2. broker faults: Produce errors (dead letters)",
            Fault::HeartbeatLost => "2. broker faults: Heartbeat, member lost",
            Fault::JoinGroup => "2. broker faults: JoinGroup errors in a rejoin",
            Fault::BrokerDown => "2. broker faults: broker down and up",
            Fault::Latency => "2. broker faults: latency spike",
        }
    }

    /// What was injected, for the row's notes.
    fn what(self) -> &'static str {
        match self {
            Fault::Fetch => "every Fetch failed with NOT_LEADER_OR_FOLLOWER for 2 s",
            Fault::OffsetCommit => "every OffsetCommit failed with NOT_COORDINATOR for 2 s",
            Fault::DeadLetterProduce => {
                "every Produce failed with TOPIC_AUTHORIZATION_FAILED for 2 s while the poison records were dead-lettered"
            }
            Fault::HeartbeatLost => {
                "a Heartbeat failed with UNKNOWN_MEMBER_ID (partitions lost, rejoin; the mock waits session timeout - 1 s for a rejoin)"
            }
            Fault::JoinGroup => {
                "a Heartbeat failed with REBALANCE_IN_PROGRESS and every JoinGroup with NOT_COORDINATOR for 2 s"
            }
            Fault::BrokerDown => "the only broker was down for 2 s",
            Fault::Latency => "every response delayed by 500 ms for 2 s",
        }
    }

    /// Whether the test's producer may publish while the fault lasts (a
    /// Produce fault would hit it too).
    fn publish_during(self) -> bool {
        self != Fault::DeadLetterProduce
    }

    /// Starts the fault on `broker`.
    fn inject(self, broker: &EmbeddedBroker) {
        let result = match self {
            Fault::Fetch => broker.fail_requests(
                Request::Fetch,
                BrokerError::NotLeaderOrFollower,
                UNTIL_CLEARED,
            ),
            Fault::OffsetCommit => broker.fail_requests(
                Request::OffsetCommit,
                BrokerError::NotCoordinator,
                UNTIL_CLEARED,
            ),
            Fault::DeadLetterProduce => broker.fail_requests(
                Request::Produce,
                BrokerError::TopicAuthorizationFailed,
                UNTIL_CLEARED,
            ),
            Fault::HeartbeatLost => {
                broker.fail_requests(Request::Heartbeat, BrokerError::UnknownMemberId, 1)
            }
            Fault::JoinGroup => broker
                .fail_requests(
                    Request::JoinGroup,
                    BrokerError::NotCoordinator,
                    UNTIL_CLEARED,
                )
                .and_then(|()| {
                    broker.fail_requests(Request::Heartbeat, BrokerError::RebalanceInProgress, 1)
                }),
            Fault::BrokerDown => broker.broker_down(1),
            Fault::Latency => broker.set_latency(Duration::from_millis(500)),
        };
        result.unwrap_or_else(|e| panic!("inject {self:?}: {e}"));
    }

    /// Ends the fault on `broker`.
    fn clear(self, broker: &EmbeddedBroker) {
        let result = match self {
            Fault::Fetch => broker.clear_failures(Request::Fetch),
            Fault::OffsetCommit => broker.clear_failures(Request::OffsetCommit),
            Fault::DeadLetterProduce => broker.clear_failures(Request::Produce),
            Fault::HeartbeatLost => broker.clear_failures(Request::Heartbeat),
            Fault::JoinGroup => broker
                .clear_failures(Request::JoinGroup)
                .and_then(|()| broker.clear_failures(Request::Heartbeat)),
            Fault::BrokerDown => broker.broker_up(1),
            Fault::Latency => broker.set_latency(Duration::ZERO),
        };
        result.unwrap_or_else(|e| panic!("clear {self:?}: {e}"));
    }
}

/// One record to publish: its key and payload.
struct Outgoing {
    /// `k0` to `k39`.
    key: String,
    /// `key:seq`, with [`POISON`] appended for a poison record.
    payload: String,
}

impl Outgoing {
    /// Record number `seq` of the stream; about 1% are poison.
    fn new(seq: usize) -> Self {
        let key = format!("k{}", seq % KEYS);
        let poison = seq % 100 == 37;
        let payload = format!("{key}:{seq}{}", if poison { POISON } else { "" });
        Outgoing { key, payload }
    }
}

/// What the test knows of every published record: (partition, offset) ->
/// (payload, phase).
type Published = BTreeMap<(i32, i64), (String, usize)>;

/// Publishes `batch` concurrently and returns where each record went.
async fn publish(kit: &TestKit, topic: &str, batch: &[Outgoing]) -> Vec<((i32, i64), String)> {
    let sends = batch
        .iter()
        .map(|r| kit.publish(topic, Some(&r.key), &r.payload));
    futures::future::join_all(sends)
        .await
        .into_iter()
        .zip(batch)
        .map(|(at, r)| {
            let at = at.unwrap_or_else(|e| panic!("publish {}: {e}", r.payload));
            (at, r.payload.clone())
        })
        .collect()
}

/// What the dead-letter fault's checks saw while it lasted.
#[derive(Default)]
struct DuringFault {
    /// Poison records of the phase finished while their writes failed.
    finished_early: Vec<(i32, i64)>,
    /// Partitions committed past a poison record while its write failed.
    committed_past: Vec<String>,
}

/// The scenario: the warm-up, then one phase per fault, one row each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_faults() {
    let _one = one_at_a_time().await;
    let started = Instant::now();
    let broker = Arc::new(EmbeddedBroker::start(1).expect("a dedicated embedded broker"));
    let topic = unique("fault-broker");
    let dead_letter_topic = format!("{topic}.DLT");
    broker
        .create_topic(&topic, PARTITIONS)
        .expect("create the topic");
    let (spec, calls) = recorder("fault_suite_broker_faults", &topic);
    let kit = TestKit::start(
        TestKit::builder()
            .without_registered_handlers()
            .handler(spec)
            .embedded_broker(broker.clone())
            .embedded_partitions(PARTITIONS)
            // Longer than any fault is held: a dead-letter write outlives
            // the Produce fault.
            .dead_letter_retry(RetrySchedule::new(
                40,
                Backoff::fixed(Duration::from_millis(250)),
            )),
    )
    .await
    .expect("start the test kit");
    let group = kit.group_id().to_owned();

    // Warm-up: a record on each partition, so the group is joined and
    // fetching everywhere before the first fault.
    let mut published = Published::new();
    for p in 0..PARTITIONS {
        let payload = format!("warm-up:{p}");
        let at = kit
            .publish_to(&topic, p, Some("warm-up"), &payload)
            .await
            .expect("publish the warm-up");
        published.insert(at, (payload, 0));
    }
    settle(
        &kit,
        &topic,
        |k| unfinished(k, &topic, &published),
        &ends(&published),
        LIVENESS,
    )
    .await
    .expect("the warm-up records are handled and committed");

    let mut failures = Vec::new();
    for (index, fault) in FAULTS.into_iter().enumerate() {
        let phase = index + 1;
        let extra_before = calls.extra();
        let batch: Vec<Outgoing> = (0..PER_PHASE)
            .map(|i| Outgoing::new(index * PER_PHASE + i))
            .collect();
        let (before, during) = if fault.publish_during() {
            batch.split_at(PER_PHASE / 2)
        } else {
            (&batch[..], &[][..])
        };

        if fault == Fault::DeadLetterProduce {
            calls.hold_poison(true);
        }
        let mut sent = publish(&kit, &topic, before).await;
        fault.inject(&broker);
        calls.hold_poison(false);
        let phase_poison: BTreeMap<(i32, i64), String> = sent
            .iter()
            .filter(|(_, payload)| is_poison(payload))
            .cloned()
            .collect();
        let holding = async {
            tokio::time::sleep(HOLD).await;
            let mut seen = DuringFault::default();
            if fault == Fault::DeadLetterProduce {
                // Checked at the end of the fault: no poison record of the
                // phase is finished, and no partition is committed past one.
                let outcomes = kit.final_outcomes(&topic);
                seen.finished_early = phase_poison
                    .keys()
                    .filter(|at| outcomes.get(at).is_some_and(Outcome::is_final))
                    .copied()
                    .collect();
                let committed = kit
                    .committed_offsets(&topic)
                    .await
                    .expect("read the committed offsets during the Produce fault");
                for (p, o) in phase_poison.keys() {
                    if committed.get(p).is_some_and(|c| c > o) {
                        seen.committed_past.push(format!(
                            "{topic}[{p}] committed {:?} past poison offset {o}",
                            committed.get(p)
                        ));
                    }
                }
            }
            fault.clear(&broker);
            (Instant::now(), seen)
        };
        let published_before: BTreeSet<(i32, i64)> = sent.iter().map(|(at, _)| *at).collect();
        // Half-way through the fault, once it has taken effect (a heartbeat
        // error is met within the heartbeat interval, 500 ms), so these
        // records can only be finished after the fault is cleared.
        let publishing = async {
            tokio::time::sleep(HOLD / 2).await;
            publish(&kit, &topic, during).await
        };
        let (more, (cleared_at, seen)) = tokio::join!(publishing, holding);
        sent.extend(more);
        let phase_records: BTreeSet<(i32, i64)> = sent.iter().map(|(at, _)| *at).collect();
        assert_eq!(
            phase_records.len(),
            PER_PHASE,
            "each record stored once, at an offset of its own"
        );
        for (at, payload) in sent {
            assert!(
                published.insert(at, (payload, phase)).is_none(),
                "{at:?} published twice"
            );
        }
        let ends = ends(&published);
        let settled = settle(
            &kit,
            &topic,
            |k| unfinished(k, &topic, &published),
            &ends,
            LIVENESS,
        )
        .await;
        let recovery = cleared_at.elapsed();

        // Every poison record published so far has its dead letter.
        let poison = poison_of(&published);
        let letters = letters_for(&kit, &dead_letter_topic, &poison).await;
        let no_letter = missing_letters(&letters, &topic, &group, &poison);
        let open = unfinished(&kit, &topic, &published);
        let lost = phase_records
            .iter()
            .filter(|at| open.contains(at) || no_letter.contains(at) || calls.count(**at) == 0)
            .count();
        let dead_lettered = letters
            .iter()
            .map(|(_, info)| (info.original_partition, info.original_offset))
            .filter(|at| phase_records.contains(at))
            .collect::<BTreeSet<_>>()
            .len();
        let mut notes = format!(
            "{}; {} published before the fault, {} during it; {PARTITIONS} partitions, {KEYS} keys",
            fault.what(),
            before.len(),
            during.len()
        );
        let redelivered = |during: bool| -> u32 {
            phase_records
                .iter()
                .filter(|at| published_before.contains(at) != during)
                .map(|at| calls.count(*at).saturating_sub(1))
                .sum()
        };
        let (dup_before, dup_during) = (redelivered(false), redelivered(true));
        if dup_before + dup_during > 0 {
            notes.push_str(&format!(
                "; redeliveries: {dup_before} of records published before the fault, {dup_during} of those published during it"
            ));
            if fault == Fault::HeartbeatLost {
                // A lost assignment cannot be committed: what was handled
                // since the last periodic commit is delivered again.
                notes.push_str(" (handled after the last commit before the assignment was lost)");
            }
        }
        if fault == Fault::DeadLetterProduce {
            notes.push_str(&format!(
                "; {} poison records unfinished and uncommitted while their dead-letter writes failed",
                phase_poison.len()
            ));
        }
        if let Err(e) = &settled {
            notes.push_str(&format!("; NOT RECOVERED within {LIVENESS:?}: {e}"));
        }
        Row {
            scenario: fault.label().into(),
            broker: "embedded".into(),
            records: PER_PHASE as u64,
            lost: lost as u64,
            duplicates: calls.extra() - extra_before,
            dead_lettered: dead_lettered as u64,
            recovery: settled.is_ok().then_some(recovery),
            notes,
        }
        .emit();

        if let Err(e) = settled {
            failures.push(format!("{fault:?}: did not recover: {e}"));
        }
        if lost > 0 {
            failures.push(format!("{fault:?}: {lost} records lost"));
        }
        if !no_letter.is_empty() {
            failures.push(format!("{fault:?}: no dead letter for {no_letter:?}"));
        }
        if !seen.finished_early.is_empty() {
            failures.push(format!(
                "{fault:?}: poison records finished while every Produce failed: {:?}",
                seen.finished_early
            ));
        }
        if !seen.committed_past.is_empty() {
            failures.push(format!("{fault:?}: {:?}", seen.committed_past));
        }
        if fault == Fault::DeadLetterProduce && phase_poison.is_empty() {
            failures.push("the Produce phase had no poison record".into());
        }
        // A phase that did not recover leaves the next one meaningless.
        assert!(failures.is_empty(), "{failures:#?}");
    }

    tokio::time::timeout(LIVENESS, kit.shutdown())
        .await
        .expect("shutdown does not hang")
        .expect("a clean shutdown after the faults");
    eprintln!(
        "fault-suite: scenario 2 took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
