//! What the dispatcher costs, side by side with raw rust-rdkafka consumer
//! loops, in one process, in alternating rounds on the same data and the
//! same consumer settings; medians of the rounds. See BENCHMARKS.md.
//!
//! ```text
//! cargo bench -p dispatcher --bench compare                       # embedded cluster
//! scripts/with-tansu cargo bench -p dispatcher --bench compare    # a tansu broker
//! BENCH_SCALE=0.05 BENCH_ROUNDS=1 cargo bench -p dispatcher --bench compare   # a quick look
//! ```
//!
//! Parts (`BENCH_PARTS`, default all of `overhead,scaling,paced,memory`):
//!
//! - overhead: a no-op handler in each ordering mode (commits on) against
//!   a raw StreamConsumer loop and a raw BaseConsumer loop, both storing
//!   each offset after processing it with `enable.auto.commit`;
//! - scaling: handlers sleeping 1 ms and 10 ms (tokio) at in-flight caps
//!   from 1 to 10,000, against min(cap / handler time, raw rate), with the
//!   longest stretch during which records were left and no handler ran;
//! - paced: a producer at 1,000 and 10,000 records/s; produce-to-handled
//!   latency and CPU per record, dispatcher against the raw loops;
//! - memory: peak RSS of a consumer process draining backlogs of 1 M and
//!   5 M records.
//!
//! Every producer runs in a helper child process (`support::helper`), so
//! that this process's CPU time is its consumers'. The embedded cluster
//! runs in this process (the dispatcher skips its startup checks for it,
//! which take 10 s against it otherwise); its threads' CPU time is left
//! out of every figure (`support::cpu_time`), and the memory part runs
//! each consumer in a child process of its own. Knobs (environment):
//!
//! | knob | default | what |
//! | --- | --- | --- |
//! | `KAFKA_BROKERS` | unset: the embedded cluster | a real cluster; topics are created with unique names |
//! | `BENCH_ROUNDS` | 3 | rounds per measurement (medians) |
//! | `BENCH_SCALE` | 1.0 | multiplies every record count and paced duration |
//! | `BENCH_RECORDS` | 1,000,000 × scale | records of the overhead part |
//! | `BENCH_PARTITIONS` | 32 embedded, 4 on a broker | partitions of the overhead and scaling topics |
//! | `BENCH_PACED_PARTITIONS` | 4 | partitions of the paced topics (on the embedded cluster, 32 partitions at `linger.ms=1` are some 32,000 produce requests a second, more than its one thread answers on time) |
//! | `BENCH_LATENCIES_MS`, `BENCH_CAPS` | 1,10 and 1,10,100,1000,10000 | the scaling grid |
//! | `BENCH_RATES`, `BENCH_PACED_SECS` | 1000,10000 and max(2, 10 × scale) | the paced runs |
//! | `BENCH_LINGER_MS` | 5 embedded, 1 on a broker | the paced producer's `linger.ms` (see `support::helper::paced_linger_ms`) |
//! | `BENCH_MEMORY_RECORDS`, `BENCH_MEMORY_PARTITIONS` | 1000000,5000000 (× scale) and 64 | the memory part |
//! | `BENCH_MEMORY_COMPRESSION` | lz4 embedded, none on a broker | the backlog's compression |
//! | `BENCH_CONSUMER_PROPS` | none | `k=v,k=v` librdkafka properties for every consumer |
//! | `BENCH_OUT` | `target/bench` | plots and results; relative to the workspace root |
//! | `BENCH_METRICS=1`, `BENCH_LOG=1` | off | the dispatcher with its Prometheus recorder / `run()`'s log subscriber |
//! | `BENCH_DEBUG=1` | off | each overhead run's wall time and time to its first record, on stderr |

#[path = "../support/mod.rs"]
mod support;

mod memory;
mod overhead;
mod paced;
mod scaling;

use dispatcher::broker::EmbeddedBroker;
use dispatcher::handler::HandlerSpec;
use dispatcher::policy::{OrderingMode, Policy};
use dispatcher::Dispatcher;
use hdrhistogram::Histogram;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::ClientConfig;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::helper::{self, Helper};
use support::probe::{Probe, ProbeHandler};
use support::{knob, list, median, status_kib, unique};

