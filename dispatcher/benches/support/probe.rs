//! What every consumer under test reports each record to: counts, the
//! clocks at the first and last record (and at the 10th and 90th percent,
//! for steady-state windows), latencies, and, for the I/O-bound handlers,
//! how many handlers run and the stretches with none running.

use super::{cpu_time, unix_nanos};
use dispatcher::handler::{Handler, HandlerFuture};
use dispatcher::Message;
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The wall clock and the process CPU clock at one moment.
pub(crate) type Mark = (Instant, Duration);

fn mark() -> Mark {
    (Instant::now(), cpu_time())
}

/// Nanoseconds since the first call, plus one (zero means "unset").
fn mono_nanos() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    u64::try_from(BASE.get_or_init(Instant::now).elapsed().as_nanos()).unwrap_or(u64::MAX) + 1
}

/// One consumer run's observations.
pub(crate) struct Probe {
    /// How many records end the run: `usize::MAX` until the producer has
    /// confirmed its count (paced runs).
    expected: AtomicUsize,
    /// Records handled (warm-up records not included).
    done: AtomicUsize,
    /// Warm-up records (value stamped zero in a paced run) handled.
    warm: AtomicUsize,
    /// Whether this run is paced: records stamped zero are warm-up.
    paced: bool,
    /// Set when `done` reaches `expected`.
    pub(crate) finished: tokio::sync::Notify,
    first: OnceLock<Mark>,
    last: OnceLock<Mark>,
    /// At the 10th and the 90th percent of `expected` (bulk runs).
    window: [OnceLock<Mark>; 2],
    /// Produce-to-handled latency in microseconds (paced runs).
    latency: Mutex<Histogram<u64>>,
    /// Handlers running now (I/O-bound runs).
    running: AtomicUsize,
    /// When `running` last fell to zero with records left ([`mono_nanos`];
    /// zero: not idle).
    idle_since: AtomicU64,
    /// The longest stretch, in nanoseconds, from `running` falling to zero
    /// with records left until a handler started again.
    longest_idle: AtomicU64,
    /// Total time handlers spent, in nanoseconds.
    busy: AtomicU64,
}

