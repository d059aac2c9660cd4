//! `State<T>` handler arguments: values given to the builder reach the
//! handler on its first attempt and on its retries, and a handler whose
//! state was not provided stops `build()` naming the handler and the type.

use dispatcher::event::Outcome;
use dispatcher::extract::State;
use dispatcher::testing::TestKit;
use dispatcher::{Error, Message};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

struct Label {
    text: String,
}

/// (offset, label) for every attempt the handler made.
static SEEN: Mutex<Vec<(i64, String)>> = Mutex::new(Vec::new());
/// Whether the record with payload "retry" already failed once.
static FAILED_ONCE: AtomicBool = AtomicBool::new(false);

#[dispatcher::kafka_handler(topic = "it-state", max_attempts = 3, backoff = fixed("10ms"))]
async fn labelled(msg: &Message, label: State<Label>) -> Result<(), std::io::Error> {
    SEEN.lock()
        .expect("seen lock")
        .push((msg.offset(), label.text.clone()));
    if msg.payload() == Some(b"retry".as_slice()) && !FAILED_ONCE.swap(true, Ordering::SeqCst) {
        return Err(std::io::Error::other("fails once"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_get_the_state_on_every_attempt() {
    let kit = TestKit::start(TestKit::builder().topics(["it-state"]).state(Label {
        text: "from the builder".to_owned(),
    }))
    .await
    .expect("the state is provided");
    let (p0, o0) = kit
        .publish("it-state", Some("k"), "plain")
        .await
        .expect("publish");
    let (p1, o1) = kit
        .publish("it-state", Some("k"), "retry")
        .await
        .expect("publish");
    for (p, o) in [(p0, o0), (p1, o1)] {
        let outcome = kit
            .outcome("it-state", p, o, Duration::from_secs(30))
            .await
            .expect("an outcome");
        assert!(matches!(outcome, Outcome::Handled { .. }), "{outcome:?}");
    }
    kit.shutdown().await.expect("clean shutdown");
    let seen = SEEN.lock().expect("seen lock").clone();
    let attempts_of = |o: i64| seen.iter().filter(|(off, _)| *off == o).count();
    assert_eq!(attempts_of(o0), 1, "{seen:?}");
    assert_eq!(attempts_of(o1), 2, "the retried record ran twice: {seen:?}");
    assert!(
        seen.iter().all(|(_, label)| label == "from the builder"),
        "every attempt saw the state: {seen:?}"
    );
}

#[test]
fn a_missing_state_stops_build_naming_the_handler_and_the_type() {
    let err = TestKit::builder()
        .topics(["it-state"])
        .build()
        .expect_err("State<Label> was not provided");
    match &err {
        Error::MissingState { handler, state } => {
            assert!(handler.contains("labelled"), "{handler}");
            assert!(handler.contains("state.rs"), "names where: {handler}");
            assert_eq!(state, "Label");
        }
        other => panic!("expected MissingState, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains(".state(") && text.contains("State<Label>"),
        "{text}"
    );
}
