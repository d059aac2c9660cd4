//! Records a handler writes (consume-transform-produce), through the
//! dispatcher's producer.

use crate::extract::{DecodeError, FromMessage};
use crate::message::Message;
use crate::producer::Producer;
use crate::state::States;
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureRecord;
use std::fmt;
use std::time::Duration;

/// Writes records to Kafka from a handler, through a producer the
/// dispatcher creates (idempotent, `acks=all`, the `[kafka.producer]`
/// properties) when a handler takes a `Publisher` argument.
///
/// [`send`](Self::send) returns once the broker has acknowledged the
/// record. A handler that awaits its sends before returning `Ok` therefore
/// has its input committed only after what it wrote is acknowledged: if the
/// process dies first, the input is delivered again (and written again:
/// at-least-once).
///
/// A failed send is a [`PublishError`]. Like any handler error it is
/// dead-lettered unless the policy retries it: list it, as in
/// `#[kafka_handler(topic = "orders", retry = dispatcher::extract::PublishError)]`.
///
/// ```no_run
/// use dispatcher::extract::{PublishError, Publisher};
/// use dispatcher::kafka_handler;
///
/// #[kafka_handler(topic = "orders", retry = PublishError)]
/// async fn enrich(order: &str, out: Publisher) -> Result<(), PublishError> {
///     out.send("orders.enriched", None, order.to_uppercase().as_bytes()).await?;
///     Ok(())
/// }
/// ```
#[derive(Clone)]
pub struct Publisher {
    producer: Producer,
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher").finish_non_exhaustive()
    }
}

/// How long a send may wait for room in the producer's queue.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(30);

impl Publisher {
    pub(crate) fn new(producer: Producer) -> Self {
        Publisher { producer }
    }

    /// Writes one record to `topic` (partitioned by `key`, or spread when
    /// there is none) and waits for the broker's acknowledgement. Returns
    /// the partition and offset it was written at. With the `otel` feature
    /// the record carries the handler's trace context in `traceparent`.
    pub async fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
    ) -> Result<(i32, i64), PublishError> {
        let mut record = FutureRecord::<[u8], [u8]>::to(topic).payload(payload);
        if let Some(key) = key {
            record = record.key(key);
        }
        let context = crate::telemetry::trace::current_context_headers();
        if !context.is_empty() {
            let mut headers = rdkafka::message::OwnedHeaders::new_with_capacity(context.len());
            for (name, value) in &context {
                headers = headers.insert(rdkafka::message::Header {
                    key: name,
                    value: Some(value.as_bytes()),
                });
            }
            record = record.headers(headers);
        }
        match self.producer.send(record, QUEUE_TIMEOUT).await {
            Ok(place) => Ok(place),
            Err(source) => Err(PublishError {
                topic: topic.to_owned(),
                source,
            }),
        }
    }
}

impl<'a> FromMessage<'a> for Publisher {
    fn from_message(_msg: &'a Message) -> Result<Self, DecodeError> {
        States::current::<Publisher>()
            .map(|p| (*p).clone())
            .ok_or_else(|| {
                DecodeError::new(
                    "Publisher",
                    "the dispatcher made no producer: declare the handler with #[kafka_handler], or with HandlerSpec::with_states(&[StateKey::of::<Publisher>(\"Publisher\")])",
                )
            })
    }
}

/// A record a [`Publisher`] could not write: the topic and the client's
/// error.
#[derive(Debug, thiserror::Error)]
#[error("could not publish to {topic:?}")]
pub struct PublishError {
    topic: String,
    #[source]
    source: KafkaError,
}

impl PublishError {
    /// The topic the record was for.
    pub fn topic(&self) -> &str {
        &self.topic
    }
}
