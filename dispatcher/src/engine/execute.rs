//! One record through its handler: attempts, timeout, panic capture,
//! classification and backoff. What happens after (dead letter, events) is
//! in [`outcome`](super::outcome).

use crate::dead_letter::retry::{History, RetryWriter};
use crate::dead_letter::DeadLetterSink;
use crate::engine::limit::Limit;
use crate::event::{EventListener, Outcome};
use crate::handler::{HandlerError, HandlerFuture, HandlerSpec, HandlerTimeout};
use crate::message::{KeyDisplay, Message};
use crate::policy::Classification;
use crate::state::{States, CURRENT};
use crate::telemetry::metrics::RecordMetrics;
use crate::telemetry::trace::record_span;
use futures::FutureExt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span};

/// Runs records through one handler with its policy, and hands the ones
/// that fail for good to the dead-letter sink.
#[derive(Clone)]
pub(crate) struct Executor {
    pub(crate) spec: HandlerSpec,
    /// `module::name`, shared by every record's events.
    pub(crate) name: Arc<str>,
    /// The handler's own cap on records in flight.
    pub(crate) concurrency: Option<Arc<Limit>>,
    pub(crate) listeners: Arc<[EventListener]>,
    pub(crate) dead_letters: Arc<dyn DeadLetterSink>,
    pub(crate) group: Arc<str>,
    /// The application's states, for a handler that takes `State<T>`
    /// (`None` for the others: they start without the task-local).
    pub(crate) states: Option<Arc<States>>,
    /// The series of this handler on this executor's topic.
    pub(crate) metrics: RecordMetrics,
    /// The retry level of this executor's topic: 0 for the handler's own
    /// topic, 1 for its first retry topic, ...
    pub(crate) retry_level: usize,
    /// The handler's own topic this executor's topic serves (itself, or
    /// the topic whose retry topic it is).
    pub(crate) source_topic: Arc<str>,
    /// Writes to retry topics, when the handler has them.
    pub(crate) retry_writer: Option<Arc<RetryWriter>>,
}

/// The first attempt of a record, as far as [`Executor::start`] got.
pub(crate) enum FirstAttempt {
    /// It succeeded.
    Handled,
    /// It failed (or panicked), in this span.
    Failed(HandlerError, Span),
    /// It is waiting on something; finish it in a task, in this span. It
    /// started at this instant.
    Running(HandlerFuture<'static>, Span, quanta::Instant),
}

/// How a record was done with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Done {
    /// Its handler succeeded.
    Handled,
    /// It went to the dead-letter topic.
    DeadLettered,
    /// It went to a retry topic.
    RetryTopic,
}

/// How a record ended.
pub(crate) enum Finish {
    /// Done with: the offset may be committed.
    Done(Done),
    /// Fatal: the offset must not be committed and the consumer stops.
    Fatal(HandlerError),
    /// Its partition stopped while it waited to retry: it is not finished,
    /// its offset is not committed, and it is delivered again.
    Abandoned,
}