/// The dispatcher's own librdkafka defaults (`CONSUMER_DEFAULTS` in
/// dispatcher/src/engine/group.rs), given to the raw loops too so that all
/// fetch alike.
const FETCH_SETTINGS: [(&str, &str); 5] = [
    ("auto.offset.reset", "earliest"),
    ("fetch.wait.max.ms", "20"),
    ("fetch.queue.backoff.ms", "10"),
    ("queued.max.messages.kbytes", "4096"),
    ("queued.min.messages", "1000"),
];

/// Group settings of every consumer, raw or not: a broker that waits about
/// half the session timeout for a group to form (tansu) joins in 3 s
/// instead of librdkafka's default 45 s / 2.
const GROUP_SETTINGS: [(&str, &str); 2] = [
    ("session.timeout.ms", "6000"),
    ("heartbeat.interval.ms", "1000"),
];

/// How the raw loops commit, like a normal consumer: librdkafka commits
/// in the background every second (the dispatcher's default
/// `commit_interval`) the offsets the loop stored after processing.
const RAW_COMMIT_SETTINGS: [(&str, &str); 3] = [
    ("enable.auto.commit", "true"),
    ("enable.auto.offset.store", "false"),
    ("auto.commit.interval.ms", "1000"),
];

/// A consumer under test.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Target {
    /// `StreamConsumer::recv().await` on a multi-threaded tokio runtime.
    RawStream,
    /// `BaseConsumer::poll` on one thread.
    RawBase,
    /// The dispatcher, one handler, in an ordering mode.
    Dispatcher(OrderingMode),
}

impl Target {
    fn label(self) -> &'static str {
        match self {
            Target::RawStream => "raw StreamConsumer",
            Target::RawBase => "raw BaseConsumer",
            Target::Dispatcher(OrderingMode::Key) => "dispatcher, key mode",
            Target::Dispatcher(OrderingMode::Partition) => "dispatcher, partition mode",
            Target::Dispatcher(_) => "dispatcher, unordered",
        }
    }

    /// A name for environment variables and JSON.
    fn id(self) -> &'static str {
        match self {
            Target::RawStream => "raw_stream",
            Target::RawBase => "raw_base",
            Target::Dispatcher(OrderingMode::Key) => "key",
            Target::Dispatcher(OrderingMode::Partition) => "partition",
            Target::Dispatcher(_) => "unordered",
        }
    }

    fn from_id(id: &str) -> Target {
        match id {
            "raw_stream" => Target::RawStream,
            "raw_base" => Target::RawBase,
            "partition" => Target::Dispatcher(OrderingMode::Partition),
            "unordered" => Target::Dispatcher(OrderingMode::Unordered),
            _ => Target::Dispatcher(OrderingMode::Key),
        }
    }
}

/// What every run shares.
struct Setup {
    brokers: String,
    /// The embedded cluster, when no `KAFKA_BROKERS`.
    broker: Option<Arc<EmbeddedBroker>>,
    embedded: bool,
    scale: f64,
    rounds: usize,
    /// Partitions of the overhead and scaling topics.
    partitions: i32,
    /// Partitions of the paced topics.
    paced_partitions: i32,
    /// `BENCH_CONSUMER_PROPS`, for every consumer.
    props: Vec<(String, String)>,
    metrics: bool,
}

impl Setup {
    fn from_env(brokers: String, broker: Option<Arc<EmbeddedBroker>>, embedded: bool) -> Setup {
        let props = std::env::var("BENCH_CONSUMER_PROPS")
            .unwrap_or_default()
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        Setup {
            brokers,
            broker,
            embedded,
            scale: knob("BENCH_SCALE").unwrap_or(1.0f64).max(1e-4),
            rounds: knob("BENCH_ROUNDS").unwrap_or(3usize).max(1),
            // The embedded cluster keeps about 5 MiB per partition (some
            // 40,000 of these records): 32 hold the overhead part's million.
            partitions: knob("BENCH_PARTITIONS").unwrap_or(if embedded { 32 } else { 4 }),
            paced_partitions: knob("BENCH_PACED_PARTITIONS").unwrap_or(4),
            props,
            metrics: std::env::var("BENCH_METRICS").is_ok_and(|v| v == "1"),
        }
    }

    /// `n` times the scale, at least `min`.
    fn scaled(&self, n: usize, min: usize) -> usize {
        ((n as f64 * self.scale) as usize).max(min)
    }

