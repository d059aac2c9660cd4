//! Part 5: peak RSS of a consumer process draining backlogs of several sizes.

use super::*;

/// Part 5: peak RSS of a consumer process draining backlogs.
pub(super) fn memory(setup: &Setup, helper: &mut Helper, report: &mut Report) {
    let sizes: Vec<usize> = list("BENCH_MEMORY_RECORDS", &[1_000_000, 5_000_000])
        .into_iter()
        .map(|n| setup.scaled(n, 1_000))
        .collect();
    let partitions: i32 = knob("BENCH_MEMORY_PARTITIONS").unwrap_or(64);
    // The embedded cluster keeps about 5 MiB per partition: compressed,
    // 5 M of these records fit in 64 partitions.
    let compression = std::env::var("BENCH_MEMORY_COMPRESSION")
        .unwrap_or_else(|_| if setup.embedded { "lz4" } else { "none" }.to_owned());
    let mut topics = Vec::new();
    for &n in &sizes {
        let topic = unique(&format!("memory-{n}"));
        setup.topic(helper, &topic, partitions);
        let produced = helper.produce(&topic, n, &compression);
        topics.push((topic, produced));
    }
    println!(
        "\nmemory: backlogs of {:?} records, {partitions} partitions, {compression}; one consumer process each; {} rounds",
        topics.iter().map(|t| t.1).collect::<Vec<_>>(),
        setup.rounds
    );
    let targets = [Target::Dispatcher(OrderingMode::Key), Target::RawBase];
    // Per size and target: peak RSS MiB and records/s per round.
    let mut runs = vec![vec![(Vec::new(), Vec::new()); targets.len()]; sizes.len()];
    for _ in 0..setup.rounds {
        for (s, (topic, produced)) in topics.iter().enumerate() {
            for (t, target) in targets.iter().enumerate() {
                let (rss, rate) = memory_child(setup, *target, topic, *produced);
                runs[s][t].0.push(rss);
                runs[s][t].1.push(rate);
            }
        }
    }
    let mut table = Table::new(
        format!("Memory: peak RSS (VmHWM) of a consumer process draining a backlog, default caps (medians of {} rounds)", setup.rounds),
        &["backlog", "consumer", "peak RSS MiB", "records/s", "rounds (MiB)"],
    );
    let mut json_rows = Vec::new();
    for (s, (_, produced)) in topics.iter().enumerate() {
        for (t, target) in targets.iter().enumerate() {
            let rss = median(&runs[s][t].0);
            table.rows.push(vec![
                produced.to_string(),
                target.label().into(),
                format!("{rss:.0}"),
                fmt_rate(median(&runs[s][t].1)),
                rounds_list(&runs[s][t].0, |v| format!("{v:.0}")),
            ]);
            json_rows.push(json!({"records": produced, "consumer": target.id(), "peak_rss_mib": rss, "records_per_s": median(&runs[s][t].1)}));
        }
    }
    report.table(table);
    report.json.insert(
        "memory".into(),
        json!({"partitions": partitions, "compression": compression, "rows": json_rows}),
    );
    if sizes.len() >= 2 {
        let small = median(&runs[0][0].0);
        let large = median(&runs[sizes.len() - 1][0].0);
        report.goals.push(Goal {
            name: format!(
                "dispatcher peak RSS, {} vs {} backlog",
                topics[sizes.len() - 1].1,
                topics[0].1
            ),
            measured: large,
            reference: small,
            unit: "MiB",
            goal: "≤ 1.10 (flat)".into(),
            pass: Some(large / small <= 1.1),
        });
    }
}

/// Runs one memory measurement in a child process (`BENCH_ROLE=memory`):
/// its VmHWM is the consumer's exact peak. Returns (MiB, records/s).
fn memory_child(setup: &Setup, target: Target, topic: &str, n: usize) -> (f64, f64) {
    let exe = std::env::current_exe().expect("the benchmark's executable");
    let out = std::process::Command::new(exe)
        .env("BENCH_ROLE", "memory")
        .env(
            "BENCH_CHILD",
            format!("{}|{}|{topic}|{n}", target.id(), setup.brokers),
        )
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run the memory child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let words: Vec<&str> = stdout
        .lines()
        .find(|l| l.starts_with("memory "))
        .unwrap_or("")
        .split_whitespace()
        .collect();
    match words[..] {
        ["memory", kib, rate] => (
            kib.parse::<f64>().unwrap_or(f64::NAN) / 1024.0,
            rate.parse().unwrap_or(f64::NAN),
        ),
        _ => {
            eprintln!("memory child ({}): {stdout}", out.status);
            (f64::NAN, f64::NAN)
        }
    }
}

/// The memory child's side: consume, then print `memory <VmHWM KiB>
/// <records/s>`.
pub(super) fn serve_memory() {
    let spec = std::env::var("BENCH_CHILD").expect("BENCH_CHILD");
    let parts: Vec<&str> = spec.split('|').collect();
    let [target, brokers, topic, n] = parts[..] else {
        panic!("BENCH_CHILD: {spec}")
    };
    let setup = Setup::from_env(brokers.to_owned(), None, false);
    let probe = Probe::new(Some(n.parse().expect("count")), false);
    run(
        &setup,
        Target::from_id(target),
        topic,
        probe,
        Tune::default(),
    );
    let (rate, _) = probe.rate_and_cpu(false);
    println!("memory {} {rate:.0}", status_kib("VmHWM").unwrap_or(0));
}
