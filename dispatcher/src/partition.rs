//! The worker of one assigned partition: queues its records by ordering
//! lane, runs them within the in-flight caps, and publishes the watermark.

use crate::error::FatalError;
use crate::execute::{Finish, FirstAttempt, HandlerRuntime};
use crate::lanes::{LaneId, Lanes};
use crate::limit::Limit;
use crate::message::KeyDisplay;
use crate::tracker::OffsetTracker;
use crate::{Error, Message};
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// State a partition's worker shares with the poll thread.
#[derive(Debug)]
pub(crate) struct PartitionShared {
    /// Next offset to commit; -1 until a record finished.
    pub(crate) committable: AtomicI64,
    /// Records sent to the worker and not yet below its watermark (nor
    /// dropped): waiting, running, or finished behind an unfinished one.
    /// The poll loop pauses the partition on it, which bounds the worker's
    /// memory and what a crash delivers again, also when one record is slow
    /// and the rest of its partition races ahead.
    pub(crate) held: AtomicUsize,
}

/// The first fatal error of the run, and the signal that stops everything.
#[derive(Debug, Default)]
pub(crate) struct FatalSlot {
    pub(crate) error: Mutex<Option<Error>>,
    pub(crate) shutdown: CancellationToken,
}

impl FatalSlot {
    pub(crate) fn report(&self, error: Error) {
        let mut slot = self
            .error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(error);
        }
        self.shutdown.cancel();
    }
}

/// The poll thread's handle on a partition's worker.
pub(crate) struct PartitionHandle {
    pub(crate) records: mpsc::UnboundedSender<Vec<Message>>,
    pub(crate) shared: Arc<PartitionShared>,
    pub(crate) stop: CancellationToken,
    /// Disconnects when the worker has exited.
    pub(crate) exited: std::sync::mpsc::Receiver<()>,
    pub(crate) paused: bool,
    pub(crate) stored: i64,
}

/// What a worker needs besides its records.
pub(crate) struct WorkerContext {
    pub(crate) handler: Arc<HandlerRuntime>,
    pub(crate) global: Arc<Limit>,
    pub(crate) fatal: Arc<FatalSlot>,
    pub(crate) drain_timeout: Duration,
}

/// Starts the worker of `topic`/`partition` on the runtime.
pub(crate) fn spawn(
    rt: &tokio::runtime::Handle,
    topic: Arc<str>,
    partition: i32,
    cx: WorkerContext,
) -> PartitionHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let (exit_tx, exit_rx) = std::sync::mpsc::channel();
    let shared = Arc::new(PartitionShared {
        committable: AtomicI64::new(-1),
        held: AtomicUsize::new(0),
    });
    let stop = CancellationToken::new();
    // A private copy of the handler's runtime: its reference count is
    // touched per record, and must not be shared with other partitions.
    let cx = WorkerContext {
        handler: Arc::new(HandlerRuntime::clone(&cx.handler)),
        ..cx
    };
    let worker = Worker {
        topic,
        partition,
        lanes: Lanes::new(cx.handler.spec.policy.ordering_mode()),
        cx,
        shared: shared.clone(),
        tracker: OffsetTracker::default(),
        ready: VecDeque::new(),
        halted: false,
        released: 0,
        spare: 0,
    };
    rt.spawn(worker.run(rx, stop.clone(), exit_tx));
    PartitionHandle {
        records: tx,
        shared,
        stop,
        exited: exit_rx,
        paused: false,
        stored: -1,
    }
}

/// Gives a global slot back when dropped.
struct SlotGuard(Option<Arc<Limit>>);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        if let Some(l) = self.0.take() {
            l.release(1);
        }
    }
}

/// Stops the dispatcher when a partition worker unwinds. The worker runs in
/// a detached task whose panic nobody would see: its partition would stall
/// while everything else ran on.
struct StopIfUnwinding {
    fatal: Arc<FatalSlot>,
    topic: Arc<str>,
    partition: i32,
}

impl Drop for StopIfUnwinding {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.fatal.report(Error::Runtime(format!(
                "the worker of partition {}[{}] panicked; see the log. Nothing after its last finished record was committed",
                self.topic, self.partition
            )));
        }
    }
}

type Running = FuturesUnordered<BoxFuture<'static, (Message, Finish)>>;

