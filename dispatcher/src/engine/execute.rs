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
impl Executor {
    /// An executor of `spec` for the engine's unit tests: named `name`, in
    /// group `g` on topic `t`, without listeners, states, series, a
    /// concurrency cap or retry topics.
    pub(crate) fn for_test(
        spec: HandlerSpec,
        name: &str,
        dead_letters: Arc<dyn DeadLetterSink>,
    ) -> Self {
        Executor {
            spec,
            name: Arc::from(name),
            concurrency: None,
            listeners: Arc::from(Vec::new()),
            dead_letters,
            group: Arc::from("g"),
            states: None,
            metrics: RecordMetrics::none(),
            retry_level: 0,
            source_topic: Arc::from("t"),
            retry_writer: None,
        }
    }
}

#[cfg(test)]
mod tests;
