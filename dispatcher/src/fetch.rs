//! Fetched rdkafka messages into owned [`Message`]s, cheaply: the keys and
//! payloads of a run of records of one partition are copied into one shared
//! buffer instead of two allocations per record.

use crate::message::{Header, Message};
use bytes::{Bytes, BytesMut};
use rdkafka::message::{BorrowedMessage, Headers, Message as _};
use std::sync::Arc;

/// A buffer is closed at this size; larger records get their own. A record
/// that stays unfinished keeps at most this much memory alive with it.
const ARENA_BYTES: usize = 32 * 1024;

/// Converts fetched messages.
pub(crate) struct Converter {
    /// The group consumes one topic: runs differ by partition only, and
    /// topic names need not be compared per record.
    single_topic: bool,
}

impl Converter {
    pub(crate) fn new(single_topic: bool) -> Self {
        Converter { single_topic }
    }

    /// Splits `batch` into runs of consecutive records of one partition and
    /// calls `each` with the topic, partition and converted records.
    pub(crate) fn for_each_run(
        &self,
        batch: &[BorrowedMessage<'_>],
        mut each: impl FnMut(Arc<str>, i32, Vec<Message>),
    ) {
        let mut start = 0;
        while start < batch.len() {
            let (name, partition) = (batch[start].topic(), batch[start].partition());
            let mut end = start + 1;
            while end < batch.len()
                && batch[end].partition() == partition
                && (self.single_topic || batch[end].topic() == name)
            {
                end += 1;
            }
            // A name per run, not one shared by every record of the topic:
            // its reference count is touched only by the partition's worker.
            let topic: Arc<str> = Arc::from(name);
            let records = self.convert(&topic, &batch[start..end]);
            each(topic, partition, records);
            start = end;
        }
    }

    fn convert(&self, topic: &Arc<str>, run: &[BorrowedMessage<'_>]) -> Vec<Message> {
        let mut out = Vec::with_capacity(run.len());
        let mut chunk_start = 0;
        while chunk_start < run.len() {
            // Gather a chunk of records whose bytes fit one buffer.
            let mut size = 0;
            let mut chunk_end = chunk_start;
            while chunk_end < run.len() {
                let m = &run[chunk_end];
                let len = m.key().map_or(0, <[u8]>::len) + m.payload().map_or(0, <[u8]>::len);
                if chunk_end > chunk_start && size + len > ARENA_BYTES {
                    break;
                }
                size += len;
                chunk_end += 1;
            }
            let mut buf = BytesMut::with_capacity(size);
            for m in &run[chunk_start..chunk_end] {
                buf.extend_from_slice(m.key().unwrap_or_default());
                buf.extend_from_slice(m.payload().unwrap_or_default());
            }
            for m in &run[chunk_start..chunk_end] {
                let mut take = |part: Option<&[u8]>| part.map(|p| buf.split_to(p.len()).freeze());
                let key = take(m.key());
                let payload = take(m.payload());
                let headers = match m.headers() {
                    Some(h) if h.count() > 0 => Some(
                        h.iter()
                            .map(|h| Header {
                                name: h.key.to_owned(),
                                value: h.value.map(Bytes::copy_from_slice),
                            })
                            .collect(),
                    ),
                    _ => None,
                };
                out.push(Message {
                    topic: topic.clone(),
                    partition: m.partition(),
                    offset: m.offset(),
                    key,
                    payload,
                    headers,
                    timestamp: m.timestamp().to_millis(),
                });
            }
            chunk_start = chunk_end;
        }
        out
    }
}
