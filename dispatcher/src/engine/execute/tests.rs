//! One record's life against scripted handlers and sinks: retries,
//! backoff, classification, panics, timeouts and dead letters.

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
    let rt = Executor::for_test(spec, "tests::scripted", sink);
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
