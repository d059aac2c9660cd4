//! The partition worker against hand-made handlers and sinks: order,
//! commits, backpressure, rewinds and stops.

use super::*;
use crate::dead_letter::{DeadLetter, DeadLetterSink, SinkError};
use crate::engine::backlog::PollWaker;
use crate::handler::{Handler, HandlerError, HandlerFuture, HandlerPanic, HandlerSpec};
use crate::policy::{Classification, Classify, Policy};
use crate::telemetry::metrics::PartitionGauges;
use std::sync::Mutex;

/// Finishes records at once, except those with key "slow", which wait
/// (almost) forever; notes the offset of every record it finishes.
struct Mixed {
    finished: &'static Mutex<Vec<i64>>,
}

impl Handler for Mixed {
    fn call(&self, msg: Message) -> HandlerFuture<'static> {
        let finished = self.finished;
        Box::pin(async move {
            if msg.key() == Some(&b"slow"[..]) {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            finished.lock().expect("lock").push(msg.offset());
            Ok(())
        })
    }
}

fn mixed() -> (&'static Mixed, &'static Mutex<Vec<i64>>) {
    let finished: &'static Mutex<Vec<i64>> = Box::leak(Box::new(Mutex::new(Vec::new())));
    (Box::leak(Box::new(Mixed { finished })), finished)
}

struct NoSink;
impl DeadLetterSink for NoSink {
    fn publish<'a>(
        &'a self,
        _: &'a Message,
        _: &'a DeadLetter<'a>,
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async { Ok(()) })
    }
}

/// Fails every record whose key is "bad"; the rest succeed.
struct FailsBad;
impl Handler for FailsBad {
    fn call(&self, msg: Message) -> HandlerFuture<'static> {
        Box::pin(async move {
            if msg.key() == Some(&b"bad"[..]) {
                return Err(HandlerError::new(std::fmt::Error));
            }
            Ok(())
        })
    }
}
static FAILS_BAD: FailsBad = FailsBad;

struct PanickingClassifier;
impl Classify for PanickingClassifier {
    fn classify(&self, _: &HandlerError) -> Option<Classification> {
        panic!("a classifier bug")
    }
}

fn context_for(global: Arc<Limit>, handler: &'static dyn Handler, policy: Policy) -> WorkerContext {
    let spec = HandlerSpec::new("mixed", &["t"], handler)
        .declared_at("tests", file!(), line!())
        .with_policy(policy);
    WorkerContext {
        executor: Arc::new(Executor {
            concurrency: policy.concurrency().map(|n| Arc::new(Limit::new(n))),
            ..Executor::for_test(spec, "tests::mixed", Arc::new(NoSink))
        }),
        global,
        stop: Arc::new(Stop::default()),
        drain_timeout: Duration::from_millis(50),
        health: Arc::new(Health::new(Arc::new(Stop::default()), [])),
        stall_timeout: Duration::from_secs(3600),
        gauges: PartitionGauges::none(),
    }
}

fn start(cx: WorkerContext, partition: i32) -> PartitionHandle {
    let backlog = Backlog::new(100_000, 1 << 30, Arc::new(PollWaker::default()));
    spawn(
        &tokio::runtime::Handle::current(),
        Arc::from("t"),
        partition,
        cx,
        backlog,
    )
}

/// Sends a batch to a worker the way the poll thread does.
fn hand_over(handle: &PartitionHandle, batch: Vec<Message>) {
    assert!(handle.send(Batch::of(&batch)), "worker is running");
}

fn committable(handle: &PartitionHandle) -> i64 {
    handle.shared.committable.load(AtomicOrdering::Acquire)
}