impl Probe {
    /// A probe for a run of `expected` records (`None`: told later with
    /// [`Probe::set_expected`]); `paced` runs skip warm-up records and
    /// record latencies. Leaked: the dispatcher's handlers are `'static`
    /// (a few tens of KiB per run).
    pub(crate) fn new(expected: Option<usize>, paced: bool) -> &'static Probe {
        Box::leak(Box::new(Probe {
            expected: AtomicUsize::new(expected.unwrap_or(usize::MAX)),
            done: AtomicUsize::new(0),
            warm: AtomicUsize::new(0),
            paced,
            finished: tokio::sync::Notify::new(),
            first: OnceLock::new(),
            last: OnceLock::new(),
            window: [OnceLock::new(), OnceLock::new()],
            latency: Mutex::new(
                Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds"),
            ),
            running: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            longest_idle: AtomicU64::new(0),
            busy: AtomicU64::new(0),
        }))
    }

    /// Sets the count that ends the run (once the producer confirmed it).
    pub(crate) fn set_expected(&self, n: usize) {
        self.expected.store(n, Ordering::SeqCst);
        if self.done.load(Ordering::SeqCst) >= n {
            self.finish();
        }
    }

    fn finish(&self) {
        let _ = self.last.set(mark());
        self.finished.notify_one();
    }

    /// One record handled, with its value.
    #[inline]
    pub(crate) fn record(&self, payload: Option<&[u8]>) {
        let payload = std::hint::black_box(payload);
        if self.paced {
            let sent = payload
                .and_then(|p| p.get(..8))
                .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
            if sent == 0 {
                self.warm.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let micros = unix_nanos().saturating_sub(sent) / 1_000;
            self.latency
                .lock()
                .expect("latency lock")
                .saturating_record(micros.max(1));
        }
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        if done == 1 {
            let _ = self.first.set(mark());
        }
        let expected = self.expected.load(Ordering::Relaxed);
        if expected != usize::MAX {
            if done == expected / 10 {
                let _ = self.window[0].set(mark());
            } else if done == expected * 9 / 10 {
                let _ = self.window[1].set(mark());
            }
        }
        if done == expected {
            self.finish();
        }
    }

    /// Whether every expected record was handled.
    pub(crate) fn is_finished(&self) -> bool {
        self.done.load(Ordering::Relaxed) >= self.expected.load(Ordering::Relaxed)
    }

    /// When the first record was handled.
    pub(crate) fn first_at(&self) -> Option<Instant> {
        self.first.get().map(|m| m.0)
    }

    /// Records handled so far.
    pub(crate) fn done(&self) -> usize {
        self.done.load(Ordering::Relaxed)
    }

    /// Warm-up records handled so far.
    pub(crate) fn warm(&self) -> usize {
        self.warm.load(Ordering::Relaxed)
    }

    /// Records per second and CPU microseconds per record from the first
    /// record to the last (`steady`: from the 10th to the 90th percent).
    pub(crate) fn rate_and_cpu(&self, steady: bool) -> (f64, f64) {
        let (from, to, n) = if steady {
            let expected = self.expected.load(Ordering::Relaxed);
            (
                self.window[0].get(),
                self.window[1].get(),
                expected * 9 / 10 - expected / 10,
            )
        } else {
            (
                self.first.get(),
                self.last.get(),
                self.done().saturating_sub(1),
            )
        };
        match (from, to) {
            (Some(a), Some(b)) if n > 0 && b.0 > a.0 => (
                n as f64 / (b.0 - a.0).as_secs_f64(),
                b.1.saturating_sub(a.1).as_secs_f64() * 1e6 / n as f64,
            ),
            _ => (f64::NAN, f64::NAN),
        }
    }

    /// The latency histogram (microseconds).
    pub(crate) fn latency(&self) -> Histogram<u64> {
        self.latency.lock().expect("latency lock").clone()
    }

    /// A handler starts: ends an idle stretch, if one was open.
    fn begin(&self) {
        if self.running.fetch_add(1, Ordering::SeqCst) == 0 {
            let since = self.idle_since.swap(0, Ordering::SeqCst);
            if since != 0 {
                let gap = mono_nanos().saturating_sub(since);
                self.longest_idle.fetch_max(gap, Ordering::Relaxed);
            }
        }
    }

    /// A handler ends after `took`; opens an idle stretch if it was the
    /// last one running and records are left.
    fn end(&self, took: Duration, payload: Option<&[u8]>) {
        self.busy.fetch_add(
            u64::try_from(took.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        // Count the record first, so that "records left" below is exact.
        self.record(payload);
        if self.running.fetch_sub(1, Ordering::SeqCst) == 1 && !self.is_finished() {
            self.idle_since.store(mono_nanos(), Ordering::SeqCst);
        }
    }

    /// The longest stretch with records left and no handler running.
    pub(crate) fn longest_idle(&self) -> Duration {
        Duration::from_nanos(self.longest_idle.load(Ordering::Relaxed))
    }

    /// Mean time in a handler.
    pub(crate) fn mean_handler_time(&self) -> Duration {
        let n = self.done().max(1) as u64;
        Duration::from_nanos(self.busy.load(Ordering::Relaxed) / n)
    }

    /// Handlers running at once on average, first record to last
    /// (Little's law: total handler time over wall time).
    pub(crate) fn mean_running(&self) -> f64 {
        match (self.first.get(), self.last.get()) {
            (Some(a), Some(b)) if b.0 > a.0 => {
                self.busy.load(Ordering::Relaxed) as f64 / 1e9 / (b.0 - a.0).as_secs_f64()
            }
            _ => f64::NAN,
        }
    }
}

/// The dispatcher handler of every run: reports to the probe, after a
/// simulated I/O call (a tokio sleep) when `io` is not zero.
pub(crate) struct ProbeHandler {
    pub(crate) probe: &'static Probe,
    pub(crate) io: Duration,
}

impl Handler for ProbeHandler {
    fn call(&self, msg: Message) -> HandlerFuture<'static> {
        let probe = self.probe;
        let io = self.io;
        Box::pin(async move {
            if io.is_zero() {
                probe.record(msg.payload());
            } else {
                probe.begin();
                let t = Instant::now();
                tokio::time::sleep(io).await;
                probe.end(t.elapsed(), msg.payload());
            }
            Ok(())
        })
    }
}
