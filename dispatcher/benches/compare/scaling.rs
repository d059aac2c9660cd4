//! Part 2: handlers with simulated I/O at in-flight caps, against the bound.

use super::*;

/// Part 2: I/O-bound handlers at in-flight caps, against
/// min(cap / handler time, `raw_rate`); draws throughput_vs_cap.svg.
pub(super) fn scaling(setup: &Setup, helper: &mut Helper, report: &mut Report, raw_rate: f64) {
    let latencies: Vec<u64> = list("BENCH_LATENCIES_MS", &[1, 10]);
    let caps: Vec<usize> = list("BENCH_CAPS", &[1, 10, 100, 1_000, 10_000]);
    // The rows, each with its own topic and records: about 3 seconds of
    // work at the expected bound (times the scale), and at least five
    // times the cap, so that the steady state is more than one wave.
    let mut rows = Vec::new();
    for &ms in &latencies {
        for &cap in &caps {
            let guess = (cap as f64 / (ms as f64 * 1.15e-3)).min(raw_rate);
            let n = ((guess * 3.0 * setup.scale) as usize)
                .max(5 * cap)
                .max(100)
                .min(setup.scaled(1_000_000, 1_000).max(5 * cap));
            let topic = unique(&format!("scaling-{ms}ms-{cap}"));
            setup.topic(helper, &topic, setup.partitions);
            let produced = helper.produce(&topic, n, "none");
            rows.push((ms, cap, topic, produced));
        }
    }
    println!(
        "\nscaling: {} rows, raw BaseConsumer rate {raw_rate:.0}/s; {} rounds",
        rows.len(),
        setup.rounds
    );
    // Per row: rate, handler ms, longest idle ms, CPU µs/record, mean running.
    let mut runs: Vec<[Vec<f64>; 5]> = vec![Default::default(); rows.len()];
    for round in 0..setup.rounds {
        for j in 0..rows.len() {
            let i = (j + round) % rows.len();
            let (ms, cap, ref topic, produced) = rows[i];
            let probe = Probe::new(Some(produced), false);
            let tune = Tune {
                max_in_flight: Some(cap),
                io: Duration::from_millis(ms),
            };
            run(
                setup,
                Target::Dispatcher(OrderingMode::Key),
                topic,
                probe,
                tune,
            );
            let (rate, cpu) = probe.rate_and_cpu(true);
            let values = [
                rate,
                probe.mean_handler_time().as_secs_f64() * 1e3,
                probe.longest_idle().as_secs_f64() * 1e3,
                cpu,
                probe.mean_running(),
            ];
            for (v, x) in runs[i].iter_mut().zip(values) {
                v.push(x);
            }
        }
    }
    let mut table = Table::new(
        format!("Scaling: handler sleeping (tokio) at in-flight caps, key mode, default settings (medians of {} rounds)", setup.rounds),
        &["handler", "cap", "records", "records/s", "bound/s", "ratio", "handler ms", "longest idle ms", "CPU µs/record", "mean running"],
    );
    let mut json_rows = Vec::new();
    let mut achieved: Vec<support::plot::Line> = Vec::new();
    let mut bounds: Vec<support::plot::Line> = Vec::new();
    let mut worst: Vec<(u64, f64, f64, f64, usize)> = Vec::new();
    for (i, (ms, cap, _, produced)) in rows.iter().enumerate() {
        let m: Vec<f64> = runs[i].iter().map(|v| median(v)).collect();
        let bound = (*cap as f64 / (m[1] / 1e3)).min(raw_rate);
        let ratio = m[0] / bound;
        table.rows.push(vec![
            format!("{ms} ms"),
            cap.to_string(),
            produced.to_string(),
            fmt_rate(m[0]),
            fmt_rate(bound),
            format!("{ratio:.2}"),
            format!("{:.2}", m[1]),
            format!("{:.3}", m[2]),
            format!("{:.2}", m[3]),
            format!("{:.0}", m[4]),
        ]);
        json_rows.push(json!({
            "handler_ms": ms, "cap": cap, "records": produced, "records_per_s": m[0], "bound_per_s": bound,
            "ratio": ratio, "handler_time_ms": m[1], "longest_idle_ms": m[2], "cpu_us_per_record": m[3],
            "mean_running": m[4],
        }));
        let name = format!("{ms} ms handler");
        if achieved.last().is_none_or(|(n, _)| *n != name) {
            achieved.push((name.clone(), Vec::new()));
            bounds.push((format!("bound, {name}"), Vec::new()));
            worst.push((*ms, f64::MAX, f64::NAN, f64::NAN, 0));
        }
        if let (Some(a), Some(b), Some(w)) =
            (achieved.last_mut(), bounds.last_mut(), worst.last_mut())
        {
            a.1.push((*cap as f64, m[0]));
            b.1.push((*cap as f64, bound));
            if ratio < w.1 || ratio.is_nan() {
                *w = (*ms, ratio, m[0], bound, *cap);
            }
        }
    }
    report.table(table);
    report.json.insert(
        "scaling".into(),
        json!({"raw_records_per_s": raw_rate, "partitions": setup.partitions, "rows": json_rows}),
    );
    for (ms, ratio, rate, bound, cap) in worst {
        report.goals.push(Goal {
            name: format!("{ms} ms handler, worst cap ({cap}): rate vs bound"),
            measured: rate,
            reference: bound,
            unit: "records/s",
            goal: "≥ 0.90 at every cap".into(),
            pass: Some(ratio >= 0.9),
        });
    }
    let path = out_dir().join("throughput_vs_cap.svg");
    match support::plot::throughput_vs_cap(&path, &achieved, &bounds) {
        Ok(()) => println!("plot: {}", path.display()),
        Err(e) => eprintln!("plot {}: {e}", path.display()),
    }
}
