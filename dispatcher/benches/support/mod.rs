//! What the benchmark program shares: clocks, memory readings, knobs, the
//! helper process (broker and producers), the probe the consumers report
//! to, and the plots.

pub(crate) mod helper;
pub(crate) mod plot;
pub(crate) mod probe;

use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Bytes of every record's value. Its first 8 bytes carry the send time
/// (nanoseconds since the Unix epoch, little endian) for paced records and
/// zero for bulk ones; the rest is `x`.
pub(crate) const PAYLOAD: usize = 100;
/// Distinct keys, `key-00000` to `key-09999`, taken in turn.
pub(crate) const KEYS: usize = 10_000;

/// CPU time (user and system) this process's consumers used so far: the
/// process's total, `clock_gettime(CLOCK_PROCESS_CPUTIME_ID)` (what
/// `getrusage(RUSAGE_SELF)` adds up, in nanoseconds, through rustix: no
/// unsafe code here), less the embedded cluster's own threads
/// (`rdk:mock`, which serves the broker, and `embedded-broker`, which
/// runs its admin jobs), read from `/proc/self/task/*/schedstat`.
pub(crate) fn cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    let total = Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    );
    total.saturating_sub(broker_threads_cpu())
}

/// CPU time of the embedded cluster's threads in this process (zero on a
/// real cluster).
fn broker_threads_cpu() -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let mut nanos = 0u64;
    for task in tasks.flatten() {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if matches!(comm.trim_end(), "rdk:mock" | "embedded-broker") {
            nanos += std::fs::read_to_string(path.join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse().ok())
                .unwrap_or(0);
        }
    }
    Duration::from_nanos(nanos)
}

/// A field of `/proc/self/status` in KiB: `VmHWM` (peak resident set since
/// the process started or since [`reset_peak_rss`]) or `VmRSS` (now).
pub(crate) fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| {
        line.strip_prefix(field)?
            .strip_prefix(':')?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()
    })
}

/// Sets `VmHWM` back to the current resident set (Linux 4.0 and later:
/// writing `5` to `/proc/self/clear_refs`), so that the next reading is the
/// peak of what ran since. Memory the allocator kept from earlier work is
/// still counted: exact peaks come from the child processes of the memory
/// part.
pub(crate) fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// An environment knob, when set and parseable.
pub(crate) fn knob<T: FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// A comma-separated knob, or `default`.
pub(crate) fn list<T: FromStr + Clone>(name: &str, default: &[T]) -> Vec<T> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => {
            v.split(',').filter_map(|s| s.trim().parse().ok()).collect()
        }
        _ => default.to_vec(),
    }
}

/// The median (the upper one of an even count); NaN when empty.
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Wall-clock nanoseconds since the Unix epoch: the clock both processes
/// share, for produce-to-handled latency.
pub(crate) fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A name no earlier run used: topics and consumer groups on a real
/// cluster outlive the benchmark.
pub(crate) fn unique(label: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "bench-{}-{}-{}-{label}",
        std::process::id(),
        unix_nanos() / 1_000_000 % 100_000_000,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
