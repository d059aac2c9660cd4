//! The consumers under test and one consumer run: a raw rust-rdkafka loop or the dispatcher.

use crate::setup::{Setup, Tune, GROUP_SETTINGS};
use crate::support::probe::{Probe, ProbeHandler};
use crate::support::unique;
use dispatcher::handler::HandlerSpec;
use dispatcher::policy::{OrderingMode, Policy};
use dispatcher::Dispatcher;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::Message as _;
use std::time::Duration;

/// A consumer under test.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Target {
    /// `StreamConsumer::recv().await` on a multi-threaded tokio runtime.
    RawStream,
    /// `BaseConsumer::poll` on one thread.
    RawBase,
    /// The dispatcher, one handler, in an ordering mode.
    Dispatcher(OrderingMode),
}

impl Target {
    pub(super) fn label(self) -> &'static str {
        match self {
            Target::RawStream => "raw StreamConsumer",
            Target::RawBase => "raw BaseConsumer",
            Target::Dispatcher(OrderingMode::Key) => "dispatcher, key mode",
            Target::Dispatcher(OrderingMode::Partition) => "dispatcher, partition mode",
            Target::Dispatcher(_) => "dispatcher, unordered",
        }
    }

    /// A name for environment variables and JSON.
    pub(super) fn id(self) -> &'static str {
        match self {
            Target::RawStream => "raw_stream",
            Target::RawBase => "raw_base",
            Target::Dispatcher(OrderingMode::Key) => "key",
            Target::Dispatcher(OrderingMode::Partition) => "partition",
            Target::Dispatcher(_) => "unordered",
        }
    }

    pub(super) fn from_id(id: &str) -> Target {
        match id {
            "raw_stream" => Target::RawStream,
            "raw_base" => Target::RawBase,
            "partition" => Target::Dispatcher(OrderingMode::Partition),
            "unordered" => Target::Dispatcher(OrderingMode::Unordered),
            _ => Target::Dispatcher(OrderingMode::Key),
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Consumes `topic` as `group` with `target` until the probe has seen the
/// records it expects.
pub(super) fn run(setup: &Setup, target: Target, topic: &str, probe: &'static Probe, tune: Tune) {
    let group = unique(target.id());
    match target {
        Target::RawBase => {
            let consumer: BaseConsumer = setup.raw_config(&group).create().expect("consumer");
            consumer.subscribe(&[topic]).expect("subscribe");
            while !probe.is_finished() {
                match consumer.poll(Duration::from_millis(100)) {
                    Some(Ok(m)) => {
                        probe.record(m.payload());
                        // Stored once processed; committed in the background.
                        let _ = consumer.store_offset_from_message(&m);
                    }
                    Some(Err(e)) => eprintln!("raw BaseConsumer: {e}"),
                    None => {}
                }
            }
        }
        Target::RawStream => runtime().block_on(async {
            let consumer: StreamConsumer = setup.raw_config(&group).create().expect("consumer");
            consumer.subscribe(&[topic]).expect("subscribe");
            while !probe.is_finished() {
                tokio::select! {
                    biased;
                    m = consumer.recv() => match m {
                        Ok(m) => {
                            probe.record(m.payload());
                            let _ = consumer.store_offset_from_message(&m);
                        }
                        Err(e) => eprintln!("raw StreamConsumer: {e}"),
                    },
                    // The paced runs learn their count late: wake up then.
                    () = probe.finished.notified() => {}
                }
            }
        }),
        Target::Dispatcher(ordering) => {
            let topic: &'static str = Box::leak(topic.to_owned().into_boxed_str());
            let topics: &'static [&'static str] = Box::leak(vec![topic].into_boxed_slice());
            let handler: &'static ProbeHandler =
                Box::leak(Box::new(ProbeHandler { probe, io: tune.io }));
            let spec = HandlerSpec::new("bench_handler", topics, handler)
                .with_policy(Policy::DEFAULT.with_ordering(ordering));
            runtime().block_on(async {
                let mut b = Dispatcher::builder()
                    .ignore_environment()
                    .without_registered_handlers()
                    .handler(spec)
                    .group_id(group)
                    .handle_signals(false);
                b = match &setup.broker {
                    Some(broker) => b.embedded_broker(broker.clone()),
                    None => b.brokers(setup.brokers.clone()),
                };
                if let Some(cap) = tune.max_in_flight {
                    b = b.max_in_flight(cap);
                }
                for (k, v) in GROUP_SETTINGS {
                    b = b.consumer_property(k, v);
                }
                for (k, v) in &setup.props {
                    b = b.consumer_property(k.clone(), v.clone());
                }
                if setup.metrics {
                    b = b.metrics_address("127.0.0.1:0");
                }
                let d = b.build().expect("build the dispatcher");
                let stop = d.shutdown_handle();
                let mut running = tokio::spawn(d.run());
                let finished = async {
                    while !probe.is_finished() {
                        probe.finished.notified().await;
                    }
                };
                tokio::select! {
                    () = finished => {}
                    ended = &mut running => panic!("the dispatcher stopped early: {ended:?}"),
                }
                stop.shutdown();
                running.await.expect("join").expect("clean run");
            });
        }
    }
}