/// Polls `done` until it holds, failing after 30 s.
async fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn stop_and_wait(handle: PartitionHandle) {
    handle.stop.cancel();
    let exited =
        tokio::task::spawn_blocking(move || handle.exited.recv_timeout(Duration::from_secs(30)))
            .await
            .expect("join");
    assert!(
        matches!(exited, Err(std::sync::mpsc::RecvTimeoutError::Disconnected)),
        "the worker exited"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_worker_gives_every_slot_back() {
    let global = Arc::new(Limit::new(100_000));
    let (handler, _) = mixed();
    let cx = context_for(global.clone(), handler, Policy::DEFAULT.with_concurrency(4));
    let handler_limit = cx.executor.concurrency.clone().expect("set");
    let handle = start(cx, 0);
    let mut batch: Vec<Message> = (0..500)
        .map(|o| Message::new("t", 0, o).with_key(format!("k{}", o % 7)))
        .collect();
    batch.push(Message::new("t", 0, 500).with_key("slow"));
    batch.push(Message::new("t", 0, 501).with_key("slow"));
    hand_over(&handle, batch);
    wait_for("everything but the slow key to finish", || {
        committable(&handle) == 500
    })
    .await;
    assert!(global.used() >= 1, "the slow record holds a slot");
    assert_eq!(
        handle.shared.backlog.records(),
        2,
        "the slow records are held"
    );
    stop_and_wait(handle).await;
    assert_eq!(global.used(), 0, "global slots leaked");
    assert_eq!(handler_limit.used(), 0, "handler slots leaked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_outside_the_handler_stops_with_the_record_uncommitted() {
    static CLASSIFIER: PanickingClassifier = PanickingClassifier;
    let global = Arc::new(Limit::new(1_000));
    let cx = context_for(
        global.clone(),
        &FAILS_BAD,
        Policy::DEFAULT.with_classifier(&CLASSIFIER),
    );
    let stop = cx.stop.clone();
    let handle = start(cx, 0);
    let batch = vec![
        Message::new("t", 0, 0).with_key("a"),
        Message::new("t", 0, 1).with_key("bad"),
        Message::new("t", 0, 2).with_key("b"),
    ];
    hand_over(&handle, batch);
    wait_for("a fatal error", || stop.is_stopping()).await;
    match stop.take_error().expect("an error") {
        Error::Fatal(f) => {
            assert_eq!((f.partition, f.offset), (0, 1));
            assert!(f.error.is::<HandlerPanic>(), "{f:?}");
        }
        other => panic!("expected a fatal error, got {other:?}"),
    }
    // Offset 0 finished; the record that panicked holds the watermark.
    assert_eq!(committable(&handle), 1);
    handle.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewind_handles_the_reused_offsets_and_commits_nothing_past_them() {
    let (handler, finished) = mixed();
    let handle = start(
        context_for(Arc::new(Limit::new(1_000)), handler, Policy::DEFAULT),
        0,
    );
    hand_over(
        &handle,
        (0..10)
            .map(|o| Message::new("t", 0, o).with_key(format!("k{o}")))
            .collect(),
    );
    wait_for("the first ten records", || committable(&handle) == 10).await;
    // librdkafka rewinds to offset 5 (say, log truncation after an
    // unclean leader election): the records from 5 on are new.
    hand_over(
        &handle,
        vec![
            Message::new("t", 0, 5).with_key("slow"),
            Message::new("t", 0, 6).with_key("k6"),
            Message::new("t", 0, 7).with_key("k7"),
        ],
    );
    wait_for("the new records 6 and 7 to be handled", || {
        finished
            .lock()
            .expect("lock")
            .iter()
            .filter(|&&o| o == 6 || o == 7)
            .count()
            == 4
    })
    .await;
    assert_eq!(
        committable(&handle),
        5,
        "the watermark falls back to the rewind point: offset 5 is not handled yet"
    );
    assert_eq!(handle.shared.rewinds.load(AtomicOrdering::Acquire), 1);
    stop_and_wait(handle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_at_its_own_limit_does_not_take_global_slots_from_others() {
    // Two global slots; handler A may run one record at a time and its
    // records hang, on four partitions; handler B has no limit.
    let global = Arc::new(Limit::new(2));
    let (a, _) = mixed();
    let (b, b_finished) = mixed();
    let mut a_workers = Vec::new();
    let a_cx = context_for(global.clone(), a, Policy::DEFAULT.with_concurrency(1));
    let a_limit = a_cx.executor.concurrency.clone();
    for p in 0..4 {
        let cx = WorkerContext {
            executor: a_cx.executor.clone(),
            global: global.clone(),
            stop: a_cx.stop.clone(),
            drain_timeout: a_cx.drain_timeout,
            health: a_cx.health.clone(),
            stall_timeout: a_cx.stall_timeout,
            gauges: PartitionGauges::none(),
        };
        let handle = start(cx, p);
        hand_over(&handle, vec![Message::new("t", p, 0).with_key("slow")]);
        a_workers.push(handle);
    }
    assert!(a_limit.is_some());
    wait_for("handler A to run its one record", || global.used() >= 1).await;
    let b_handle = start(context_for(global.clone(), b, Policy::DEFAULT), 9);
    hand_over(
        &b_handle,
        (0..50)
            .map(|o| Message::new("t", 9, o).with_key(format!("k{o}")))
            .collect(),
    );
    wait_for(
        "handler B's records, with A waiting for its own slot",
        || committable(&b_handle) == 50,
    )
    .await;
    assert_eq!(b_finished.lock().expect("lock").len(), 50);
    for h in a_workers {
        stop_and_wait(h).await;
    }
    stop_and_wait(b_handle).await;
    assert_eq!(global.used(), 0);
}

/// Holds every record until the gate opens.
struct Gated {
    gate: &'static tokio::sync::Notify,
    open: &'static std::sync::atomic::AtomicBool,
}

impl Handler for Gated {
    fn call(&self, _msg: Message) -> HandlerFuture<'static> {
        let (gate, open) = (self.gate, self.open);
        Box::pin(async move {
            while !open.load(AtomicOrdering::Acquire) {
                gate.notified().await;
            }
            Ok(())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_holds_up_commits_past_the_stall_timeout_turns_readiness_off_until_it_finishes(
) {
    let gate: &'static tokio::sync::Notify = Box::leak(Box::new(tokio::sync::Notify::new()));
    let open: &'static std::sync::atomic::AtomicBool =
        Box::leak(Box::new(std::sync::atomic::AtomicBool::new(false)));
    let handler: &'static Gated = Box::leak(Box::new(Gated { gate, open }));
    let mut cx = context_for(Arc::new(Limit::new(100)), handler, Policy::DEFAULT);
    cx.stall_timeout = Duration::from_millis(200);
    let health = Arc::new(Health::new(Arc::new(Stop::default()), []));
    cx.health = health.clone();
    let handle = start(cx, 7);
    hand_over(&handle, vec![Message::new("t", 7, 41).with_key("k-41")]);
    wait_for("the partition to count as stalled", || {
        !health.readiness().ready
    })
    .await;
    let why = health.readiness().detail;
    assert!(why.contains("t[7] stalled"), "{why}");
    open.store(true, AtomicOrdering::Release);
    gate.notify_one();
    wait_for("the record to finish", || committable(&handle) == 42).await;
    wait_for("readiness to come back", || health.readiness().ready).await;
    stop_and_wait(handle).await;
}

/// Holds every record until `open` is set.
struct Held {
    open: &'static std::sync::atomic::AtomicBool,
}

impl Handler for Held {
    fn call(&self, _msg: Message) -> HandlerFuture<'static> {
        let open = self.open;
        Box::pin(async move {
            while !open.load(AtomicOrdering::Acquire) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok(())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewind_keeps_the_waiting_records_below_the_rewind_point() {
    let open: &'static std::sync::atomic::AtomicBool =
        Box::leak(Box::new(std::sync::atomic::AtomicBool::new(false)));
    let handler: &'static Held = Box::leak(Box::new(Held { open }));
    // One slot: offset 0 runs (and is held), 1 to 5 wait for the slot.
    let global = Arc::new(Limit::new(1));
    let handle = start(context_for(global.clone(), handler, Policy::DEFAULT), 0);
    hand_over(
        &handle,
        (0..6)
            .map(|o| Message::new("t", 0, o).with_key(format!("k{o}")))
            .collect(),
    );
    wait_for("offset 0 to hold the slot", || global.used() == 1).await;
    // librdkafka rewinds to offset 3: 3 to 5 come again; 1 and 2 do not.
    hand_over(
        &handle,
        (3..6)
            .map(|o| Message::new("t", 0, o).with_key(format!("k{o}")))
            .collect(),
    );
    open.store(true, AtomicOrdering::Release);
    wait_for("every offset below 6 to be finished", || {
        committable(&handle) == 6
    })
    .await;
    stop_and_wait(handle).await;
}