    /// Creates a topic and its dead-letter topic `<name>.DLT` (one
    /// partition), which the dispatcher's startup checks ask for.
    fn topic(&self, helper: &mut Helper, name: &str, partitions: i32) {
        for (topic, partitions) in [(name.to_owned(), partitions), (format!("{name}.DLT"), 1)] {
            match &self.broker {
                Some(b) => b.create_topic(&topic, partitions).expect("create a topic"),
                None => helper.topic(&topic, partitions),
            }
        }
    }

    fn raw_config(&self, group: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("group.id", group);
        for (k, v) in FETCH_SETTINGS
            .iter()
            .chain(&GROUP_SETTINGS)
            .chain(&RAW_COMMIT_SETTINGS)
        {
            c.set(*k, *v);
        }
        for (k, v) in &self.props {
            c.set(k, v);
        }
        c
    }
}

/// How the dispatcher runs beyond its defaults.
#[derive(Clone, Copy, Default)]
struct Tune {
    max_in_flight: Option<usize>,
    /// The handler's simulated I/O (zero: none).
    io: Duration,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Consumes `topic` as `group` with `target` until the probe has seen the
/// records it expects.
fn run(setup: &Setup, target: Target, topic: &str, probe: &'static Probe, tune: Tune) {
    let group = unique(target.id());
    match target {
        Target::RawBase => {
            let consumer: BaseConsumer = setup.raw_config(&group).create().expect("consumer");
            consumer.subscribe(&[topic]).expect("subscribe");
            while !probe.is_finished() {
                match consumer.poll(Duration::from_millis(100)) {
                    Some(Ok(m)) => {
                        probe.record(m.payload());
                        // Stored once processed; committed in the background.
                        let _ = consumer.store_offset_from_message(&m);
                    }
                    Some(Err(e)) => eprintln!("raw BaseConsumer: {e}"),
                    None => {}
                }
            }
        }
        Target::RawStream => runtime().block_on(async {
            let consumer: StreamConsumer = setup.raw_config(&group).create().expect("consumer");
            consumer.subscribe(&[topic]).expect("subscribe");
            while !probe.is_finished() {
                tokio::select! {
                    biased;
                    m = consumer.recv() => match m {
                        Ok(m) => {
                            probe.record(m.payload());
                            let _ = consumer.store_offset_from_message(&m);
                        }
                        Err(e) => eprintln!("raw StreamConsumer: {e}"),
                    },
                    // The paced runs learn their count late: wake up then.
                    () = probe.finished.notified() => {}
                }
            }
        }),
        Target::Dispatcher(ordering) => {
            let topic: &'static str = Box::leak(topic.to_owned().into_boxed_str());
            let topics: &'static [&'static str] = Box::leak(vec![topic].into_boxed_slice());
            let handler: &'static ProbeHandler =
                Box::leak(Box::new(ProbeHandler { probe, io: tune.io }));
            let spec = HandlerSpec::new("bench_handler", topics, handler)
                .with_policy(Policy::DEFAULT.with_ordering(ordering));
            runtime().block_on(async {
                let mut b = Dispatcher::builder()
                    .ignore_environment()
                    .without_registered_handlers()
                    .handler(spec)
                    .group_id(group)
                    .handle_signals(false);
                b = match &setup.broker {
                    Some(broker) => b.embedded_broker(broker.clone()),
                    None => b.brokers(setup.brokers.clone()),
                };
                if let Some(cap) = tune.max_in_flight {
                    b = b.max_in_flight(cap);
                }
                for (k, v) in GROUP_SETTINGS {
                    b = b.consumer_property(k, v);
                }
                for (k, v) in &setup.props {
                    b = b.consumer_property(k.clone(), v.clone());
                }
                if setup.metrics {
                    b = b.metrics_address("127.0.0.1:0");
                }
                let d = b.build().expect("build the dispatcher");
                let stop = d.shutdown_handle();
                let mut running = tokio::spawn(d.run());
                let finished = async {
                    while !probe.is_finished() {
                        probe.finished.notified().await;
                    }
                };
                tokio::select! {
                    () = finished => {}
                    ended = &mut running => panic!("the dispatcher stopped early: {ended:?}"),
                }
                stop.shutdown();
                running.await.expect("join").expect("clean run");
            });
        }
    }
}