struct Worker {
    topic: Arc<str>,
    partition: i32,
    cx: WorkerContext,
    shared: Arc<PartitionShared>,
    tracker: OffsetTracker,
    /// Which keys (or the whole partition) have a record ready or running,
    /// and the records waiting behind it.
    lanes: Lanes,
    /// Records free to start once permits allow, in arrival order.
    ready: VecDeque<Message>,
    /// A fatal error was seen: start nothing more.
    halted: bool,
    /// Records that passed the watermark or were dropped since `held` was
    /// last updated.
    released: usize,
    /// Global slots this worker holds and is not using: taken and given
    /// back in small batches, so the shared counter is not touched per
    /// record. Given back whenever the worker waits.
    spare: usize,
}

impl Worker {
    /// Tracks the records of a batch and starts those that may start: a
    /// record whose lane is free and for which a slot is free runs at once.
    fn enqueue(&mut self, batch: Vec<Message>, running: &mut Running) {
        for msg in batch {
            if !self.tracker.track(msg.offset()) {
                self.released += 1;
                continue;
            }
            let Some(msg) = self.lanes.admit(msg) else {
                continue;
            };
            if !self.halted && self.ready.is_empty() && self.try_slots() {
                self.run_record(msg, running, false);
            } else {
                let id = self.lanes.id(&msg);
                self.lanes.open(id);
                self.ready.push_back(msg);
            }
        }
    }

    /// Takes an in-flight slot from the global cap and the handler's cap.
    fn try_slots(&mut self) -> bool {
        if self.spare == 0 {
            match self.cx.global.try_acquire_up_to(self.cx.global.batch()) {
                0 => return false,
                n => self.spare = n,
            }
        }
        if let Some(h) = &self.cx.handler.concurrency {
            if !h.try_acquire() {
                return false;
            }
        }
        self.spare -= 1;
        true
    }

