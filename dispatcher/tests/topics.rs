//! On a real cluster (here the embedded broker reached as one, through
//! `brokers`, so the dispatcher creates nothing), every topic the handlers
//! read and every dead-letter topic they write must exist: `run()` stops
//! at startup with one error that lists what is missing and the fix.

use dispatcher::broker::EmbeddedBroker;
use dispatcher::handler::{Handler, HandlerFuture, HandlerSpec};
use dispatcher::{Dispatcher, Error, Message};
use std::time::Duration;

struct Nothing;
impl Handler for Nothing {
    fn call(&self, _: Message) -> HandlerFuture<'static> {
        Box::pin(async { Ok(()) })
    }
}
static NOTHING: Nothing = Nothing;

fn dispatcher(brokers: &str) -> Dispatcher {
    builder(brokers).build().expect("a valid configuration")
}

fn builder(brokers: &str) -> dispatcher::DispatcherBuilder {
    Dispatcher::builder()
        .ignore_environment()
        .without_registered_handlers()
        .handle_signals(false)
        .brokers(brokers)
        .group_id("it-topics")
        .handler(HandlerSpec::new(
            "reader",
            &["it-topics-present", "it-topics-absent"],
            &NOTHING,
        ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_topics_stop_startup_with_one_error_listing_them() {
    let broker = EmbeddedBroker::start(1).expect("start a broker");
    broker
        .create_topic("it-topics-present", 2)
        .expect("create a topic");
    let result = tokio::time::timeout(
        Duration::from_secs(60),
        dispatcher(broker.bootstrap_servers()).run(),
    )
    .await
    .expect("run() returns");
    match result {
        Err(Error::MissingTopics { topics }) => assert_eq!(
            topics,
            vec![
                "it-topics-absent".to_owned(),
                "it-topics-absent.DLT".to_owned(),
                "it-topics-present.DLT".to_owned(),
            ]
        ),
        other => panic!("expected MissingTopics, got {other:?}"),
    }

    // With every topic there, it runs.
    for t in [
        "it-topics-absent",
        "it-topics-absent.DLT",
        "it-topics-present.DLT",
    ] {
        broker.create_topic(t, 2).expect("create a topic");
    }
    let (handled_tx, mut handled) = tokio::sync::mpsc::unbounded_channel();
    let d = builder(broker.bootstrap_servers())
        .on_event(move |e| {
            let _ = handled_tx.send(e.offset);
        })
        .build()
        .expect("a valid configuration");
    let stop = d.shutdown_handle();
    let run = tokio::spawn(d.run());
    let producer =
        dispatcher::testing::Producer::new(broker.bootstrap_servers()).expect("producer");
    let (_, offset) = producer
        .publish("it-topics-absent", Some("k"), "x")
        .await
        .expect("publish");
    let got = tokio::time::timeout(Duration::from_secs(60), handled.recv())
        .await
        .expect("the record is handled: the dispatcher runs");
    assert_eq!(got, Some(offset));
    stop.shutdown();
    run.await.expect("join").expect("a clean stop");
}
