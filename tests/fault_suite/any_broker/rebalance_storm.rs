//! Scenario 3, rebalance storm: three consumer processes of one group
//! joining and leaving every few seconds for a minute (`FAULT_STORM_SECS`)
//! while a producer keeps writing, with eager and with cooperative-sticky
//! assignment. The handlers are slow and `partition_buffer` is small, so
//! partitions sit full (not read from) while the group churns; the test
//! scrapes `dispatcher_paused_partitions` from the processes to show it.
//! Most leave cleanly (SIGTERM, which must exit 0), one in four is
//! SIGKILLed; with `FAULT_STORM_LEAVE=kill` every one is SIGKILLed (on
//! tansu 0.6.0, where a clean leave of the group's leader while the group
//! forms stalls the group for good: see RELIABILITY.md). Then:
//!
//! - every record was handled at least once (nothing lost);
//! - per key, records were handled in order within each assignment, and no
//!   key skipped forward across processes;
//! - no process handled a record below an offset committed before it was
//!   assigned the partition;
//! - no partition is left behind: the committed offsets reach the end of
//!   every partition, and a clean shutdown of all keeps them there.

use crate::report::Row;
use crate::setup;
use dispatcher_tests::tansu::free_port;
use dispatcher_tests::{
    check, committed, read_log, scrape, wait_for, ChildGuard, ConsumerConfig, KeyedProducer,
};
use rand::Rng;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PARTITIONS: i32 = 6;
const KEYS: usize = 60;
const SLOTS: usize = 3;

/// Whether every member leaves by SIGKILL (`FAULT_STORM_LEAVE=kill`).
fn kill_only() -> bool {
    std::env::var("FAULT_STORM_LEAVE").is_ok_and(|v| v == "kill")
}

