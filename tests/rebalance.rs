//! Three consumer processes in one group on a 6-partition topic while a
//! producer keeps writing: two from the start, a third joins mid-stream, one
//! of the first two leaves cleanly (SIGTERM) mid-stream. Nothing is lost,
//! per-key order holds within each assignment, no key skips forward across
//! processes, and the final clean shutdown commits the end of every
//! partition.

use dispatcher_tests::{
    check, committed_at_end, handled_all, offsets, read_log, records_by_pid, wait_for, ChildGuard,
    KeyedProducer, Scenario, WorkDir,
};
use std::path::Path;
use std::time::{Duration, Instant};

const TOPIC: &str = "e2e-rebalance";
const GROUP: &str = "e2e-rebalance-group";
const PARTITIONS: i32 = 6;
const KEYS: usize = 40;

/// Waits (off the runtime) until the log shows `more` records handled by
/// `pid` beyond `from`.
async fn wait_handled(log: &Path, pid: u32, more: usize, timeout: Duration) -> bool {
    let log = log.to_owned();
    tokio::task::spawn_blocking(move || {
        let from = records_by_pid(&read_log(&log))
            .get(&pid)
            .copied()
            .unwrap_or(0);
        wait_for(
            &format!("pid {pid} to handle {more} more records"),
            timeout,
            || {
                records_by_pid(&read_log(&log))
                    .get(&pid)
                    .copied()
                    .unwrap_or(0)
                    >= from + more
            },
        )
    })
    .await
    .expect("join")
}

fn stop_cleanly(c: &mut ChildGuard, dir: &Path) {
    c.terminate();
    let status = c.wait_timeout(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "{} (pid {}) did not exit 0 within 30 s of SIGTERM: {status:?}; see {}",
        c.name(),
        c.pid(),
        dir.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_joining_and_leaving_lose_nothing_and_keep_key_order() {
    let started = Instant::now();
    let mut dir = WorkDir::new("rebalance");
    let Scenario {
        broker: _broker,
        brokers,
        log,
        consumers,
    } = Scenario::start(
        dir.path(),
        env!("CARGO_BIN_EXE_test_broker"),
        env!("CARGO_BIN_EXE_test_consumer"),
        PARTITIONS,
        TOPIC,
        GROUP,
    );
    let producer = KeyedProducer::start(&brokers, TOPIC, KEYS, Duration::from_millis(40));

    let mut a = consumers.spawn(0);
    let mut b = consumers.spawn(1);
    for c in [&a, &b] {
        assert!(
            wait_handled(&log, c.pid(), 1, Duration::from_secs(40)).await,
            "{} (pid {}) handled nothing within 40 s; see {}",
            c.name(),
            c.pid(),
            dir.path().display()
        );
    }
    println!(
        "e2e rebalance: A (pid {}) and B (pid {}) handling; produced so far {}",
        a.pid(),
        b.pid(),
        producer.produced()
    );

    let mut c = consumers.spawn(2);
    assert!(
        wait_handled(&log, c.pid(), 200, Duration::from_secs(40)).await,
        "C (pid {}) did not handle 200 records within 40 s of joining; see {}",
        c.pid(),
        dir.path().display()
    );
    println!(
        "e2e rebalance: C (pid {}) joined and handles records; produced so far {}",
        c.pid(),
        producer.produced()
    );

    stop_cleanly(&mut a, dir.path());
    println!(
        "e2e rebalance: A left cleanly (exit 0); produced so far {}",
        producer.produced()
    );
    for x in [&b, &c] {
        assert!(
            wait_handled(&log, x.pid(), 200, Duration::from_secs(40)).await,
            "{} (pid {}) did not go on handling after A left; see {}",
            x.name(),
            x.pid(),
            dir.path().display()
        );
    }
    let produced = producer.stop().await;
    let total: u64 = produced.iter().sum();
    println!("e2e rebalance: producer stopped after {total} records");

    let log2 = log.clone();
    let produced2 = produced.clone();
    let complete = tokio::task::spawn_blocking(move || {
        wait_for(
            "every produced record in the log",
            Duration::from_secs(60),
            || handled_all(&read_log(&log2), &produced2),
        )
    })
    .await
    .expect("join");
    let report = check(&read_log(&log), &produced);
    println!("e2e rebalance:\n{report}");
    assert!(
        complete,
        "not every produced record was handled within 60 s\n{report}"
    );
    // Redelivered records may still be running; wait until the periodic
    // commits reach the end before stopping.
    let b2 = brokers.clone();
    let at_end = tokio::task::spawn_blocking(move || {
        wait_for(
            "the committed offsets to reach the end offsets",
            Duration::from_secs(60),
            || {
                let (committed, ends) = offsets(&b2, GROUP, TOPIC);
                committed_at_end(&committed, &ends)
            },
        )
    })
    .await
    .expect("join");
    assert!(at_end, "the periodic commits never reached the end offsets");
    stop_cleanly(&mut b, dir.path());
    stop_cleanly(&mut c, dir.path());
    let report = check(&read_log(&log), &produced);
    assert!(report.violations.is_empty(), "log violations:\n{report}");

    let bs = brokers.clone();
    let (committed, ends) = tokio::task::spawn_blocking(move || offsets(&bs, GROUP, TOPIC))
        .await
        .expect("join");
    println!(
        "e2e rebalance: after the clean shutdown: committed {committed:?}, end offsets {ends:?}"
    );
    for (p, end) in &ends {
        let got = committed.get(p).copied().unwrap_or(0);
        assert_eq!(
            got, *end,
            "partition {p}: committed {got} after the clean shutdown, end offset {end}"
        );
    }
    println!(
        "e2e rebalance: {total} records, {} duplicates, {:.1} s",
        report.duplicates,
        started.elapsed().as_secs_f64()
    );
    dir.remove_on_drop();
}
