//! Scenario 1, crash loop: a keyed stream with one poison record in a
//! hundred, and a consumer process SIGKILLed at random points (one kill
//! 0.2 to 2 s after its start, usually during its group join; the others
//! after it handled records) and restarted, many times, while a producer
//! keeps writing. Then:
//!
//! - every record was handled at least once (nothing lost);
//! - every poison record is in the dead-letter topic, naming its source
//!   topic, partition and offset;
//! - per key, records were handled in order within each process lifetime;
//! - no restart delivered a record below an offset committed before it
//!   (duplicates are only what the killed process handled after its last
//!   commit);
//! - a final clean shutdown commits exactly the end of every partition.
//!
//! The kill points come from a seeded RNG; the seed is printed, and
//! `E2E_SEED=<n>` replays it.

use crate::report::Row;
use crate::setup;
use dispatcher_tests::{
    caught_up, check, check_dead_letters, committed, poison_records, read_log, records_by_pid,
    wait_for, KeyedProducer, LogLine,
};
use rand::Rng;
use std::time::{Duration, Instant};

const PARTITIONS: i32 = 4;
const KEYS: usize = 40;
/// Kills in all: one during a group join, the others mid-stream.
const KILLS: usize = 8;
/// The consumers' session timeout: a SIGKILLed member holds its
/// partitions until it expires.
const SESSION: (&str, &str) = ("E2E_SESSION_TIMEOUT_MS", "3000");

fn lines_of(lines: &[LogLine], pid: u32) -> usize {
    records_by_pid(lines).get(&pid).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_consumers_lose_nothing_and_dead_letter_every_poison_record() {
    let _one = setup::one_at_a_time().await;
    let started = Instant::now();
    let mut rng = setup::seeded_rng("crash loop");
    let setup::Processes {
        mut dir,
        topic,
        group,
        broker: _broker,
        brokers,
        log,
        consumers,
    } = setup::Processes::start("crash-loop", PARTITIONS);
    let producer =
        KeyedProducer::start_with(&brokers, &topic, KEYS, Duration::from_millis(40), true);

    // Exactly one kill (never the first) lands during the group join; the
    // others while records are being handled.
    let join_kill = rng.random_range(1..KILLS);
    let mut kills_mid_stream = 0;
    let mut to_first_record = Vec::new();
    for n in 0..KILLS {
        let spawned = Instant::now();
        let mut c = consumers.spawn_with(n, &[SESSION]);
        let pid = c.pid();
        let during_join = n == join_kill;
        if during_join {
            let wait = rng.random_range(200..2000);
            tokio::time::sleep(Duration::from_millis(wait)).await;
        } else {
            let log2 = log.clone();
            let handling = tokio::task::spawn_blocking(move || {
                wait_for(
                    "the consumer to handle records",
                    Duration::from_secs(60),
                    || lines_of(&read_log(&log2), pid) > 0,
                )
            })
            .await
            .expect("join");
            assert!(
                handling,
                "consumer {n} (pid {pid}) handled nothing within 60 s; see {}",
                dir.path().display()
            );
            to_first_record.push(spawned.elapsed());
            let wait = rng.random_range(100..2000);
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
        assert!(
            c.try_status().is_none(),
            "consumer {n} (pid {pid}) exited by itself: {:?}; see {}",
            c.try_status(),
            dir.path().display()
        );
        c.kill();
        let handled = lines_of(&read_log(&log), pid);
        if handled > 0 {
            kills_mid_stream += 1;
        }
        println!(
            "crash loop: kill #{n}: SIGKILL pid {pid} {} after {handled} records (produced so far {})",
            if during_join { "during the join" } else { "mid-stream" },
            producer.produced()
        );
    }
    let produced = producer.stop().await;
    let total: u64 = produced.iter().sum();
    println!("crash loop: producer stopped after {total} records");

    // The final consumer runs with its periodic commit effectively off, so
    // the offsets it reaches are committed only by its clean shutdown.
    let last_kill = Instant::now();
    let mut last = consumers.spawn_with(KILLS, &[SESSION, ("E2E_COMMIT_INTERVAL_MS", "3600000")]);
    let final_pid = last.pid();
    let complete = setup::all_handled(&log, &produced, Duration::from_secs(90)).await;
    // Caught up: its watermark is at the end of every partition. Also let
    // the group settle: the killed members' sessions (3 s) must have
    // expired, or their expiry rebalances the group during shutdown.
    let ends = check(&read_log(&log), &produced).ends;
    let (log2, b, t, g) = (log.clone(), brokers.clone(), topic.clone(), group.clone());
    let caught = complete
        && tokio::task::spawn_blocking(move || {
            wait_for(
                "the final consumer to reach the end of every partition",
                Duration::from_secs(60),
                || {
                    last_kill.elapsed() > Duration::from_secs(5)
                        && caught_up(&read_log(&log2), final_pid, &committed(&b, &g, &t), &ends)
                },
            )
        })
        .await
        .expect("join");
    let report = check(&read_log(&log), &produced);
    println!("crash loop:\n{report}");
    assert!(
        complete,
        "not every produced record was handled within 90 s\n{report}"
    );
    assert!(
        caught,
        "the final consumer (pid {final_pid}) did not reach the end of every partition; see {}",
        dir.path().display()
    );
    let status = last.stop(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "the final consumer did not exit 0 within 30 s of SIGTERM: {status:?}; see {}",
        dir.path().display()
    );

    let poison = poison_records(&produced);
    let dead_letter_topic = format!("{topic}.DLT");
    let (b, t, r) = (brokers.clone(), topic.clone(), report);
    let (dead_lettered, problems, report) = tokio::task::spawn_blocking(move || {
        let (n, problems) = check_dead_letters(
            &b,
            &dead_letter_topic,
            &t,
            &poison,
            &r,
            Duration::from_secs(60),
        );
        (n, problems, r)
    })
    .await
    .expect("join");

    let after = setup::committed(&brokers, &group, &topic).await;
    let mean = to_first_record.iter().sum::<Duration>() / to_first_record.len().max(1) as u32;
    Row {
        scenario: "1. crash loop".into(),
        broker: setup::broker_name(),
        records: total,
        lost: report.lost as u64,
        duplicates: report.duplicates as u64,
        dead_lettered: dead_lettered as u64,
        recovery: to_first_record.iter().max().copied(),
        notes: format!(
            "{KILLS} SIGKILLs ({kills_mid_stream} mid-stream), {} poison; recovery = restart to first record, longest (mean {:.2} s); {:.0} s in all",
            poison_records(&produced).len(),
            mean.as_secs_f64(),
            started.elapsed().as_secs_f64()
        ),
    }
    .emit();

    assert!(report.violations.is_empty(), "log violations:\n{report}");
    assert!(problems.is_empty(), "dead-letter problems: {problems:#?}");
    assert!(
        report.commits > 0,
        "no commit was logged: the REWIND check had nothing to check\n{report}"
    );
    println!(
        "crash loop: after the clean shutdown: committed {after:?}, ends {:?}",
        report.ends
    );
    for (p, end) in &report.ends {
        let c = after.get(p).copied().unwrap_or(0);
        assert_eq!(
            c, *end,
            "partition {p}: committed {c} after the clean shutdown, end {end}"
        );
    }
    dir.remove_on_drop();
}