fn storm_length() -> Duration {
    let secs = std::env::var("FAULT_STORM_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(secs)
}

/// One consumer slot: the running process and the port of its metrics.
struct Slot {
    child: Option<ChildGuard>,
    port: u16,
}

/// Samples `dispatcher_paused_partitions` of every live process until
/// stopped; returns the most partitions seen paused at once, summed over
/// the processes.
struct PausedSampler {
    ports: Arc<Mutex<Vec<u16>>>,
    stop: Arc<AtomicBool>,
    max: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PausedSampler {
    fn start() -> Self {
        let ports = Arc::new(Mutex::new(Vec::<u16>::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let max = Arc::new(AtomicU64::new(0));
        let (p, s, m) = (ports.clone(), stop.clone(), max.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Acquire) {
                let live = p.lock().expect("ports").clone();
                let paused: f64 = live
                    .iter()
                    .filter_map(|&port| scrape(port, "dispatcher_paused_partitions"))
                    .sum();
                m.fetch_max(paused as u64, Ordering::AcqRel);
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        PausedSampler {
            ports,
            stop,
            max,
            thread: Some(thread),
        }
    }

    fn set_ports(&self, slots: &[Slot]) {
        *self.ports.lock().expect("ports") = slots
            .iter()
            .filter(|s| s.child.is_some())
            .map(|s| s.port)
            .collect();
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.max.load(Ordering::Acquire)
    }
}

fn spawn(consumers: &ConsumerConfig, n: usize, strategy: &str, port: u16) -> ChildGuard {
    let address = format!("127.0.0.1:{port}");
    consumers.spawn_with(
        n,
        &[
            (
                "DISPATCHER_RDKAFKA_CONSUMER_PARTITION_ASSIGNMENT_STRATEGY",
                strategy,
            ),
            ("DISPATCHER_PARTITION_BUFFER", "20"),
            ("E2E_MAX_SLEEP_MS", "8"),
            ("E2E_SESSION_TIMEOUT_MS", "3000"),
            ("DISPATCHER_METRICS_ADDRESS", &address),
        ],
    )
}

/// SIGTERM, then an exit 0 within 30 s.
async fn stop_cleanly(mut c: ChildGuard, dir: &std::path::Path) {
    let (c, status) = tokio::task::spawn_blocking(move || {
        let status = c.stop(Duration::from_secs(30));
        (c, status)
    })
    .await
    .expect("join");
    assert!(
        status.is_some_and(|s| s.success()),
        "{} (pid {}) did not exit 0 within 30 s of SIGTERM: {status:?}; see {}",
        c.name(),
        c.pid(),
        dir.display()
    );
}

async fn storm(label: &str, strategy: &str) {
    let _one = setup::one_at_a_time().await;
    let started = Instant::now();
    let mut rng = setup::seeded_rng(&format!("storm ({label})"));
    let setup::Processes {
        mut dir,
        topic,
        group,
        broker: _broker,
        brokers,
        log,
        consumers,
    } = setup::Processes::start(&format!("storm-{label}"), PARTITIONS);
    let producer = KeyedProducer::start(&brokers, &topic, KEYS, Duration::from_millis(40));
    let sampler = PausedSampler::start();
    let mut spawned = 0;
    let mut slots: Vec<Slot> = (0..SLOTS)
        .map(|_| {
            let port = free_port();
            let child = spawn(&consumers, spawned, strategy, port);
            spawned += 1;
            Slot {
                child: Some(child),
                port,
            }
        })
        .collect();
    sampler.set_ports(&slots);

    let (mut joins, mut terms, mut kills) = (0, 0, 0);
    let end = Instant::now() + storm_length();
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(rng.random_range(1500..4000))).await;
        let i = rng.random_range(0..SLOTS);
        match slots[i].child.take() {
            Some(mut c) => {
                if let Some(status) = c.try_status() {
                    panic!(
                        "{} (pid {}) exited by itself: {status}; see {}",
                        c.name(),
                        c.pid(),
                        dir.path().display()
                    );
                }
                // Drawn either way, so that a seed replays the same storm.
                if rng.random_range(0..4) == 0 || kill_only() {
                    c.kill();
                    kills += 1;
                } else {
                    stop_cleanly(c, dir.path()).await;
                    terms += 1;
                }
            }
            None => {
                slots[i].port = free_port();
                slots[i].child = Some(spawn(&consumers, spawned, strategy, slots[i].port));
                spawned += 1;
                joins += 1;
            }
        }
        sampler.set_ports(&slots);
    }
    let produced = producer.stop().await;
    let total: u64 = produced.iter().sum();
    for slot in slots.iter_mut().filter(|s| s.child.is_none()) {
        slot.port = free_port();
        slot.child = Some(spawn(&consumers, spawned, strategy, slot.port));
        spawned += 1;
    }
    sampler.set_ports(&slots);
    println!(
        "storm ({label}): {joins} joins, {terms} clean leaves, {kills} kills; {total} records produced"
    );

    let settle = Instant::now();
    let complete = setup::all_handled(&log, &produced, Duration::from_secs(90)).await;
    let ends = check(&read_log(&log), &produced).ends;
    let (b, t, g) = (brokers.clone(), topic.clone(), group.clone());
    let at_end = complete
        && tokio::task::spawn_blocking(move || {
            wait_for(
                "the committed offsets to reach the end of every partition",
                Duration::from_secs(60),
                || {
                    let c = committed(&b, &g, &t);
                    ends.iter().all(|(p, e)| c.get(p) == Some(e))
                },
            )
        })
        .await
        .expect("join");
    let recovery = settle.elapsed();
    for slot in &mut slots {
        if let Some(c) = slot.child.take() {
            stop_cleanly(c, dir.path()).await;
        }
    }
    let paused = sampler.finish();
    let report = check(&read_log(&log), &produced);
    println!("storm ({label}):\n{report}");
    let after = setup::committed(&brokers, &group, &topic).await;
    Row {
        scenario: format!("3. rebalance storm, {label}"),
        broker: setup::broker_name(),
        records: total,
        lost: report.lost as u64,
        duplicates: report.duplicates as u64,
        dead_lettered: 0,
        recovery: Some(recovery),
        notes: format!(
            "{:.0} s storm: {joins} joins, {terms} SIGTERMs, {kills} SIGKILLs{}; up to {paused} partitions paused at once; recovery = storm end to all committed; {:.0} s in all",
            storm_length().as_secs_f64(),
            if kill_only() {
                " (leaves by SIGKILL only: FAULT_STORM_LEAVE=kill)"
            } else {
                ""
            },
            started.elapsed().as_secs_f64()
        ),
    }
    .emit();
    assert!(
        complete,
        "not every produced record was handled within 90 s of the storm\n{report}"
    );
    assert!(
        at_end,
        "the committed offsets did not reach the ends {:?} within 60 s: {after:?}; see {}",
        report.ends,
        dir.path().display()
    );
    assert!(report.violations.is_empty(), "log violations:\n{report}");
    assert!(
        paused > 0,
        "no partition was ever seen paused: the storm did not test full partitions"
    );
    for (p, end) in &report.ends {
        let c = after.get(p).copied().unwrap_or(0);
        assert_eq!(
            c, *end,
            "partition {p}: committed {c} after the last shutdown, end {end}"
        );
    }
    dir.remove_on_drop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_with_eager_assignment_loses_nothing_and_leaves_no_partition_behind() {
    storm("eager", "range").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_with_cooperative_assignment_loses_nothing_and_leaves_no_partition_behind() {
    storm("cooperative", "cooperative-sticky").await;
}
