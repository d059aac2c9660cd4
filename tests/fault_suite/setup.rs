//! Which broker a scenario runs on, unique names, running one scenario at
//! a time, and what the scenarios with consumer processes share.

use dispatcher_tests::{handled_all, read_log, ChildGuard, ConsumerConfig, Scenario, WorkDir};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub(crate) use dispatcher_tests::external_brokers as external;

/// The broker's name in report rows: `$KAFKA_BROKER_NAME` (set by
/// `scripts/with-tansu`), else `external` when `KAFKA_BROKERS` is set,
/// else `embedded`.
pub(crate) fn broker_name() -> String {
    match (std::env::var("KAFKA_BROKER_NAME"), external()) {
        (Ok(name), Some(_)) if !name.is_empty() => name,
        (_, Some(_)) => "external".to_owned(),
        (_, None) => "embedded".to_owned(),
    }
}

/// `base` made unique to this run: a broker process that outlives a run
/// keeps its topics and groups.
pub(crate) fn unique(base: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{base}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Held for the whole of a scenario: scenarios start consumer processes
/// and measure recovery times, so they do not run side by side.
pub(crate) async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().await
}

/// The RNG of a randomized scenario, seeded from `E2E_SEED` or else the
/// clock; the seed is printed, so a failing run can be replayed.
pub(crate) fn seeded_rng(scenario: &str) -> StdRng {
    let seed: u64 = std::env::var("E2E_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(7)
        });
    println!("{scenario}: seed {seed} (replay with E2E_SEED={seed})");
    StdRng::seed_from_u64(seed)
}

/// A scenario with `test_consumer` processes: a topic (and its `.DLT`) and
/// a group of their own on the broker `KAFKA_BROKERS` names or a
/// `test_broker` process, and the work directory with the handling log.
pub(crate) struct Processes {
    pub(crate) dir: WorkDir,
    pub(crate) topic: String,
    pub(crate) group: String,
    /// The `test_broker` process (`None` on `KAFKA_BROKERS`): bind it for
    /// the whole scenario, as it is killed when dropped.
    pub(crate) broker: Option<ChildGuard>,
    /// The bootstrap servers.
    pub(crate) brokers: String,
    /// The consumers' handling log.
    pub(crate) log: PathBuf,
    /// How to start consumers.
    pub(crate) consumers: ConsumerConfig,
}

impl Processes {
    /// Starts the scenario called `name` with a topic of `partitions`.
    pub(crate) fn start(name: &str, partitions: i32) -> Processes {
        let topic = unique(&format!("fs-{name}"));
        let group = format!("{topic}-group");
        let dir = WorkDir::new(name);
        let Scenario {
            broker,
            brokers,
            log,
            consumers,
        } = Scenario::start(
            dir.path(),
            env!("CARGO_BIN_EXE_test_broker"),
            env!("CARGO_BIN_EXE_test_consumer"),
            partitions,
            &topic,
            &group,
        );
        Processes {
            dir,
            topic,
            group,
            broker,
            brokers,
            log,
            consumers,
        }
    }
}

/// The committed offsets of `group` on `topic`, read off the runtime.
pub(crate) async fn committed(brokers: &str, group: &str, topic: &str) -> BTreeMap<i32, i64> {
    let (b, g, t) = (brokers.to_owned(), group.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || dispatcher_tests::committed(&b, &g, &t))
        .await
        .expect("join")
}

/// Waits, off the runtime, up to `timeout` for every produced record
/// (`produced[i]` of key `k{i:02}`) to be in the handling log `log`.
pub(crate) async fn all_handled(log: &Path, produced: &[u64], timeout: Duration) -> bool {
    let (log, produced) = (log.to_owned(), produced.to_vec());
    tokio::task::spawn_blocking(move || {
        dispatcher_tests::wait_for("every produced record in the log", timeout, || {
            handled_all(&read_log(&log), &produced)
        })
    })
    .await
    .expect("join")
}
