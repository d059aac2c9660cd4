//! Parts 3 and 4: produce-to-handled latency and CPU per record at fixed rates.

use super::*;

/// One paced cell's rounds, each (p50, p99, p99.9, max in ms; CPU µs per
/// record; achieved records/s), and the histogram of all its rounds.
type PacedRuns = (Vec<[f64; 6]>, Histogram<u64>);

/// Parts 3 and 4: a paced producer; latency and CPU per record.
pub(super) fn paced(setup: &Setup, helper: &mut Helper, report: &mut Report) {
    let rates: Vec<u64> = list("BENCH_RATES", &[1_000, 10_000]);
    let secs: f64 = knob("BENCH_PACED_SECS").unwrap_or((10.0 * setup.scale).max(2.0));
    let targets = [
        Target::RawStream,
        Target::RawBase,
        Target::Dispatcher(OrderingMode::Key),
    ];
    println!(
        "\npaced: {} s at each of {rates:?} records/s, {} partitions, producer linger.ms={}; {} rounds",
        secs,
        setup.paced_partitions,
        helper::paced_linger_ms(),
        setup.rounds
    );
    // Per rate and target: per round (p50, p99, p99.9, max in ms; CPU µs
    // per record; achieved rate), and the histogram of all rounds.
    let cell = || {
        (
            vec![[f64::NAN; 6]; 0],
            Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("histogram"),
        )
    };
    let mut runs: Vec<Vec<PacedRuns>> = rates
        .iter()
        .map(|_| targets.iter().map(|_| cell()).collect())
        .collect();
    let warm_n = (setup.paced_partitions as usize * 20).max(100);
    for round in 0..setup.rounds {
        for (r, &rate) in rates.iter().enumerate() {
            for j in 0..targets.len() {
                let t = (j + round) % targets.len();
                // A fresh topic: warm-up records first (stamped zero), the
                // paced ones once the consumer has read them all, i.e. owns
                // every partition and is fetching.
                let topic = unique(&format!("paced-{rate}"));
                setup.topic(helper, &topic, setup.paced_partitions);
                let warm = helper.produce(&topic, warm_n, "none");
                let count = ((rate as f64 * secs) as usize).max(10);
                let probe = Probe::new(None, true);
                std::thread::scope(|s| {
                    let helper = &mut *helper;
                    let topic = topic.as_str();
                    s.spawn(move || {
                        let deadline = Instant::now() + Duration::from_secs(120);
                        while probe.warm() < warm {
                            if Instant::now() > deadline {
                                eprintln!("paced: the consumer read {} of {warm} warm-up records in 120 s", probe.warm());
                                probe.set_expected(0);
                                return;
                            }
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        probe.set_expected(helper.paced(topic, rate, count));
                    });
                    run(setup, targets[t], topic, probe, Tune::default());
                });
                let h = probe.latency();
                let ms = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
                let (achieved, cpu) = probe.rate_and_cpu(false);
                runs[r][t].0.push([
                    ms(0.5),
                    ms(0.99),
                    ms(0.999),
                    h.max() as f64 / 1e3,
                    cpu,
                    achieved,
                ]);
                let _ = runs[r][t].1.add(&h);
            }
        }
    }
    let mut table = Table::new(
        format!(
            "Paced: produce-to-handled latency and CPU per record, {} partitions (medians of {} rounds)",
            setup.paced_partitions,
            setup.rounds
        ),
        &[
            "rate/s",
            "consumer",
            "achieved/s",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms",
            "CPU µs/record",
            "CPU vs BaseConsumer",
        ],
    );
    let mut json_rows = Vec::new();
    for (r, &rate) in rates.iter().enumerate() {
        let med =
            |t: usize, k: usize| median(&runs[r][t].0.iter().map(|v| v[k]).collect::<Vec<_>>());
        for (t, target) in targets.iter().enumerate() {
            table.rows.push(vec![
                rate.to_string(),
                target.label().into(),
                format!("{:.0}", med(t, 5)),
                format!("{:.2}", med(t, 0)),
                format!("{:.2}", med(t, 1)),
                format!("{:.2}", med(t, 2)),
                format!("{:.2}", med(t, 3)),
                format!("{:.2}", med(t, 4)),
                format!("{:.2}", med(t, 4) / med(1, 4)),
            ]);
            json_rows.push(json!({
                "rate": rate, "consumer": target.id(), "achieved_per_s": med(t, 5),
                "p50_ms": med(t, 0), "p99_ms": med(t, 1), "p999_ms": med(t, 2), "max_ms": med(t, 3),
                "cpu_us_per_record": med(t, 4),
            }));
        }
        let (key, base) = (2, 1);
        // A paced run whose producer fell behind its rate measured a backlog
        // draining, not the consumers at that rate: no verdict then.
        let kept_pace = targets
            .iter()
            .enumerate()
            .all(|(t, _)| med(t, 5) >= 0.95 * rate as f64);
        let verdict = |pass: bool| kept_pace.then_some(pass);
        let fell_behind = if kept_pace {
            ""
        } else {
            " (producer fell behind: no verdict)"
        };
        report.goals.push(Goal {
            name: format!("CPU/record at {rate}/s vs raw BaseConsumer{fell_behind}"),
            measured: med(key, 4),
            reference: med(base, 4),
            unit: "µs",
            goal: "≤ 1.30".into(),
            pass: verdict(med(key, 4) / med(base, 4) <= 1.3),
        });
        if rate == 10_000 {
            report.goals.push(Goal {
                name: format!("p99 latency at 10000/s vs raw BaseConsumer{fell_behind}"),
                measured: med(key, 1),
                reference: med(base, 1),
                unit: "ms",
                goal: "≤ raw + 2 ms".into(),
                pass: verdict(med(key, 1) <= med(base, 1) + 2.0),
            });
        }
        let name = if rate == 10_000 {
            "latency.svg".to_owned()
        } else {
            format!("latency_{rate}.svg")
        };
        let path = out_dir().join(name);
        let curves: Vec<(String, Histogram<u64>)> = targets
            .iter()
            .enumerate()
            .map(|(t, target)| (target.label().to_owned(), runs[r][t].1.clone()))
            .collect();
        let title = format!("Produce-to-handled latency at {rate} records/s, all rounds");
        match support::plot::latency(&path, &title, &curves) {
            Ok(()) => println!("plot: {}", path.display()),
            Err(e) => eprintln!("plot {}: {e}", path.display()),
        }
    }
    report.table(table);
    report.json.insert(
        "paced".into(),
        json!({"seconds": secs, "linger_ms": helper::paced_linger_ms(), "partitions": setup.paced_partitions, "rows": json_rows}),
    );
}
