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
    // The dispatcher's handler is slower than the fetch, so that records
    // pile up in its buffers up to their caps, which is what this part
    // measures. With a no-op handler it keeps up with the fetch: whether
    // the buffers fill before the backlog runs out is then a matter of
    // timing, and the peak at 1 M records came out anywhere from a quarter
    // to all of the peak at 5 M.
    let io = Duration::from_millis(knob("BENCH_MEMORY_HANDLER_MS").unwrap_or(1));
    let mut topics = Vec::new();
    for &n in &sizes {
        let topic = unique(&format!("memory-{n}"));
        setup.topic(helper, &topic, partitions);
        let produced = helper.produce(&topic, n, &compression);
        topics.push((topic, produced));
    }
    println!(
        "\nmemory: backlogs of {:?} records, {partitions} partitions, {compression}; the dispatcher's handler sleeps {io:?}; one consumer process each; {} rounds",
        topics.iter().map(|t| t.1).collect::<Vec<_>>(),
        setup.rounds
    );
    let targets = [Target::Dispatcher(OrderingMode::Key), Target::RawBase];
    // Per size and target: what each round's child measured.
    let mut runs: Vec<Vec<Vec<ChildPeaks>>> = (0..sizes.len())
        .map(|_| targets.iter().map(|_| Vec::new()).collect())
        .collect();
    for _ in 0..setup.rounds {
        for (s, (topic, produced)) in topics.iter().enumerate() {
            for (t, target) in targets.iter().enumerate() {
                runs[s][t].push(memory_child(setup, *target, topic, *produced, io));
            }
        }
    }
    let of = |s: usize, t: usize, f: fn(&ChildPeaks) -> f64| -> Vec<f64> {
        runs[s][t].iter().map(f).collect()
    };
    let mut table = Table::new(
        format!("Memory: peak RSS (VmHWM) of a consumer process draining a backlog, default caps, the dispatcher's handler sleeping {} ms (medians of {} rounds)", io.as_millis(), setup.rounds),
        &["backlog", "consumer", "peak RSS MiB", "1st half MiB", "2nd half MiB", "records/s", "rounds (MiB)"],
    );
    let mut json_rows = Vec::new();
    for (s, (_, produced)) in topics.iter().enumerate() {
        for (t, target) in targets.iter().enumerate() {
            let rss = median(&of(s, t, |c| c.rss));
            let first = median(&of(s, t, |c| c.halves[0]));
            let second = median(&of(s, t, |c| c.halves[1]));
            let rate = median(&of(s, t, |c| c.rate));
            table.rows.push(vec![
                produced.to_string(),
                target.label().into(),
                format!("{rss:.0}"),
                format!("{first:.0}"),
                format!("{second:.0}"),
                fmt_rate(rate),
                rounds_list(&of(s, t, |c| c.rss), |v| format!("{v:.0}")),
            ]);
            json_rows.push(
                json!({"records": produced, "consumer": target.id(), "peak_rss_mib": rss,
                "first_half_mib": first, "second_half_mib": second, "records_per_s": rate}),
            );
        }
    }
    report.table(table);
    report.json.insert(
        "memory".into(),
        json!({"partitions": partitions, "compression": compression, "handler_ms": io.as_secs_f64() * 1e3, "rows": json_rows}),
    );
    if sizes.len() >= 2 {
        let small = median(&of(0, 0, |c| c.rss));
        let large = median(&of(sizes.len() - 1, 0, |c| c.rss));
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
    // Within the largest backlog: does the resident set keep growing as
    // the drain goes on, or does it stop at what the caps hold?
    let last = sizes.len() - 1;
    let first = median(&of(last, 0, |c| c.halves[0]));
    let second = median(&of(last, 0, |c| c.halves[1]));
    report.goals.push(Goal {
        name: format!(
            "dispatcher RSS draining {}: 2nd half vs 1st half",
            topics[last].1
        ),
        measured: second,
        reference: first,
        unit: "MiB",
        goal: "≤ 1.10 (flat)".into(),
        pass: (first.is_finite() && second.is_finite()).then(|| second / first <= 1.1),
    });
}

/// What one memory child measured, in MiB and records/s.
struct ChildPeaks {
    rss: f64,
    rate: f64,
    /// The highest resident set while the first half of the backlog was
    /// handled, and while the second half was.
    halves: [f64; 2],
}

/// Runs one memory measurement in a child process (`BENCH_ROLE=memory`):
/// its VmHWM is the consumer's exact peak. The dispatcher's handler
/// sleeps `io` (the raw loop only reads). Returns the peak, the rate and
/// the peaks while the first and the second half of the backlog were
/// handled.
fn memory_child(setup: &Setup, target: Target, topic: &str, n: usize, io: Duration) -> ChildPeaks {
    let exe = std::env::current_exe().expect("the benchmark's executable");
    let out = std::process::Command::new(exe)
        .env("BENCH_ROLE", "memory")
        .env(
            "BENCH_CHILD",
            format!(
                "{}|{}|{topic}|{n}|{}",
                target.id(),
                setup.brokers,
                io.as_micros()
            ),
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
    // Zero: no sample fell in that half (a run shorter than the sampling).
    let mib = |kib: &str| match kib.parse::<f64>() {
        Ok(k) if k > 0.0 => k / 1024.0,
        _ => f64::NAN,
    };
    match words[..] {
        ["memory", kib, rate, first, second] => ChildPeaks {
            rss: mib(kib),
            rate: rate.parse().unwrap_or(f64::NAN),
            halves: [mib(first), mib(second)],
        },
        _ => {
            eprintln!("memory child ({}): {stdout}", out.status);
            ChildPeaks {
                rss: f64::NAN,
                rate: f64::NAN,
                halves: [f64::NAN; 2],
            }
        }
    }
}

/// The memory child's side: consume, then print `memory <VmHWM KiB>
/// <records/s> <first half KiB> <second half KiB>`: the peak over the
/// whole process, the rate, and the highest resident set sampled (every
/// 20 ms) while the first half of the backlog was handled and while the
/// second half was.
pub(super) fn serve_memory() {
    let spec = std::env::var("BENCH_CHILD").expect("BENCH_CHILD");
    let parts: Vec<&str> = spec.split('|').collect();
    let [target, brokers, topic, n, io_us] = parts[..] else {
        panic!("BENCH_CHILD: {spec}")
    };
    let n: usize = n.parse().expect("count");
    let setup = Setup::from_env(brokers.to_owned(), None, false);
    let probe = Probe::new(Some(n), false);
    let sampler = std::thread::spawn(move || {
        let mut halves = [0u64; 2];
        while !probe.is_finished() {
            let half = usize::from(probe.done() >= n / 2);
            if probe.done() > 0 {
                let rss = status_kib("VmRSS").unwrap_or(0);
                halves[half] = halves[half].max(rss);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        halves
    });
    run(
        &setup,
        Target::from_id(target),
        topic,
        probe,
        Tune {
            io: Duration::from_micros(io_us.parse().expect("handler µs")),
            ..Tune::default()
        },
    );
    let (rate, _) = probe.rate_and_cpu(false);
    let [first, second] = sampler.join().expect("the RSS sampler");
    println!(
        "memory {} {rate:.0} {first} {second}",
        status_kib("VmHWM").unwrap_or(0)
    );
}
