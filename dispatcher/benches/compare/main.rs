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
//! | `BENCH_MEMORY_HANDLER_MS` | 1 | how long the dispatcher's handler sleeps in the memory part (slower than the fetch, so its buffers fill to their caps) |
//! | `BENCH_CONSUMER_PROPS` | none | `k=v,k=v` librdkafka properties for every consumer |
//! | `BENCH_OUT` | `target/bench` | plots and results; relative to the workspace root |
//! | `BENCH_METRICS=1`, `BENCH_LOG=1` | off | the dispatcher with its Prometheus recorder / `run()`'s log subscriber |
//! | `BENCH_DEBUG=1` | off | each overhead run's wall time and time to its first record, on stderr |

#[path = "../support/mod.rs"]
mod support;

mod memory;
mod overhead;
mod paced;
mod report;
mod scaling;
mod setup;
mod targets;

// The parts' `use super::*` finds here what they share.
use dispatcher::broker::EmbeddedBroker;
use dispatcher::policy::OrderingMode;
use hdrhistogram::Histogram;
use report::*;
use serde_json::json;
use setup::*;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::helper::{self, Helper};
use support::probe::Probe;
use support::{knob, list, median, status_kib, unique};
use targets::*;

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
    let mut report = Report::new(&broker_name, machine, &setup);
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

    let ratio_noop_vs_raw = report.finish(&setup, &broker_name, started);
    println!("wall time {:.1} s", started.elapsed().as_secs_f64());
    if let Some(r) = ratio_noop_vs_raw {
        println!("ratio_noop_vs_raw={r:.3}");
    }
}
