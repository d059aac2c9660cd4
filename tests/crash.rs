//! Consumers killed with SIGKILL at random points while a producer keeps
//! writing: nothing is lost, per-key order holds, and a final clean shutdown
//! commits exactly the end of every partition.
//!
//! The kill points come from a seeded RNG; the seed is printed, and
//! `E2E_SEED=<n>` replays it.

use dispatcher_tests::{
    caught_up, check, handled_all, offsets, read_log, records_by_pid, wait_for, KeyedProducer,
    LogLine, Scenario, WorkDir,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};

const TOPIC: &str = "e2e-crash";
const GROUP: &str = "e2e-crash-group";
const PARTITIONS: i32 = 4;
const KEYS: usize = 40;
/// Kills in all: one during a group join, the others mid-stream.
const KILLS: usize = 5;

fn lines_of(lines: &[LogLine], pid: u32) -> usize {
    records_by_pid(lines).get(&pid).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_consumers_lose_nothing_and_keep_key_order() {
    let started = Instant::now();
    let seed: u64 = std::env::var("E2E_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(7)
        });
    println!("e2e crash: seed {seed} (replay with E2E_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);

    let mut dir = WorkDir::new("crash");
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

    // Exactly one kill (never the first) lands during the group join; the
    // others while records are being handled.
    let join_kill = rng.random_range(1..KILLS);
    let mut kill_figures = Vec::new();
    for n in 0..KILLS {
        let mut c = consumers.spawn(n);
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
                    Duration::from_secs(40),
                    || lines_of(&read_log(&log2), pid) > 0,
                )
            })
            .await
            .expect("join");
            assert!(
                handling,
                "consumer {n} (pid {pid}) handled nothing within 40 s; see {}",
                dir.path().display()
            );
            let wait = rng.random_range(100..2500);
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
        assert!(
            c.try_status().is_none(),
            "consumer {n} (pid {pid}) exited by itself: {:?}",
            c.try_status()
        );
        c.kill();
        let handled = lines_of(&read_log(&log), pid);
        println!(
            "e2e crash: kill #{n}: SIGKILL pid {pid} {} after handling {handled} records (produced so far {})",
            if during_join { "during the join" } else { "mid-stream" },
            producer.produced()
        );
        kill_figures.push((pid, handled));
    }
    let produced = producer.stop().await;
    let total: u64 = produced.iter().sum();
    println!("e2e crash: producer stopped after {total} records");

    // The final consumer runs with its periodic commit effectively off, so
    // the offsets it reaches are committed only by its clean shutdown.
    let last_kill = Instant::now();
    let mut last = consumers.spawn_with(KILLS, &[("E2E_COMMIT_INTERVAL_MS", "3600000")]);
    let final_pid = last.pid();
    let (log2, produced2, b) = (log.clone(), produced.clone(), brokers.clone());
    let (complete, caught) = tokio::task::spawn_blocking(move || {
        let complete = wait_for(
            "every produced record in the log",
            Duration::from_secs(60),
            || handled_all(&read_log(&log2), &produced2),
        );
        // Caught up: its watermark is at the end of every partition. Also
        // let the group settle: the killed members' sessions (6 s) must have
        // expired, or their expiry rebalances the group during shutdown.
        let caught = complete
            && wait_for(
                "the final consumer to reach the end of every partition",
                Duration::from_secs(60),
                || {
                    let (committed, ends) = offsets(&b, GROUP, TOPIC);
                    last_kill.elapsed() > Duration::from_secs(8)
                        && caught_up(&read_log(&log2), final_pid, &committed, &ends)
                },
            );
        (complete, caught)
    })
    .await
    .expect("join");
    let lines = read_log(&log);
    let report = check(&lines, &produced);
    println!("e2e crash:\n{report}");
    assert!(
        complete,
        "not every produced record was handled within 60 s\n{report}"
    );
    assert!(
        caught,
        "the final consumer (pid {final_pid}) did not reach the end of every partition; see {}",
        dir.path().display()
    );
    last.terminate();
    let status = last.wait_timeout(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "the final consumer did not exit 0 within 30 s of SIGTERM: {status:?}; see {}",
        dir.path().display()
    );

    assert!(report.violations.is_empty(), "log violations:\n{report}");
    let kills_mid_stream = kill_figures.iter().filter(|(_, h)| *h > 0).count();
    assert!(
        kills_mid_stream >= 4,
        "only {kills_mid_stream} kills landed while records were handled"
    );

    let b = brokers.clone();
    let (committed, ends) = tokio::task::spawn_blocking(move || offsets(&b, GROUP, TOPIC))
        .await
        .expect("join");
    println!("e2e crash: after the clean shutdown: committed {committed:?}, end offsets {ends:?}");
    for (p, end) in &ends {
        let c = committed.get(p).copied().unwrap_or(0);
        assert_eq!(
            c, *end,
            "partition {p}: committed {c} after the clean shutdown, end offset {end}"
        );
    }
    println!(
        "e2e crash: {} kills ({kills_mid_stream} mid-stream), {total} records, {} duplicates, {:.1} s",
        KILLS,
        report.duplicates,
        started.elapsed().as_secs_f64()
    );
    dir.remove_on_drop();
}
