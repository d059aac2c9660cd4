//! The producer behind dead letters, retry topics and handlers'
//! [`Publisher`](crate::publish::Publisher)s: librdkafka's producer, with a
//! thread that serves its delivery reports, and a future per record that
//! completes with the record's delivery.
//!
//! Not rust-rdkafka's `FutureProducer`: its thread calls
//! `BaseProducer::poll(100 ms)` in a loop, and that call spins for the last
//! millisecond of every one of them. It hands librdkafka the time left in
//! whole milliseconds, rounded down, so once less than a millisecond is
//! left it asks for 0 ms, returns at once, and asks again until the
//! deadline passes (rdkafka 0.39, `BaseProducer::poll`, `Deadline` and
//! `Timeout::as_millis`). An idle `FutureProducer` spent about 9 ms of CPU
//! a second that way; at 1,000 records a second that was 9 µs per record.
//! Here the thread polls for a second at a time, so the same rounding costs
//! at most a millisecond a second; a delivery report still wakes it at once.

use crate::client::HooksContext;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Message as _, ToBytes};
use rdkafka::producer::{BaseProducer, BaseRecord, FutureRecord, ProducerContext};
use rdkafka::ClientConfig;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How long one poll of the delivery thread blocks. Every poll ends with up
/// to a millisecond of spinning (see the module's documentation), and a
/// dropped producer is destroyed once its last poll ends.
const POLL_FOR: Duration = Duration::from_secs(1);

/// How long [`Producer::send`] waits between tries while librdkafka's queue
/// is full.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(100);

/// Where a record was written (partition, offset), or why it was not.
pub(crate) type Delivery = Result<(i32, i64), KafkaError>;

impl ProducerContext for HooksContext {
    type DeliveryOpaque = Box<oneshot::Sender<Delivery>>;

    fn delivery(
        &self,
        result: &rdkafka::message::DeliveryResult<'_>,
        reply: Box<oneshot::Sender<Delivery>>,
    ) {
        let delivery = match result {
            Ok(m) => Ok((m.partition(), m.offset())),
            Err((e, _)) => Err(e.clone()),
        };
        // The sender's future may be gone (dropped mid-send): nobody waits.
        let _ = reply.send(delivery);
    }
}

/// A producer whose [`send`](Self::send) completes with the delivery.
/// Clones share the producer; the last one to go stops its thread, which
/// then destroys the producer within [`POLL_FOR`].
#[derive(Clone)]
pub(crate) struct Producer {
    producer: Arc<BaseProducer<HooksContext>>,
    _thread: Arc<StopOnDrop>,
}

/// Stops the delivery thread when the last clone of a [`Producer`] goes.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

impl Producer {
    /// A producer with `config`, and its delivery thread, named `thread`
    /// (what `top -H` shows; Linux keeps 15 bytes of it).
    pub(crate) fn create(
        config: &ClientConfig,
        context: HooksContext,
        thread: &str,
    ) -> KafkaResult<Producer> {
        let producer: Arc<BaseProducer<HooksContext>> =
            Arc::new(config.create_with_context(context)?);
        let stop = Arc::new(AtomicBool::new(false));
        std::thread::Builder::new()
            .name(thread.to_owned())
            .spawn({
                let producer = producer.clone();
                let stop = stop.clone();
                move || {
                    while !stop.load(Ordering::Acquire) {
                        producer.poll(POLL_FOR);
                    }
                }
            })
            .map_err(|e| {
                KafkaError::ClientCreation(format!("starting the producer's delivery thread: {e}"))
            })?;
        Ok(Producer {
            producer,
            _thread: Arc::new(StopOnDrop(stop)),
        })
    }

    /// Writes `record` and waits for its delivery. While librdkafka's queue
    /// is full, tries again every 100 ms for up to `queue_timeout`.
    pub(crate) async fn send<K, P>(
        &self,
        record: FutureRecord<'_, K, P>,
        queue_timeout: Duration,
    ) -> Delivery
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let started = Instant::now();
        let (reply, delivered) = oneshot::channel();
        let mut base = BaseRecord {
            topic: record.topic,
            partition: record.partition,
            payload: record.payload,
            key: record.key,
            timestamp: record.timestamp,
            headers: record.headers,
            delivery_opaque: Box::new(reply),
        };
        loop {
            match self.producer.send(base) {
                Ok(()) => {
                    // The producer outlives this call (`self` holds it), so
                    // librdkafka reports on every record it took.
                    return delivered.await.unwrap_or(Err(KafkaError::Canceled));
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if started.elapsed() < queue_timeout =>
                {
                    base = back;
                    tokio::time::sleep(QUEUE_FULL_BACKOFF).await;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::EmbeddedBroker;
    use crate::client::ClientHooks;

    /// CPU time of this process's threads named `name`.
    fn thread_cpu(name: &str) -> Duration {
        let mut nanos = 0u64;
        for task in std::fs::read_dir("/proc/self/task")
            .into_iter()
            .flatten()
            .flatten()
        {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if comm.trim_end() == name {
                nanos += std::fs::read_to_string(task.path().join("schedstat"))
                    .ok()
                    .and_then(|s| s.split_whitespace().next()?.parse().ok())
                    .unwrap_or(0);
            }
        }
        Duration::from_nanos(nanos)
    }

    fn config(broker: &EmbeddedBroker) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", broker.bootstrap_servers());
        config
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_record_completes_with_its_delivery_and_a_refused_one_with_its_error() {
        let broker = EmbeddedBroker::start(1).expect("embedded cluster");
        broker.create_topic("out", 2).expect("topic");
        let producer = Producer::create(
            &config(&broker),
            HooksContext::new(ClientHooks::default()),
            "test-delivery",
        )
        .expect("producer");
        let (partition, offset) = producer
            .send(
                FutureRecord::<str, str>::to("out")
                    .key("k")
                    .payload("v")
                    .partition(1),
                Duration::from_secs(5),
            )
            .await
            .expect("delivered");
        assert_eq!((partition, offset), (1, 0));
        let error = producer
            .send(
                FutureRecord::<str, str>::to("out")
                    .payload("v")
                    .partition(7),
                Duration::from_secs(5),
            )
            .await
            .expect_err("partition 7 does not exist");
        assert!(
            matches!(
                error,
                KafkaError::MessageProduction(RDKafkaErrorCode::UnknownPartition)
            ),
            "{error:?}"
        );
    }

    /// The CPU an idle producer's delivery thread spends: rust-rdkafka's
    /// `FutureProducer` spent about 9 ms a second (its poll spins for the
    /// last millisecond of every 100 ms poll); with `POLL_FOR` at 100 ms
    /// this test measures the same. CPU time, not wall time: a thread that
    /// waits spends none, however loaded the machine.
    #[test]
    fn an_idle_producer_spends_no_cpu_waiting_for_deliveries() {
        let broker = EmbeddedBroker::start(1).expect("embedded cluster");
        // A name no other test's thread has.
        const THREAD: &str = "test-idle-prod";
        let producer = Producer::create(
            &config(&broker),
            HooksContext::new(ClientHooks::default()),
            THREAD,
        )
        .expect("producer");
        std::thread::sleep(Duration::from_millis(300));
        let start = thread_cpu(THREAD);
        std::thread::sleep(Duration::from_secs(3));
        let spent = thread_cpu(THREAD) - start;
        drop(producer);
        assert!(
            spent < Duration::from_millis(10),
            "the idle delivery thread spent {spent:?} of CPU in 3 s (rust-rdkafka's FutureProducer: about 27 ms)"
        );
    }
}