/// A table for stdout and for the markdown results.
struct Table {
    title: String,
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(title: impl Into<String>, headers: &[&'static str]) -> Table {
        Table {
            title: title.into(),
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    fn text(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &mut dyn Iterator<Item = &str>| {
            let mut s = String::new();
            for (i, (cell, w)) in cells.zip(&widths).enumerate() {
                let pad = w.saturating_sub(cell.chars().count());
                if i == 0 {
                    let _ = write!(s, "{cell}{}", " ".repeat(pad));
                } else {
                    let _ = write!(s, "  {}{cell}", " ".repeat(pad));
                }
            }
            s.trim_end().to_owned()
        };
        let mut out = format!("\n## {}\n", self.title);
        out += &line(&mut self.headers.iter().copied());
        out.push('\n');
        for row in &self.rows {
            out += &line(&mut row.iter().map(String::as_str));
            out.push('\n');
        }
        out
    }

    fn markdown(&self) -> String {
        let mut out = format!(
            "\n### {}\n\n| {} |\n|",
            self.title,
            self.headers.join(" | ")
        );
        out += &" --- |".repeat(self.headers.len());
        out.push('\n');
        for row in &self.rows {
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        out
    }
}

/// A target of issue 13: pass or miss, never an assertion.
struct Goal {
    name: String,
    measured: f64,
    reference: f64,
    unit: &'static str,
    goal: String,
    pass: Option<bool>,
}

impl Goal {
    /// measured / reference.
    fn ratio(&self) -> f64 {
        self.measured / self.reference
    }
}

/// Everything the run found, for the closing table and the results files.
struct Report {
    tables: Vec<Table>,
    goals: Vec<Goal>,
    json: serde_json::Map<String, Value>,
}

impl Report {
    fn table(&mut self, t: Table) {
        print!("{}", t.text());
        self.tables.push(t);
    }
}

fn fmt_rate(r: f64) -> String {
    if r.is_nan() {
        "-".into()
    } else if r >= 1e4 {
        format!("{:.0}k", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}

fn rounds_list(values: &[f64], f: impl Fn(f64) -> String) -> String {
    values.iter().map(|v| f(*v)).collect::<Vec<_>>().join(" ")
}

/// `BENCH_OUT`, default `target/bench`; relative paths from the workspace
/// root (cargo runs benches in dispatcher/).
fn out_dir() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let root = manifest.parent().map_or(manifest.clone(), PathBuf::from);
    let dir = std::env::var("BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("target/bench"));
    let dir = if dir.is_absolute() {
        dir
    } else {
        root.join(dir)
    };
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// This machine: CPUs and the model name.
fn machine() -> Value {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    json!({"cpus": cpus, "model": model})
}

fn main() {
    match std::env::var("BENCH_ROLE").as_deref() {
        Ok("helper") => return support::helper::serve(),
        Ok("memory") => return memory::serve_memory(),
        _ => {}
    }
    if std::env::var("BENCH_LOG").is_ok_and(|v| v == "1") {
        dispatcher::logging::init();
    }
    let started = Instant::now();
    let broker = match helper::external_brokers() {
        Some(_) => None,
        None => Some(Arc::new(
            EmbeddedBroker::start(1).expect("start the embedded cluster"),
        )),
    };
    let brokers = match (&broker, helper::external_brokers()) {
        (Some(b), _) => b.bootstrap_servers().to_owned(),
        (None, external) => external.unwrap_or_default(),
    };
    let embedded = broker.is_some();
    let setup = Setup::from_env(brokers, broker, embedded);
    let mut helper = Helper::start(&setup.brokers);
    let broker_name = if setup.embedded {
        "embedded".to_owned()
    } else {
        std::env::var("KAFKA_BROKER_NAME").unwrap_or_else(|_| "KAFKA_BROKERS".to_owned())
    };
    let machine = machine();
    println!(
        "broker: {broker_name} ({}); machine: {} CPUs, {}; scale {}, {} rounds",
        setup.brokers,
        machine["cpus"],
        machine["model"].as_str().unwrap_or(""),
        setup.scale,
        setup.rounds
    );
    let parts: Vec<String> = list(
        "BENCH_PARTS",
        &["overhead", "scaling", "paced", "memory"].map(String::from),
    );
    let wanted = |p: &str| parts.iter().any(|w| w == p);
    let mut report = Report {
        tables: Vec::new(),
        goals: Vec::new(),
        json: serde_json::Map::new(),
    };
    report.json.insert("broker".into(), json!(broker_name));
    report.json.insert("machine".into(), machine);
    report.json.insert(
        "settings".into(),
        json!({"scale": setup.scale, "rounds": setup.rounds, "partitions": setup.partitions,
               "fetch": FETCH_SETTINGS.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
               "group": GROUP_SETTINGS.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
               "raw_commit": RAW_COMMIT_SETTINGS.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
               "consumer_props": setup.props.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>()}),
    );
    // The paced part first, on a fresh cluster: run after a full-size
    // overhead and scaling part in the same process, its CPU per record at
    // 1,000 records/s came out three to five times higher for every consumer,
    // raw or not (126 µs for the raw BaseConsumer against 25 µs alone),
    // which hid the differences it measures. Its tables and targets are
    // still reported in the parts' order.
    let mut paced_report = (Vec::new(), Vec::new());
    if wanted("paced") {
        paced::paced(&setup, &mut helper, &mut report);
        paced_report = (
            std::mem::take(&mut report.tables),
            std::mem::take(&mut report.goals),
        );
    }
    let mut raw_rate = f64::NAN;
    if wanted("overhead") {
        raw_rate = overhead::overhead(&setup, &mut helper, &mut report);
    }
    if wanted("scaling") {
        if raw_rate.is_nan() {
            // The ceiling alone: a raw BaseConsumer over a topic like the
            // overhead part's.
            let n = setup.scaled(1_000_000, 1_000);
            let topic = unique("scaling-raw");
            setup.topic(&mut helper, &topic, setup.partitions);
            let produced = helper.produce(&topic, n, "none");
            let rates: Vec<f64> = (0..setup.rounds)
                .map(|_| {
                    let probe = Probe::new(Some(produced), false);
                    run(&setup, Target::RawBase, &topic, probe, Tune::default());
                    probe.rate_and_cpu(false).0
                })
                .collect();
            raw_rate = median(&rates);
        }
        scaling::scaling(&setup, &mut helper, &mut report, raw_rate);
    }
    report.tables.extend(paced_report.0);
    report.goals.extend(paced_report.1);
    if wanted("memory") {
        memory::memory(&setup, &mut helper, &mut report);
    }
    drop(helper);

    let mut goals = Table::new(
        "Targets (issue 13)",
        &["target", "measured", "reference", "ratio", "goal", "result"],
    );
    for g in &report.goals {
        let v = |x: f64| match g.unit {
            "records/s" => format!("{} records/s", fmt_rate(x)),
            unit => format!("{x:.3} {unit}"),
        };
        goals.rows.push(vec![
            g.name.clone(),
            v(g.measured),
            v(g.reference),
            format!("{:.3}", g.ratio()),
            g.goal.clone(),
            match g.pass {
                Some(true) => "pass",
                Some(false) => "MISS",
                None => "no verdict",
            }
            .into(),
        ]);
    }
    report.table(goals);
    let goals_json: Vec<Value> = report
        .goals
        .iter()
        .map(|g| json!({"target": g.name, "measured": g.measured, "reference": g.reference, "unit": g.unit, "ratio": g.ratio(), "goal": g.goal, "pass": g.pass}))
        .collect();
    report.json.insert("targets".into(), json!(goals_json));
    report.json.insert(
        "wall_seconds".into(),
        json!(started.elapsed().as_secs_f64()),
    );
    let dir = out_dir();
    let mut md = format!(
        "Broker: {broker_name}; {} CPUs ({}); scale {}, {} rounds.\n",
        report.json["machine"]["cpus"],
        report.json["machine"]["model"].as_str().unwrap_or(""),
        setup.scale,
        setup.rounds
    );
    // The targets first, then each part.
    if let Some(t) = report.tables.last() {
        md += &t.markdown();
    }
    for t in &report.tables[..report.tables.len().saturating_sub(1)] {
        md += &t.markdown();
    }
    let json_text =
        serde_json::to_string_pretty(&Value::Object(report.json.clone())).unwrap_or_default();
    for (name, text) in [("results.json", json_text), ("results.md", md)] {
        let path = dir.join(name);
        match std::fs::write(&path, text) {
            Ok(()) => println!("results: {}", path.display()),
            Err(e) => eprintln!("results {}: {e}", path.display()),
        }
    }
    println!("wall time {:.1} s", started.elapsed().as_secs_f64());
    if let Some(r) = report.json.get("ratio_noop_vs_raw").and_then(Value::as_f64) {
        println!("ratio_noop_vs_raw={r:.3}");
    }
}
