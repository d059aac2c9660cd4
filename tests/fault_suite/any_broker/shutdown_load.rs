//! Scenario 7, shutdown under load: a consumer process with thousands of
//! records in flight (a backlog of 2,000 keys, handlers that take up to
//! 100 ms; `dispatcher_records_in_flight` is scraped to show it) gets
//! SIGTERM. It drains, commits (its committed offsets must have moved) and
//! exits 0 (30 s allowed: the drain timeout of 5 s plus the final commit
//! and leaving the group); a restarted consumer then delivers nothing
//! below what the first one committed, and handles the rest: nothing
//! lost.

use crate::report::Row;
use crate::setup;
use dispatcher_tests::tansu::free_port;
use dispatcher_tests::{check, read_log, records_by_pid, scrape, wait_for, KeyedProducer, LogLine};
use std::time::{Duration, Instant};

const PARTITIONS: i32 = 4;
const KEYS: usize = 2_000;
const BACKLOG: u64 = 30_000;
/// The consumer's drain timeout (set by `test_consumer`).
const DRAIN: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_thousands_in_flight_drains_commits_and_redelivers_nothing_committed() {
    let _one = setup::one_at_a_time().await;
    let started = Instant::now();
    let setup::Processes {
        mut dir,
        topic,
        group,
        broker: _broker,
        brokers,
        log,
        consumers,
    } = setup::Processes::start("shutdown-load", PARTITIONS);
    let producer = KeyedProducer::start(&brokers, &topic, KEYS, Duration::from_millis(1));
    let filled = wait_for(
        "the backlog to be written",
        Duration::from_secs(120),
        || producer.produced() >= BACKLOG,
    );
    let produced = producer.stop().await;
    let total: u64 = produced.iter().sum();
    assert!(
        filled,
        "the producer wrote only {total} of {BACKLOG} records in 120 s"
    );

    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let mut first = consumers.spawn_with(
        0,
        &[
            ("E2E_MAX_SLEEP_MS", "100"),
            ("DISPATCHER_METRICS_ADDRESS", address.as_str()),
        ],
    );
    let first_pid = first.pid();
    let (log2, in_flight) = (log.clone(), std::sync::Arc::new(std::sync::Mutex::new(0.0)));
    let seen = in_flight.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        wait_for(
            "1,000 records handled and 1,000 in flight",
            Duration::from_secs(60),
            || {
                let handled = records_by_pid(&read_log(&log2))
                    .get(&first_pid)
                    .copied()
                    .unwrap_or(0);
                let n = scrape(port, "dispatcher_records_in_flight").unwrap_or(0.0);
                *seen.lock().expect("in flight") = n;
                handled >= 1_000 && n >= 1_000.0
            },
        )
    })
    .await
    .expect("join");
    let in_flight = *in_flight.lock().expect("in flight");
    assert!(
        loaded,
        "the consumer never had 1,000 records handled and 1,000 in flight (last seen {in_flight} in flight); see {}",
        dir.path().display()
    );

    let term = Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        let s = first.stop(DRAIN + Duration::from_secs(25));
        (first, s)
    })
    .await
    .expect("join")
    .1;
    let stopped_in = term.elapsed();
    assert!(
        status.is_some_and(|s| s.success()),
        "the consumer did not exit 0 within {:?} of SIGTERM: {status:?}; see {}",
        DRAIN + Duration::from_secs(25),
        dir.path().display()
    );
    let after_first = setup::committed(&brokers, &group, &topic).await;
    assert!(
        after_first.values().any(|&o| o > 0),
        "the first consumer committed nothing before it exited: {after_first:?}"
    );
    let handled_first = records_by_pid(&read_log(&log))
        .get(&first_pid)
        .copied()
        .unwrap_or(0);
    println!(
        "shutdown: SIGTERM with {in_flight} in flight after {handled_first} handled; exit 0 in {:.2} s; committed {after_first:?}",
        stopped_in.as_secs_f64()
    );

    let restart = Instant::now();
    let mut second = consumers.spawn(1);
    let second_pid = second.pid();
    let complete = setup::all_handled(&log, &produced, Duration::from_secs(120)).await;
    let recovery = restart.elapsed();
    let status = second.stop(Duration::from_secs(30));
    let lines = read_log(&log);
    let report = check(&lines, &produced);
    // Nothing the first process committed comes again.
    let below: Vec<String> = lines
        .iter()
        .filter_map(|l| match l {
            LogLine::Record {
                key,
                seq,
                partition,
                offset,
                pid,
            } if *pid == second_pid
                && *offset < after_first.get(partition).copied().unwrap_or(0) =>
            {
                Some(format!("{key}:{seq} at {partition}@{offset}"))
            }
            _ => None,
        })
        .collect();
    Row {
        scenario: "7. shutdown under load".into(),
        broker: setup::broker_name(),
        records: total,
        lost: report.lost as u64,
        duplicates: report.duplicates as u64,
        dead_lettered: 0,
        recovery: Some(recovery),
        notes: format!(
            "SIGTERM with {in_flight} in flight: exit 0 in {:.2} s; {} redelivered below the committed offsets; recovery = restart to all handled; {:.0} s in all",
            stopped_in.as_secs_f64(),
            below.len(),
            started.elapsed().as_secs_f64()
        ),
    }
    .emit();
    println!("shutdown:\n{report}");
    assert!(
        complete,
        "not every record was handled after the restart\n{report}"
    );
    assert!(
        below.is_empty(),
        "the restarted consumer handled {} records the first one had committed, e.g. {:?}",
        below.len(),
        &below[..below.len().min(5)]
    );
    assert!(report.violations.is_empty(), "log violations:\n{report}");
    assert!(
        status.is_some_and(|s| s.success()),
        "the second consumer did not exit 0: {status:?}"
    );
    dir.remove_on_drop();
}
