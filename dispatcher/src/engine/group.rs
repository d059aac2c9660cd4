//! One consumer group, wired: its handlers' executors, its dead-letter
//! producer, its consumer, and the thread that polls it.

use super::commit::{self, Committer};
use super::context::{GroupConsumer, GroupContext, GroupOptions};
use super::execute::Executor;
use super::limit::Limit;
use super::poll;
use super::stop::Stop;
use crate::client::{ClientHooks, HooksContext};
use crate::config::Settings;
use crate::dead_letter::retry::RetryWriter;
use crate::dead_letter::{DeadLetterSink, KafkaDeadLetters};
use crate::error::{Error, Result};
use crate::event::EventListener;
use crate::handler::HandlerSpec;
use crate::producer::Producer;
use crate::telemetry::metrics::RecordMetrics;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use std::collections::HashMap;
use std::sync::Arc;

/// What every group of a run shares.
pub(crate) struct RunShared {
    pub(crate) rt: tokio::runtime::Handle,
    pub(crate) global: Arc<Limit>,
    pub(crate) stop: Arc<Stop>,
    pub(crate) listeners: Arc<[EventListener]>,
    pub(crate) sink: Option<Arc<dyn DeadLetterSink>>,
    pub(crate) hooks: ClientHooks,
    /// What `State<T>` arguments read.
    pub(crate) states: Arc<crate::state::States>,
    /// Readiness, which groups and partitions report to.
    pub(crate) health: Arc<crate::telemetry::health::Health>,
}

/// Librdkafka settings the dispatcher picks unless the configuration says
/// otherwise: they matter for throughput, latency and memory.
pub(crate) const CONSUMER_DEFAULTS: [(&str, &str); 5] = [
    ("auto.offset.reset", "earliest"),
    // Wait at most 20 ms for a fetch to fill: low latency at low rates.
    ("fetch.wait.max.ms", "20"),
    // A partition queue that is full is checked again after 10 ms, not
    // librdkafka's default second.
    ("fetch.queue.backoff.ms", "10"),
    // Prefetch at most 4 MiB per assigned partition (librdkafka's default,
    // 64 MiB, applies per partition queue).
    ("queued.max.messages.kbytes", "4096"),
    // And at most about 1,000 records per partition beyond one fetch
    // (librdkafka's default is 100,000). The byte limit above counts
    // payloads only, while each prefetched record also costs librdkafka
    // some 200 bytes of its own: with 100-byte records and 64 partitions
    // the queues held 2.6 M records, over 1 GiB, whatever the dispatcher's
    // own caps. The dispatcher's partition backlog is the read-ahead that
    // matters; the benchmark's memory part shows no loss of throughput.
    ("queued.min.messages", "1000"),
];

/// A producer with the configuration's producer properties: idempotent,
/// `acks=all`, for dead letters and for handlers' `Publisher`s. `what`
/// names it in errors; `thread` names its delivery thread.
pub(crate) fn producer(
    client: &ClientConfig,
    settings: &Settings,
    hooks: &ClientHooks,
    what: &str,
    thread: &str,
) -> Result<Producer> {
    let mut config = client.clone();
    for (k, (v, _)) in &settings.kafka.producer {
        config.set(k, v.expose());
    }
    config
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000");
    Producer::create(&config, HooksContext::new(hooks.clone()), thread)
        .map_err(|e| Error::kafka(format!("creating {what}"), e))
}

/// How far a group's shutdown got.
pub(crate) struct Running {
    /// Completes when the group has drained and committed.
    pub(crate) drained: tokio::sync::oneshot::Receiver<()>,
    /// Completes when the consumer has left the group and closed.
    pub(crate) closed: tokio::sync::oneshot::Receiver<()>,
}

