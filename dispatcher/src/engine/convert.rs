//! Fetched rdkafka messages into owned [`Message`]s, cheaply: the keys and
//! payloads of a run of records are copied into shared buffers instead of
//! two allocations per record, as they are polled.

use crate::message::{key_hash, Header, Message, NO_TIMESTAMP};
use bytes::{Bytes, BytesMut};
use rdkafka::message::{BorrowedMessage, Headers, Message as _};
use std::sync::Arc;

/// The largest shared buffer. A record whose key and payload take more
/// than half of it gets buffers of its own.
const ARENA_BYTES: usize = 32 * 1024;

/// The smallest shared buffer.
const FIRST_ARENA_BYTES: usize = 256;

/// Builds one run of records of one partition, record by record.
///
/// Each buffer is twice the size of the one before (from 256 bytes up to
/// 32 KiB, and at least what the record needs), so a run of one small
/// record pins a small buffer, and the unused tail of a run's buffers is at
/// most about the bytes its records hold. Records of one partition are held
/// in offset order from the watermark on, so what a partition's backlog
/// keeps alive is its records' bytes plus at most that slack.
pub(crate) struct Run {
    topic: Arc<str>,
    arena: BytesMut,
    /// The size of the last buffer allocated.
    arena_size: usize,
    records: Vec<Message>,
    bytes: usize,
}

impl Run {
    /// A run of `topic`'s records. The name gets an allocation of its own:
    /// its reference count is touched per record by the partition's worker
    /// and by nobody else.
    pub(crate) fn new(topic: &str) -> Self {
        Run {
            topic: Arc::from(topic),
            arena: BytesMut::new(),
            arena_size: 0,
            records: Vec::new(),
            bytes: 0,
        }
    }

    /// Records in the run so far.
    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    /// Bytes (keys, payloads, headers) in the run so far.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Copies `part` into the current buffer, or a buffer of its own.
    fn copy(&mut self, part: Option<&[u8]>) -> Option<Bytes> {
        let part = part?;
        if part.len() > ARENA_BYTES / 2 {
            return Some(Bytes::copy_from_slice(part));
        }
        if self.arena.capacity() - self.arena.len() < part.len() {
            self.arena_size = (self.arena_size * 2)
                .clamp(FIRST_ARENA_BYTES, ARENA_BYTES)
                .max(part.len());
            self.arena = BytesMut::with_capacity(self.arena_size);
        }
        self.arena.extend_from_slice(part);
        Some(self.arena.split_to(part.len()).freeze())
    }

    /// Adds one record.
    pub(crate) fn push(&mut self, m: &BorrowedMessage<'_>) {
        let key = self.copy(m.key());
        let payload = self.copy(m.payload());
        let mut size = key.as_ref().map_or(0, Bytes::len) + payload.as_ref().map_or(0, Bytes::len);
        let headers = match m.headers() {
            Some(h) if h.count() > 0 => {
                let headers: Arc<[Header]> = h
                    .iter()
                    .map(|h| Header {
                        name: h.key.to_owned(),
                        value: h.value.map(Bytes::copy_from_slice),
                    })
                    .collect();
                size += headers
                    .iter()
                    .map(|h| h.name.len() + h.value.as_ref().map_or(0, Bytes::len))
                    .sum::<usize>();
                Some(headers)
            }
            _ => None,
        };
        self.bytes += size;
        self.records.push(Message {
            topic: self.topic.clone(),
            partition: m.partition(),
            generation: 0,
            offset: m.offset(),
            key_hash: key.as_deref().map_or(0, key_hash),
            key,
            payload,
            headers,
            timestamp: m.timestamp().to_millis().unwrap_or(NO_TIMESTAMP),
        });
    }

    /// The records and the bytes they hold.
    pub(crate) fn finish(self) -> (Vec<Message>, usize) {
        (self.records, self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_grow_from_small_to_the_limit() {
        let mut run = Run::new("t");
        let sizes: Vec<usize> = (0..1_000)
            .map(|_| {
                run.copy(Some(&[7u8; 100]));
                run.arena_size
            })
            .collect();
        assert_eq!(
            sizes[0], FIRST_ARENA_BYTES,
            "one small record pins a small buffer"
        );
        assert_eq!(*sizes.last().expect("sizes"), ARENA_BYTES);
        assert!(sizes.windows(2).all(|w| w[1] >= w[0]));
        // A large part gets a buffer of its own.
        let big = run.copy(Some(&vec![1u8; ARENA_BYTES])).expect("copied");
        assert_eq!(big.len(), ARENA_BYTES);
        assert_eq!(run.arena_size, ARENA_BYTES);
    }
}
