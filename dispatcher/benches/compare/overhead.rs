//! Part 1: a no-op handler through the dispatcher in each ordering mode against the raw loops.

use super::*;

/// Part 1: the no-op handler against the raw loops. Returns the raw
/// BaseConsumer's median rate (the scaling part's ceiling).
pub(super) fn overhead(setup: &Setup, helper: &mut Helper, report: &mut Report) -> f64 {
    let n = knob("BENCH_RECORDS").unwrap_or_else(|| setup.scaled(1_000_000, 1_000));
    let topic = unique("overhead");
    setup.topic(helper, &topic, setup.partitions);
    let produced = helper.produce(&topic, n, "none");
    println!(
        "\noverhead: {produced} records of {} bytes, {} keys, {} partitions; {} rounds",
        support::PAYLOAD,
        support::KEYS,
        setup.partitions,
        setup.rounds
    );
    let targets = [
        Target::RawStream,
        Target::RawBase,
        Target::Dispatcher(OrderingMode::Key),
        Target::Dispatcher(OrderingMode::Partition),
        Target::Dispatcher(OrderingMode::Unordered),
    ];
    // Per target: rates, CPU µs per record, peak RSS MiB.
    let mut runs = vec![(Vec::new(), Vec::new(), Vec::new()); targets.len()];
    for round in 0..setup.rounds {
        for j in 0..targets.len() {
            // Alternate the order from round to round.
            let i = (j + round) % targets.len();
            let probe = Probe::new(Some(produced), false);
            support::reset_peak_rss();
            let rss0 = status_kib("VmRSS").unwrap_or(0);
            let t0 = Instant::now();
            run(setup, targets[i], &topic, probe, Tune::default());
            if std::env::var("BENCH_DEBUG").is_ok() {
                eprintln!(
                    "{} took {:.2?} (to first record {:.2?})",
                    targets[i].label(),
                    t0.elapsed(),
                    probe.first_at().map(|f| f - t0)
                );
            }
            let (rate, cpu) = probe.rate_and_cpu(false);
            // Peak growth over the run (the process holds the embedded
            // cluster's records too).
            let rss =
                status_kib("VmHWM").map_or(f64::NAN, |k| k.saturating_sub(rss0) as f64 / 1024.0);
            runs[i].0.push(rate);
            runs[i].1.push(cpu);
            runs[i].2.push(rss);
        }
    }
    let med: Vec<(f64, f64, f64)> = runs
        .iter()
        .map(|(r, c, m)| (median(r), median(c), median(m)))
        .collect();
    let (stream, base) = (med[0], med[1]);
    let mut table = Table::new(
        format!("Overhead: no-op handler, {produced} records, {} partitions, commits on (medians of {} rounds)", setup.partitions, setup.rounds),
        &["consumer", "records/s", "vs StreamConsumer", "vs BaseConsumer", "CPU µs/record", "CPU vs BaseConsumer", "RSS growth MiB", "rounds (records/s)"],
    );
    let mut json_rows = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let (rate, cpu, rss) = med[i];
        table.rows.push(vec![
            t.label().into(),
            fmt_rate(rate),
            format!("{:.3}", rate / stream.0),
            format!("{:.3}", rate / base.0),
            format!("{cpu:.3}"),
            format!("{:+.3}", cpu - base.1),
            format!("{rss:.0}"),
            rounds_list(&runs[i].0, fmt_rate),
        ]);
        json_rows.push(json!({
            "consumer": t.id(), "records_per_s": rate, "cpu_us_per_record": cpu,
            "peak_rss_mib": rss, "rounds_records_per_s": runs[i].0, "rounds_cpu_us": runs[i].1,
        }));
    }
    report.table(table);
    report.json.insert(
        "overhead".into(),
        json!({"records": produced, "partitions": setup.partitions, "rows": json_rows}),
    );
    let key = med[2];
    report.goals.push(Goal {
        name: "no-op key mode rate vs raw BaseConsumer".into(),
        measured: key.0,
        reference: base.0,
        unit: "records/s",
        goal: "≥ 0.95".into(),
        pass: Some(key.0 / base.0 >= 0.95),
    });
    report.goals.push(Goal {
        name: "no-op key mode CPU/record vs raw BaseConsumer".into(),
        measured: key.1,
        reference: base.1,
        unit: "µs",
        goal: "≤ raw + 0.15 µs".into(),
        pass: Some(key.1 <= base.1 + 0.15),
    });
    report
        .json
        .insert("ratio_noop_vs_raw".into(), json!(key.0 / stream.0));
    base.0
}
