//! The worker of one assigned partition: queues its records by ordering
//! lane, runs them within the in-flight caps, and publishes the watermark.

use crate::execute::{Finish, HandlerRuntime};
use crate::message::KeyDisplay;
use crate::policy::Ordering;
use crate::tracker::OffsetTracker;
use crate::{Error, Message};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// State a partition's worker shares with the poll thread.
#[derive(Debug)]
pub(crate) struct PartitionShared {
    /// Next offset to commit; -1 until a record finished.
    pub(crate) committable: AtomicI64,
    /// Records sent to the worker and not yet finished or dropped.
    pub(crate) buffered: AtomicUsize,
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
    pub(crate) global: Arc<Semaphore>,
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
        buffered: AtomicUsize::new(0),
    });
    let stop = CancellationToken::new();
    let worker = Worker {
        topic,
        partition,
        ordering: cx.handler.spec.policy.ordering_mode(),
        cx,
        shared: shared.clone(),
        tracker: OffsetTracker::default(),
        lanes: HashMap::new(),
        ready: VecDeque::new(),
        halted: false,
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

struct Permits {
    _global: OwnedSemaphorePermit,
    _handler: Option<OwnedSemaphorePermit>,
}

type Running = FuturesUnordered<BoxFuture<'static, (Message, Finish)>>;

struct Worker {
    topic: Arc<str>,
    partition: i32,
    ordering: Ordering,
    cx: WorkerContext,
    shared: Arc<PartitionShared>,
    tracker: OffsetTracker,
    /// Per ordering lane (key, or one lane for the partition), the records
    /// waiting behind the one that is ready or running. A lane exists while
    /// one of its records is ready or running.
    lanes: HashMap<Option<Bytes>, VecDeque<Message>>,
    /// Records free to start once permits allow, in arrival order.
    ready: VecDeque<Message>,
    /// A fatal error was seen: start nothing more.
    halted: bool,
}

impl Worker {
    fn lane_of(&self, msg: &Message) -> Option<Option<Bytes>> {
        match self.ordering {
            Ordering::Key => Some(msg.key_bytes().cloned()),
            Ordering::Partition => Some(None),
            Ordering::Unordered => None,
        }
    }

    fn enqueue(&mut self, batch: Vec<Message>) {
        for msg in batch {
            if !self.tracker.track(msg.offset()) {
                self.shared.buffered.fetch_sub(1, AtomicOrdering::Relaxed);
                continue;
            }
            match self.lane_of(&msg) {
                None => self.ready.push_back(msg),
                Some(lane) => match self.lanes.get_mut(&lane) {
                    Some(waiting) => waiting.push_back(msg),
                    None => {
                        self.lanes.insert(lane, VecDeque::new());
                        self.ready.push_back(msg);
                    }
                },
            }
        }
    }

    fn try_permits(&self) -> Option<Permits> {
        let global = self.cx.global.clone().try_acquire_owned().ok()?;
        let handler = match &self.cx.handler.concurrency {
            Some(s) => Some(s.clone().try_acquire_owned().ok()?),
            None => None,
        };
        Some(Permits {
            _global: global,
            _handler: handler,
        })
    }

    fn wait_permits(&self) -> BoxFuture<'static, Permits> {
        let global = self.cx.global.clone();
        let handler = self.cx.handler.concurrency.clone();
        Box::pin(async move {
            let global = global
                .acquire_owned()
                .await
                .expect("the global semaphore is never closed");
            let handler = match handler {
                Some(s) => Some(
                    s.acquire_owned()
                        .await
                        .expect("handler semaphores are never closed"),
                ),
                None => None,
            };
            Permits {
                _global: global,
                _handler: handler,
            }
        })
    }

    fn start(&mut self, running: &mut Running, permits: Permits) {
        let Some(msg) = self.ready.pop_front() else {
            return;
        };
        let handler = self.cx.handler.clone();
        running.push(Box::pin(async move {
            let finish = handler.process(&msg).await;
            drop(permits);
            (msg, finish)
        }));
    }

    fn complete(&mut self, msg: Message, finish: Finish) {
        self.shared.buffered.fetch_sub(1, AtomicOrdering::Relaxed);
        match finish {
            Finish::Done => {
                if let Some(next) = self.tracker.finish(msg.offset()) {
                    self.shared.committable.store(next, AtomicOrdering::Release);
                }
                if let Some(lane) = self.lane_of(&msg) {
                    match self.lanes.get_mut(&lane).and_then(VecDeque::pop_front) {
                        Some(next) => self.ready.push_back(next),
                        None => {
                            self.lanes.remove(&lane);
                        }
                    }
                }
            }
            Finish::Fatal(error) => {
                // The record stays unfinished, so the watermark stays below
                // it, and its lane stays blocked.
                self.halted = true;
                self.cx.fatal.report(Error::Fatal {
                    handler: self.cx.handler.name.to_string(),
                    topic: msg.topic().to_owned(),
                    partition: msg.partition(),
                    offset: msg.offset(),
                    key: KeyDisplay(msg.key()).to_string(),
                    error,
                });
            }
        }
    }

    /// Drops every record not yet started; they stay unfinished in the
    /// tracker, so nothing after them is committed.
    fn drop_queued(&mut self) {
        let dropped = self.ready.len() + self.lanes.values().map(VecDeque::len).sum::<usize>();
        self.ready.clear();
        self.lanes.clear();
        self.shared
            .buffered
            .fetch_sub(dropped, AtomicOrdering::Relaxed);
    }

    async fn run(
        mut self,
        mut records: mpsc::UnboundedReceiver<Vec<Message>>,
        stop: CancellationToken,
        _exited: std::sync::mpsc::Sender<()>,
    ) {
        let mut running: Running = FuturesUnordered::new();
        let mut waiting: Option<BoxFuture<'static, Permits>> = None;
        let mut stopping = false;
        let drain = tokio::time::sleep(Duration::MAX);
        tokio::pin!(drain);
        loop {
            while !self.halted && !stopping && waiting.is_none() && !self.ready.is_empty() {
                match self.try_permits() {
                    Some(p) => self.start(&mut running, p),
                    None => waiting = Some(self.wait_permits()),
                }
            }
            if stopping && running.is_empty() {
                break;
            }
            tokio::select! {
                biased;
                () = stop.cancelled(), if !stopping => {
                    stopping = true;
                    waiting = None;
                    self.drop_queued();
                    drain.as_mut().reset(tokio::time::Instant::now() + self.cx.drain_timeout);
                }
                Some((msg, finish)) = running.next(), if !running.is_empty() => self.complete(msg, finish),
                permits = async { match waiting.as_mut() { Some(w) => w.await, None => std::future::pending().await } }, if waiting.is_some() => {
                    waiting = None;
                    if !self.halted && !stopping {
                        self.start(&mut running, permits);
                    }
                }
                batch = records.recv(), if !stopping => match batch {
                    Some(batch) => self.enqueue(batch),
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
        tracing::debug!(
            topic = &*self.topic,
            partition = self.partition,
            committable = self.tracker.committable(),
            "partition worker stopped"
        );
    }
}