impl Executor {
    /// Calls the handler for a new attempt. A hand-written [`Handler`]
    /// may panic in `call` itself, before any future exists: that panic is
    /// the attempt's error, like a panic inside the future.
    ///
    /// [`Handler`]: crate::handler::Handler
    fn call(&self, msg: &Message) -> Result<HandlerFuture<'static>, HandlerError> {
        std::panic::catch_unwind(AssertUnwindSafe(|| self.spec.handler.call(msg.clone())))
            .map_err(HandlerError::from_panic)
    }

    /// Finishes an attempt already started at `started`, in its span:
    /// within the timeout, with a panic turned into an error.
    async fn finish_attempt(
        &self,
        call: HandlerFuture<'static>,
        span: &Span,
        started: quanta::Instant,
    ) -> Result<(), HandlerError> {
        let result = self.within_limits(call).instrument(span.clone()).await;
        self.metrics
            .duration
            .record(started.elapsed().as_secs_f64());
        result
    }

    /// Runs an attempt within the timeout, with a panic turned into an
    /// error.
    async fn within_limits(&self, call: HandlerFuture<'static>) -> Result<(), HandlerError> {
        let call = AssertUnwindSafe(call).catch_unwind();
        let result = match self.spec.policy.timeout() {
            Some(limit) => match tokio::time::timeout(limit, call).await {
                Ok(r) => r,
                Err(_) => return Err(HandlerError::new(HandlerTimeout { limit })),
            },
            None => call.await,
        };
        result.unwrap_or_else(|panic| Err(HandlerError::from_panic(panic)))
    }

    /// Starts the first attempt and polls it once, without a waker: most
    /// handlers finish (or fail) right away, and then no task or allocation
    /// is needed for the record beyond the handler's own future.
    pub(crate) fn start(&self, msg: &Message) -> FirstAttempt {
        let span = record_span(msg, &self.name, &self.group, 1);
        let started = quanta::Instant::now();
        let polled = span.in_scope(|| {
            let mut call = self.call(msg)?;
            let mut cx = Context::from_waker(futures::task::noop_waker_ref());
            // The macro's code extracts the arguments, `State<T>` among
            // them, in this first poll: the states are in scope for it.
            let first_poll = || match &self.states {
                Some(states) => CURRENT.sync_scope(states.clone(), || call.as_mut().poll(&mut cx)),
                None => call.as_mut().poll(&mut cx),
            };
            match std::panic::catch_unwind(AssertUnwindSafe(first_poll)) {
                Ok(Poll::Ready(Ok(()))) => Ok(None),
                Ok(Poll::Ready(Err(e))) => Err(e),
                Err(panic) => Err(HandlerError::from_panic(panic)),
                Ok(Poll::Pending) => Ok(Some(call)),
            }
        });
        match polled {
            Ok(Some(call)) => FirstAttempt::Running(call, span, started),
            done => {
                self.metrics
                    .duration
                    .record(started.elapsed().as_secs_f64());
                match done {
                    Err(e) => FirstAttempt::Failed(e, span),
                    _ => FirstAttempt::Handled,
                }
            }
        }
    }

    /// Runs `msg` through the policy until it is handled, dead-lettered,
    /// fatal, or abandoned because `stop` (its partition's stop signal)
    /// fired while it waited to retry. `first` is how the first attempt went
    /// so far (see [`start`](Self::start)).
    ///
    /// Only the first attempt's state lives in this future: a record that
    /// fails goes on in a future of its own, so the many records in flight
    /// at once stay small (and their memory stays in cache).
    pub(crate) async fn process(
        &self,
        msg: &Message,
        first: FirstAttempt,
        stop: &CancellationToken,
    ) -> Finish {
        let (result, span) = match first {
            FirstAttempt::Handled => (Ok(()), Span::none()),
            FirstAttempt::Failed(e, span) => (Err(e), span),
            FirstAttempt::Running(call, span, started) => {
                (self.finish_attempt(call, &span, started).await, span)
            }
        };
        match result {
            Ok(()) => {
                self.handled(msg, 1);
                Finish::Done(Done::Handled)
            }
            Err(error) => Box::pin(self.after_failure(msg, error, span, stop)).await,
        }
    }

    /// The rest of a record's life once an attempt (in `span`) failed:
    /// classification, retries after backoff, the dead letter (written in
    /// the span of the last attempt, so it carries its trace context).
    async fn after_failure(
        &self,
        msg: &Message,
        mut error: HandlerError,
        mut span: Span,
        stop: &CancellationToken,
    ) -> Finish {
        let policy = &self.spec.policy;
        // Attempts and the first failure of earlier reads, from a retry
        // topic's headers.
        let history = History::of(msg, self.retry_level);
        let mut attempt = 1u32;
        let mut first_failure = history.first_failure;
        loop {
            let now = SystemTime::now();
            let first = *first_failure.get_or_insert(now);
            let total = history.attempts.saturating_add(attempt);
            // A custom classifier is user code: if it panics, the record's
            // fate is unknown, so stop with it uncommitted rather than guess.
            let class = match std::panic::catch_unwind(AssertUnwindSafe(|| policy.classify(&error)))
            {
                Ok(class) => class,
                Err(panic) => {
                    let panic = HandlerError::from_panic(panic);
                    tracing::error!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), key = %KeyDisplay(msg.key()), handler = &*self.name, error = %error.chain_message(), panic = %panic, "the error classifier panicked: stopping the consumer; this record is not committed");
                    return Finish::Fatal(panic);
                }
            };
            let key = KeyDisplay(msg.key());
            match class {
                Classification::Fatal => {
                    tracing::error!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), key = %key, handler = &*self.name, attempt, error = %error.chain_message(), "fatal error: stopping the consumer; this record is not committed and will be delivered again after a restart");
                    self.emit(
                        msg,
                        Outcome::Fatal {
                            attempts: attempt,
                            error: error.chain_message(),
                        },
                    );
                    return Finish::Fatal(error);
                }
                Classification::Retry => {
                    let Some(delay) = policy.retry_schedule().delay_before(attempt) else {
                        if let Some(finish) = self
                            .to_retry_topic(msg, &history, &error, total, first)
                            .instrument(span.clone())
                            .await
                        {
                            return finish;
                        }
                        return self
                            .dead_letter(msg, &error, "retries-exhausted", total, first, now)
                            .instrument(span)
                            .await;
                    };
                    tracing::warn!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), key = %key, handler = &*self.name, attempt, max_attempts = policy.max_attempts(), retry_in = ?delay, error = %error.chain_message(), "retryable error; retrying after backoff");
                    self.metrics.retries.increment(1);
                    self.emit(
                        msg,
                        Outcome::Retrying {
                            attempt,
                            delay,
                            error: error.chain_message(),
                        },
                    );
                    // A revoke or shutdown must not wait out a backoff: the
                    // record is abandoned, uncommitted, and delivered again.
                    tokio::select! {
                        biased;
                        () = stop.cancelled() => {
                            tracing::debug!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), key = %key, handler = &*self.name, attempt, "partition stopping: the record waiting to retry is abandoned and will be delivered again");
                            return Finish::Abandoned;
                        }
                        () = tokio::time::sleep(delay) => {}
                    }
                    attempt += 1;
                    span = record_span(msg, &self.name, &self.group, attempt);
                    let started = quanta::Instant::now();
                    let result = match (span.in_scope(|| self.call(msg)), &self.states) {
                        (Ok(call), Some(states)) => {
                            CURRENT
                                .scope(states.clone(), self.finish_attempt(call, &span, started))
                                .await
                        }
                        (Ok(call), None) => self.finish_attempt(call, &span, started).await,
                        (Err(e), _) => Err(e),
                    };
                    match result {
                        Ok(()) => {
                            self.handled(msg, attempt);
                            return Finish::Done(Done::Handled);
                        }
                        Err(e) => error = e,
                    }
                }
                Classification::DeadLetter => {
                    let reason = if error.is_decode_error() {
                        "undecodable"
                    } else {
                        "not-retryable"
                    };
                    return self
                        .dead_letter(msg, &error, reason, total, first, now)
                        .instrument(span)
                        .await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dead_letter::{DeadLetter, DeadLetterSink, DeadLetterWriteFailed, SinkError};
    use crate::event::RecordEvent;
    use crate::handler::Handler;
    use crate::policy::{Backoff, ErrorMatcher, Policy};
    use futures::future::BoxFuture;
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::time::Duration;
    use tokio::time::Instant;

    #[derive(Debug, thiserror::Error)]
    #[error("configuration is broken")]
    struct ConfigError;

    #[derive(Clone)]
    enum Step {
        Ok,
        Io,
        Other,
        Fatal,
        Panic,
        PanicInCall,
        Hang,
    }

    struct Scripted {
        steps: Mutex<VecDeque<Step>>,
        calls: Mutex<Vec<Instant>>,
    }

    impl Handler for Scripted {
        fn call(&self, _msg: Message) -> HandlerFuture<'static> {
            self.calls.lock().expect("lock").push(Instant::now());
            let step = self
                .steps
                .lock()
                .expect("lock")
                .pop_front()
                .unwrap_or(Step::Ok);
            if let Step::PanicInCall = step {
                panic!("a hand-written handler panicked before returning its future");
            }
            Box::pin(async move {
                match step {
                    Step::Ok => Ok(()),
                    Step::Io => Err(HandlerError::new(std::io::Error::other("connection reset"))),
                    Step::Other => Err(HandlerError::new(std::fmt::Error)),
                    Step::Fatal => Err(HandlerError::from_anyhow(
                        anyhow::Error::new(ConfigError).context("loading rules"),
                    )),
                    Step::Panic => panic!("boom"),
                    Step::PanicInCall => unreachable!("panicked in call"),
                    Step::Hang => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        Ok(())
                    }
                }
            })
        }
    }

    #[derive(Default)]
    struct Sink {
        letters: Mutex<Vec<(String, &'static str, &'static str, u32)>>,
        fail: bool,
        panic: bool,
    }

    impl DeadLetterSink for Sink {
        fn publish<'a>(
            &'a self,
            _record: &'a Message,
            l: &'a DeadLetter<'a>,
        ) -> BoxFuture<'a, Result<(), SinkError>> {
            Box::pin(async move {
                if self.fail {
                    return Err("broker unavailable".into());
                }
                if self.panic {
                    panic!("a sink bug");
                }
                self.letters.lock().expect("lock").push((
                    l.topic.to_owned(),
                    l.reason,
                    l.error_kind,
                    l.attempts,
                ));
                Ok(())
            })
        }
    }

    static FATAL: [ErrorMatcher; 1] = [ErrorMatcher::of::<ConfigError>("ConfigError")];

    fn runtime(steps: Vec<Step>, policy: Policy, sink: Arc<Sink>) -> (Executor, &'static Scripted) {
        let handler: &'static Scripted = Box::leak(Box::new(Scripted {
            steps: Mutex::new(steps.into()),
            calls: Mutex::new(Vec::new()),
        }));
        let spec = HandlerSpec::new("scripted", &["t"], handler)
            .declared_at("tests", file!(), line!())
            .with_policy(policy.with_fatal(&FATAL));
        let rt = Executor {
            spec,
            name: Arc::from("tests::scripted"),
            concurrency: None,
            listeners: Arc::from(Vec::new()),
            dead_letters: sink,
            group: Arc::from("g"),
            states: None,
            metrics: crate::telemetry::metrics::RecordMetrics::none(),
            retry_level: 0,
            source_topic: Arc::from("t"),
            retry_writer: None,
        };
        (rt, handler)
    }

    fn gaps(h: &Scripted) -> Vec<Duration> {
        let calls = h.calls.lock().expect("lock");
        calls.windows(2).map(|w| w[1] - w[0]).collect()
    }

    fn msg() -> Message {
        Message::new("t", 0, 7).with_payload("x")
    }

    /// Runs a record the way a partition worker does.
    async fn run(rt: &Executor) -> Finish {
        let m = msg();
        let first = rt.start(&m);
        rt.process(&m, first, &CancellationToken::new()).await
    }

    #[tokio::test(start_paused = true)]
    async fn retries_with_fixed_backoff_then_succeeds() {
        let sink = Arc::new(Sink::default());
        let policy = Policy::DEFAULT
            .with_max_attempts(3)
            .with_backoff(Backoff::Fixed(Duration::from_millis(100)));
        let (rt, h) = runtime(vec![Step::Io, Step::Io, Step::Ok], policy, sink.clone());
        assert!(matches!(run(&rt).await, Finish::Done(_)));
        assert_eq!(gaps(h), vec![Duration::from_millis(100); 2]);
        assert!(sink.letters.lock().expect("lock").is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn exhausted_retries_go_to_the_dead_letter_topic_with_exponential_delays() {
        let sink = Arc::new(Sink::default());
        let backoff = Backoff::Exponential {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(300),
            factor: 2.0,
            jitter: 0.0,
        };
        let (rt, h) = runtime(
            vec![Step::Io; 4],
            Policy::DEFAULT.with_max_attempts(4).with_backoff(backoff),
            sink.clone(),
        );
        assert!(matches!(run(&rt).await, Finish::Done(_)));
        assert_eq!(
            gaps(h),
            vec![
                Duration::from_millis(100),
                Duration::from_millis(200),
                Duration::from_millis(300)
            ]
        );
        assert_eq!(
            *sink.letters.lock().expect("lock"),
            vec![("t.DLT".to_owned(), "retries-exhausted", "io", 4)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn non_retryable_errors_are_dead_lettered_at_once() {
        let sink = Arc::new(Sink::default());
        let (rt, h) = runtime(vec![Step::Other], Policy::DEFAULT, sink.clone());
        assert!(matches!(run(&rt).await, Finish::Done(_)));
        assert_eq!(h.calls.lock().expect("lock").len(), 1);
        assert_eq!(
            *sink.letters.lock().expect("lock"),
            vec![("t.DLT".to_owned(), "not-retryable", "handler", 1)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn fatal_errors_stop_without_dead_letter() {
        let sink = Arc::new(Sink::default());
        let (rt, _) = runtime(vec![Step::Fatal], Policy::DEFAULT, sink.clone());
        match run(&rt).await {
            Finish::Fatal(e) => assert!(e.is::<ConfigError>(), "{e:?}"),
            _ => panic!("expected fatal"),
        }
        assert!(sink.letters.lock().expect("lock").is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn panics_are_caught_and_dead_lettered() {
        let sink = Arc::new(Sink::default());
        let (rt, _) = runtime(vec![Step::Panic], Policy::DEFAULT, sink.clone());
        assert!(matches!(run(&rt).await, Finish::Done(_)));
        assert_eq!(
            *sink.letters.lock().expect("lock"),
            vec![("t.DLT".to_owned(), "not-retryable", "panic", 1)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_panic_in_call_is_the_attempts_error_also_on_retry() {
        let sink = Arc::new(Sink::default());
        let policy = Policy::DEFAULT.with_backoff(Backoff::Fixed(Duration::from_millis(10)));
        // First attempt: panics inside `call`; it is not retryable.
        let (rt, _) = runtime(vec![Step::PanicInCall], policy, sink.clone());
        assert!(matches!(run(&rt).await, Finish::Done(_)));
        // A retry whose `call` panics: same outcome, after two attempts.
        let (rt, h) = runtime(vec![Step::Io, Step::PanicInCall], policy, sink.clone());
        assert!(matches!(run(&rt).await, Finish::Done(_)));
        assert_eq!(h.calls.lock().expect("lock").len(), 2);
        assert_eq!(
            *sink.letters.lock().expect("lock"),
            vec![
                ("t.DLT".to_owned(), "not-retryable", "panic", 1),
                ("t.DLT".to_owned(), "not-retryable", "panic", 2)
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_listener_does_not_change_the_outcome() {
        let sink = Arc::new(Sink::default());
        let (mut rt, _) = runtime(vec![Step::Io, Step::Ok], Policy::DEFAULT, sink.clone());
        let listener: EventListener = Arc::new(|_: &RecordEvent| panic!("listener bug"));
        rt.listeners = Arc::from(vec![listener]);
        assert!(matches!(run(&rt).await, Finish::Done(_)));
        assert!(sink.letters.lock().expect("lock").is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn timeouts_retry_by_default() {
        let sink = Arc::new(Sink::default());
        let policy = Policy::DEFAULT
            .with_timeout(Duration::from_secs(1))
            .with_backoff(Backoff::Fixed(Duration::from_millis(10)));
        let (rt, h) = runtime(vec![Step::Hang, Step::Ok], policy, sink.clone());
        assert!(matches!(run(&rt).await, Finish::Done(_)));
        assert_eq!(gaps(h), vec![Duration::from_millis(1010)]);
        assert!(sink.letters.lock().expect("lock").is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_dead_letter_that_cannot_be_written_is_fatal() {
        let sink = Arc::new(Sink {
            fail: true,
            ..Sink::default()
        });
        let (rt, _) = runtime(vec![Step::Other], Policy::DEFAULT, sink);
        match run(&rt).await {
            Finish::Fatal(e) => assert!(e.is::<DeadLetterWriteFailed>(), "{e:?}"),
            _ => panic!("expected fatal"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_dead_letter_sink_is_a_failed_write() {
        let sink = Arc::new(Sink {
            panic: true,
            ..Sink::default()
        });
        let (rt, _) = runtime(vec![Step::Other], Policy::DEFAULT, sink);
        match run(&rt).await {
            Finish::Fatal(e) => {
                assert!(e.is::<DeadLetterWriteFailed>(), "{e:?}");
                assert!(
                    e.chain_message().contains("sink panicked: a sink bug"),
                    "{e:?}"
                );
            }
            _ => panic!("expected fatal"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_backoff_ends_when_its_partition_stops() {
        let sink = Arc::new(Sink::default());
        let policy = Policy::DEFAULT.with_backoff(Backoff::Fixed(Duration::from_secs(3600)));
        let (rt, h) = runtime(vec![Step::Io, Step::Ok], policy, sink.clone());
        let stop = CancellationToken::new();
        let m = msg();
        let first = rt.start(&m);
        let started = Instant::now();
        let stopper = {
            let stop = stop.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(5)).await;
                stop.cancel();
            })
        };
        let finish = rt.process(&m, first, &stop).await;
        assert!(
            matches!(finish, Finish::Abandoned),
            "abandoned, not handled"
        );
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(5),
            "ended by the stop, not the hour-long backoff"
        );
        assert_eq!(h.calls.lock().expect("lock").len(), 1, "no second attempt");
        assert!(
            sink.letters.lock().expect("lock").is_empty(),
            "not dead-lettered"
        );
        stopper.await.expect("stopper");
    }
}