/// Starts consuming for `group` on a thread of its own.
pub(crate) fn start(
    group: &str,
    specs: &[HandlerSpec],
    settings: &Settings,
    client: &ClientConfig,
    shared: &RunShared,
) -> Result<Running> {
    let dead_letters: Arc<dyn DeadLetterSink> = match &shared.sink {
        Some(sink) => sink.clone(),
        None => {
            let producer = producer(
                client,
                settings,
                &shared.hooks,
                "the dead-letter producer",
                "dlt-delivery",
            )?;
            Arc::new(KafkaDeadLetters::new(producer, settings.dead_letter_retry))
        }
    };
    let group_name: Arc<str> = Arc::from(group);
    let retry_writer = if specs.iter().any(|s| !s.policy.retry_topics().is_empty()) {
        let producer = producer(
            client,
            settings,
            &shared.hooks,
            "the retry-topic producer",
            "retry-delivery",
        )?;
        Some(Arc::new(RetryWriter::new(
            producer,
            settings.dead_letter_retry,
        )))
    } else {
        None
    };
    let mut executors = HashMap::new();
    for spec in specs {
        let name: Arc<str> = Arc::from(spec.qualified_name());
        let concurrency = spec.policy.concurrency().map(|n| Arc::new(Limit::new(n)));
        // One executor per topic (its own and its retry topics), for the
        // topic's series; the handler's concurrency limit is shared by all
        // of them.
        for (t, level, source) in spec.read_topics(group) {
            let topic: Arc<str> = Arc::from(t);
            let executor = Arc::new(Executor {
                spec: *spec,
                name: name.clone(),
                concurrency: concurrency.clone(),
                listeners: shared.listeners.clone(),
                dead_letters: dead_letters.clone(),
                group: group_name.clone(),
                states: (!spec.states.is_empty()).then(|| shared.states.clone()),
                metrics: RecordMetrics::new(&topic, &name),
                retry_level: level,
                source_topic: Arc::from(source),
                retry_writer: (level > 0 || !spec.policy.retry_topics().is_empty())
                    .then(|| retry_writer.clone())
                    .flatten(),
            });
            executors.insert(topic, executor);
        }
    }
    let read: Vec<String> = specs
        .iter()
        .flat_map(|h| h.read_topics(group).into_iter().map(|(t, _, _)| t))
        .collect();
    let topics: Vec<&str> = read.iter().map(String::as_str).collect();
    let mut config = client.clone();
    config.set("group.id", group);
    for (k, v) in commit::consumer_settings() {
        config.set(k, v);
    }
    for (k, v) in CONSUMER_DEFAULTS {
        if !settings.kafka.consumer_sets(k) {
            config.set(k, v);
        }
    }
    for (k, (v, _)) in &settings.kafka.consumer {
        config.set(k, v.expose());
    }
    let context = GroupContext::new(
        GroupOptions {
            group: group.to_owned(),
            executors,
            partition_buffer: settings.partition_buffer,
            partition_buffer_bytes: settings.partition_buffer_bytes,
            drain_timeout: settings.drain_timeout,
            poll_batch: settings.poll_batch,
            stall_timeout: settings.stall_timeout,
        },
        shared.rt.clone(),
        shared.global.clone(),
        shared.stop.clone(),
        Committer::new(
            group.to_owned(),
            settings.commit_interval,
            settings.commit_timeout,
            settings.commit_retry,
        ),
        shared.hooks.clone(),
        shared.health.clone(),
    );
    let mut consumer: GroupConsumer = config
        .create_with_context(context)
        .map_err(|e| Error::kafka(format!("creating the consumer of group {group:?}"), e))?;
    // Rebalances and errors arrive on the consumer queue: wake the poll
    // loop for them.
    let waker = consumer.context().waker.clone();
    consumer.set_nonempty_callback(move || waker.wake());
    let consumer = Arc::new(consumer);
    consumer.context().set_consumer(&consumer);
    consumer
        .subscribe(&topics)
        .map_err(|e| Error::kafka(format!("subscribing group {group:?} to {topics:?}"), e))?;
    tracing::info!(group, topics = ?topics, handlers = %specs.iter().map(HandlerSpec::qualified_name).collect::<Vec<_>>().join(", "), "consumer started");

    let (drained_tx, drained) = tokio::sync::oneshot::channel::<()>();
    let (closed_tx, closed) = tokio::sync::oneshot::channel::<()>();
    let (stop, error_timeout, name) = (
        shared.stop.clone(),
        settings.error_timeout,
        group.to_owned(),
    );
    std::thread::Builder::new()
        .name(format!("poll-{group}").chars().take(15).collect())
        .spawn(move || {
            let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                poll::run(consumer, stop.clone(), error_timeout)
            }));
            match polled {
                Ok(consumer) => {
                    let _ = drained_tx.send(());
                    // Leaves the group: the caller waits a while for it.
                    drop(consumer);
                    tracing::info!(group = %name, "consumer closed");
                }
                Err(_) => {
                    // Stop everything: nothing is committed past what was
                    // finished, and run() says what happened.
                    stop.fatal(Error::runtime(format!(
                        "the poll thread of consumer group {name:?} panicked; see the log"
                    )));
                    let _ = drained_tx.send(());
                }
            }
            let _ = closed_tx.send(());
        })
        .map_err(|e| Error::Runtime {
            context: format!("cannot start the poll thread of group {group:?}"),
            source: Some(Box::new(e)),
        })?;
    Ok(Running { drained, closed })
}