    fn wait_slots(&self) -> BoxFuture<'static, ()> {
        let global = self.cx.global.clone();
        let handler = self.cx.handler.concurrency.clone();
        Box::pin(async move {
            global.acquire().await;
            if let Some(h) = handler {
                // Dropped while waiting for the handler's slot: give the
                // global one back.
                let mut guard = SlotGuard(Some(global));
                h.acquire().await;
                guard.0 = None;
            }
        })
    }

    fn release_slots(&mut self, n: usize) {
        self.spare += n;
        let keep = self.cx.global.batch();
        if self.spare > keep {
            self.cx.global.release(self.spare - keep);
            self.spare = keep;
        }
        if let Some(h) = &self.cx.handler.concurrency {
            h.release(n);
        }
    }

    /// Gives every spare global slot back, before waiting.
    fn release_spare(&mut self) {
        self.cx.global.release(std::mem::take(&mut self.spare));
    }

    /// Starts the next ready record (its lane is open). The caller holds a
    /// slot for it, which `complete` gives back.
    fn start(&mut self, running: &mut Running) {
        match self.ready.pop_front() {
            Some(msg) => self.run_record(msg, running, true),
            None => self.release_slots(1),
        }
    }

    /// Runs a record holding a slot. Its future is polled once right away:
    /// a handler that finishes without waiting (the common case for fast
    /// handlers) completes here, without a trip through the scheduler and
    /// without ever opening its lane.
    fn run_record(&mut self, msg: Message, running: &mut Running, lane_open: bool) {
        let first = self.cx.handler.start(&msg);
        if let FirstAttempt::Handled = first {
            // The fast path: no lane was needed, no task, no allocation.
            self.cx.handler.handled(&msg, 1);
            self.complete(msg, Finish::Done, lane_open);
            return;
        }
        let lane = if lane_open {
            LaneId::None
        } else {
            self.lanes.id(&msg)
        };
        let handler = self.cx.handler.clone();
        let mut record: BoxFuture<'static, (Message, Finish)> = Box::pin(async move {
            let finish = handler.process(&msg, first).await;
            (msg, finish)
        });
        match (&mut record).now_or_never() {
            Some((msg, finish)) => {
                if !lane_open && matches!(finish, Finish::Fatal(_)) {
                    self.lanes.open(lane);
                    self.complete(msg, finish, true);
                } else {
                    self.complete(msg, finish, lane_open);
                }
            }
            None => {
                self.lanes.open(lane);
                running.push(record);
            }
        }
    }

    /// A record finished; `lane_open` says whether its lane was opened.
    fn complete(&mut self, msg: Message, finish: Finish, lane_open: bool) {
        self.release_slots(1);
        match finish {
            Finish::Done => {
                let before = self.tracker.outstanding();
                if let Some(next) = self.tracker.finish(msg.offset()) {
                    self.shared.committable.store(next, AtomicOrdering::Release);
                }
                self.released += before - self.tracker.outstanding();
                if lane_open {
                    if let Some(next) = self.lanes.release(&msg) {
                        self.ready.push_back(next);
                    }
                }
            }
            Finish::Fatal(error) => {
                // The record stays unfinished, so the watermark stays below
                // it, and its lane stays blocked. It also stays counted as
                // held: the partition never looks idle, so the poll loop
                // never commits the consumer's position past it.
                self.halted = true;
                self.cx.fatal.report(Error::Fatal(Box::new(FatalError {
                    handler: self.cx.handler.name.to_string(),
                    topic: msg.topic().to_owned(),
                    partition: msg.partition(),
                    offset: msg.offset(),
                    key: KeyDisplay(msg.key()).to_string(),
                    error,
                })));
            }
        }
    }

    /// Drops every record not yet started; they stay unfinished in the
    /// tracker, so nothing after them is committed.
    fn drop_queued(&mut self) {
        let dropped = self.ready.len() + self.lanes.clear();
        self.ready.clear();
        self.released += dropped;
    }

    async fn run(
        mut self,
        mut records: mpsc::UnboundedReceiver<Vec<Message>>,
        stop: CancellationToken,
        _exited: std::sync::mpsc::Sender<()>,
    ) {
        let _stop_if_unwinding = StopIfUnwinding {
            fatal: self.cx.fatal.clone(),
            topic: self.topic.clone(),
            partition: self.partition,
        };
        let mut running: Running = FuturesUnordered::new();
        let mut waiting: Option<BoxFuture<'static, ()>> = None;
        let mut stopping = false;
        let drain = tokio::time::sleep(Duration::MAX);
        tokio::pin!(drain);
        loop {
            while !self.halted && !stopping && waiting.is_none() && !self.ready.is_empty() {
                if self.try_slots() {
                    self.start(&mut running);
                } else {
                    waiting = Some(self.wait_slots());
                }
            }
            if self.released > 0 {
                self.shared
                    .held
                    .fetch_sub(self.released, AtomicOrdering::Release);
                self.released = 0;
            }
            if stopping && running.is_empty() {
                break;
            }
            self.release_spare();
            tokio::select! {
                biased;
                () = stop.cancelled(), if !stopping => {
                    stopping = true;
                    waiting = None;
                    self.drop_queued();
                    drain.as_mut().reset(tokio::time::Instant::now() + self.cx.drain_timeout);
                }
                Some((msg, finish)) = running.next(), if !running.is_empty() => self.complete(msg, finish, true),
                () = async { match waiting.as_mut() { Some(w) => w.await, None => std::future::pending().await } }, if waiting.is_some() => {
                    waiting = None;
                    if !self.halted && !stopping {
                        self.start(&mut running);
                    } else {
                        self.release_slots(1);
                    }
                }
                batch = records.recv(), if !stopping => match batch {
                    Some(batch) => self.enqueue(batch, &mut running),
                    None => {
                        stopping = true;
                        self.drop_queued();
                        drain.as_mut().reset(tokio::time::Instant::now() + self.cx.drain_timeout);
                    }
                },
                () = &mut drain, if stopping => {
                    tracing::warn!(topic = &*self.topic, partition = self.partition, abandoned = running.len(), drain_timeout = ?self.cx.drain_timeout, "drain timed out; the unfinished records are not committed and will be delivered again");
                    break;
                }
            }
        }
        // Records abandoned after the drain timeout give their slots back,
        // and so do the spare ones: the global cap must not shrink with
        // every rebalance.
        self.release_slots(running.len());
        drop(running);
        self.release_spare();
        tracing::debug!(
            topic = &*self.topic,
            partition = self.partition,
            committable = self.tracker.committable(),
            "partition worker stopped"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dead_letter::{DeadLetter, DeadLetterSink, SinkError};
    use crate::{Handler, HandlerFuture, HandlerSpec, Policy};

    /// Finishes records at once, except those with key "slow", which wait
    /// (almost) forever.
    struct Mixed;
    impl Handler for Mixed {
        fn call(&self, msg: Message) -> HandlerFuture<'static> {
            Box::pin(async move {
                if msg.key() == Some(&b"slow"[..]) {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                Ok(())
            })
        }
    }
    static MIXED: Mixed = Mixed;

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
                    return Err(crate::HandlerError::new(std::fmt::Error));
                }
                Ok(())
            })
        }
    }
    static FAILS_BAD: FailsBad = FailsBad;

    struct PanickingClassifier;
    impl crate::Classify for PanickingClassifier {
        fn classify(&self, _: &crate::HandlerError) -> Option<crate::Classification> {
            panic!("a classifier bug")
        }
    }

    fn worker_context(global: Arc<Limit>) -> WorkerContext {
        context_for(global, &MIXED, Policy::DEFAULT.concurrency(4))
    }

    fn context_for(
        global: Arc<Limit>,
        handler: &'static dyn Handler,
        policy: Policy,
    ) -> WorkerContext {
        let spec = HandlerSpec {
            name: "mixed",
            module_path: "tests",
            file: file!(),
            line: line!(),
            topics: &["t"],
            group: None,
            policy,
            handler,
        };
        WorkerContext {
            handler: Arc::new(HandlerRuntime {
                spec,
                name: Arc::from("tests::mixed"),
                concurrency: policy.concurrency_limit().map(|n| Arc::new(Limit::new(n))),
                listeners: Arc::from(Vec::new()),
                dead_letters: Arc::new(NoSink),
                group: Arc::from("g"),
            }),
            global,
            fatal: Arc::new(FatalSlot::default()),
            drain_timeout: Duration::from_millis(50),
        }
    }

    /// Sends a batch to a worker the way the poll thread does.
    fn hand_over(handle: &PartitionHandle, batch: Vec<Message>) {
        handle
            .shared
            .held
            .fetch_add(batch.len(), AtomicOrdering::Relaxed);
        handle.records.send(batch).expect("worker is running");
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stopped_worker_gives_every_slot_back() {
        let global = Arc::new(Limit::new(100_000));
        let cx = worker_context(global.clone());
        let handler_limit = cx.handler.concurrency.clone().expect("set");
        let handle = spawn(&tokio::runtime::Handle::current(), Arc::from("t"), 0, cx);
        let mut batch: Vec<Message> = (0..500)
            .map(|o| Message::new("t", 0, o).with_key(format!("k{}", o % 7)))
            .collect();
        batch.push(Message::new("t", 0, 500).with_key("slow"));
        batch.push(Message::new("t", 0, 501).with_key("slow"));
        hand_over(&handle, batch);
        wait_for("everything but the slow key to finish", || {
            handle.shared.committable.load(AtomicOrdering::Acquire) == 500
        })
        .await;
        assert!(global.used() >= 1, "the slow record holds a slot");
        handle.stop.cancel();
        let exited = tokio::task::spawn_blocking(move || {
            handle.exited.recv_timeout(Duration::from_secs(30))
        })
        .await
        .expect("join");
        assert!(
            matches!(exited, Err(std::sync::mpsc::RecvTimeoutError::Disconnected)),
            "the worker exited"
        );
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
            Policy::DEFAULT.classifier(&CLASSIFIER),
        );
        let fatal = cx.fatal.clone();
        let handle = spawn(&tokio::runtime::Handle::current(), Arc::from("t"), 0, cx);
        let batch = vec![
            Message::new("t", 0, 0).with_key("a"),
            Message::new("t", 0, 1).with_key("bad"),
            Message::new("t", 0, 2).with_key("b"),
        ];
        hand_over(&handle, batch);
        wait_for("a fatal error", || fatal.shutdown.is_cancelled()).await;
        let error = fatal.error.lock().expect("lock").take().expect("an error");
        match error {
            Error::Fatal(f) => {
                assert_eq!((f.partition, f.offset), (0, 1));
                assert!(f.error.is::<crate::HandlerPanic>(), "{f:?}");
            }
            other => panic!("expected a fatal error, got {other:?}"),
        }
        // Offset 0 finished; the record that panicked holds the watermark.
        assert_eq!(handle.shared.committable.load(AtomicOrdering::Acquire), 1);
        handle.stop.cancel();
    }
}
