//! Fetched rdkafka messages into owned [`Message`]s, cheaply: the keys and
//! payloads of a run of records are copied into shared buffers instead of
//! two allocations per record, as they are polled.
//!
//! The work is split between two threads. The poll thread copies each
//! record's bytes into the run's buffers ([`Run`]) and hands the run over
//! as a [`Batch`]; the partition's worker cuts the records' [`Message`]s
//! out of it ([`Batch::into_messages`]). A record's key and payload are
//! views of a shared buffer, counted by the buffer's reference count:
//! every count is taken and dropped on the worker's thread, so that count
//! never moves between CPU cores record by record (taken on the poll
//! thread, it did, and it was the poll thread's largest cost).

use crate::message::{key_hash, Header, Message, NO_TIMESTAMP};
use bytes::{Bytes, BytesMut};
use rdkafka::message::{BorrowedMessage, Headers, Message as _};
use std::sync::Arc;

/// The largest shared buffer. A record whose key or payload takes more
/// than half of it gets a buffer of its own.
const ARENA_BYTES: usize = 32 * 1024;

/// The smallest shared buffer.
const FIRST_ARENA_BYTES: usize = 256;

/// Where a key or a payload is.
enum Part {
    /// The record has none.
    Absent,
    /// In the run's buffer `chunk`, at `start`, `len` bytes long.
    Shared { chunk: u32, start: u32, len: u32 },
    /// In a buffer of its own (a large part).
    Own(Bytes),
}

/// One record of a run, its bytes in the run's buffers.
struct Taken {
    offset: i64,
    key: Part,
    key_hash: u64,
    payload: Part,
    headers: Option<Arc<[Header]>>,
    timestamp: i64,
}

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
    partition: i32,
    /// The buffer being filled; it becomes `chunks[chunks.len()]`.
    arena: BytesMut,
    /// The size of the last buffer allocated.
    arena_size: usize,
    /// The filled buffers.
    chunks: Vec<Bytes>,
    records: Vec<Taken>,
    bytes: usize,
}

/// A run of one partition's records, handed from the poll thread to the
/// partition's worker.
pub(crate) struct Batch {
    topic: Arc<str>,
    partition: i32,
    chunks: Vec<Bytes>,
    records: Vec<Taken>,
    bytes: usize,
}

impl Run {
    /// A run of `topic`'s records of `partition`. The name gets an
    /// allocation of its own: its reference count is touched per record
    /// by the partition's worker and by nobody else.
    pub(crate) fn new(topic: &str, partition: i32) -> Self {
        Run {
            topic: Arc::from(topic),
            partition,
            arena: BytesMut::new(),
            arena_size: 0,
            chunks: Vec::new(),
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
    fn copy(&mut self, part: Option<&[u8]>) -> Part {
        let Some(part) = part else {
            return Part::Absent;
        };
        if part.is_empty() {
            // No buffer to point into: the run's may never get a byte.
            return Part::Own(Bytes::new());
        }
        if part.len() > ARENA_BYTES / 2 {
            return Part::Own(Bytes::copy_from_slice(part));
        }
        if self.arena.capacity() - self.arena.len() < part.len() {
            self.arena_size = (self.arena_size * 2)
                .clamp(FIRST_ARENA_BYTES, ARENA_BYTES)
                .max(part.len());
            let full = std::mem::replace(&mut self.arena, BytesMut::with_capacity(self.arena_size));
            if !full.is_empty() {
                self.chunks.push(full.freeze());
            }
        }
        let start = self.arena.len();
        self.arena.extend_from_slice(part);
        // Both fit in u32: a buffer holds at most ARENA_BYTES.
        Part::Shared {
            chunk: self.chunks.len() as u32,
            start: start as u32,
            len: part.len() as u32,
        }
    }

    /// Adds one record.
    pub(crate) fn push(&mut self, m: &BorrowedMessage<'_>) {
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
        self.push_parts(
            m.offset(),
            m.key(),
            m.payload(),
            headers,
            m.timestamp().to_millis().unwrap_or(NO_TIMESTAMP),
        );
    }

    fn push_parts(
        &mut self,
        offset: i64,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: Option<Arc<[Header]>>,
        timestamp: i64,
    ) {
        let header_bytes = headers.as_deref().map_or(0, |hs| {
            hs.iter()
                .map(|h| h.name.len() + h.value.as_ref().map_or(0, Bytes::len))
                .sum::<usize>()
        });
        self.bytes += key.map_or(0, <[u8]>::len) + payload.map_or(0, <[u8]>::len) + header_bytes;
        let record = Taken {
            offset,
            key_hash: key.map_or(0, key_hash),
            key: self.copy(key),
            payload: self.copy(payload),
            headers,
            timestamp,
        };
        self.records.push(record);
    }

    /// The run, ready to hand over.
    pub(crate) fn finish(mut self) -> Batch {
        if !self.arena.is_empty() {
            self.chunks.push(self.arena.freeze());
        }
        Batch {
            topic: self.topic,
            partition: self.partition,
            chunks: self.chunks,
            records: self.records,
            bytes: self.bytes,
        }
    }
}

impl Batch {
    /// Records in the batch.
    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    /// Bytes (keys, payloads, headers) the records hold.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The records, in offset order. Call it on the thread that handles
    /// them (see the module's documentation).
    pub(crate) fn into_messages(self) -> impl Iterator<Item = Message> {
        let Batch {
            topic,
            partition,
            chunks,
            records,
            ..
        } = self;
        let part = move |p: Part| -> Option<Bytes> {
            match p {
                Part::Absent => None,
                Part::Shared { chunk, start, len } => {
                    let (start, len) = (start as usize, len as usize);
                    Some(chunks[chunk as usize].slice(start..start + len))
                }
                Part::Own(b) => Some(b),
            }
        };
        records.into_iter().map(move |r| Message {
            topic: topic.clone(),
            partition,
            generation: 0,
            offset: r.offset,
            key_hash: r.key_hash,
            key: part(r.key),
            payload: part(r.payload),
            headers: r.headers,
            timestamp: r.timestamp,
        })
    }

    /// A batch of `messages` (of one partition of one topic), the way the
    /// poll thread would build it.
    #[cfg(test)]
    pub(crate) fn of(messages: &[Message]) -> Batch {
        let first = messages.first().expect("a batch has records");
        let mut run = Run::new(first.topic(), first.partition());
        for m in messages {
            run.push_parts(
                m.offset(),
                m.key(),
                m.payload(),
                m.headers.clone(),
                m.timestamp,
            );
        }
        run.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_grow_from_small_to_the_limit() {
        let mut run = Run::new("t", 0);
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
        let Part::Own(big) = run.copy(Some(&vec![1u8; ARENA_BYTES])) else {
            panic!("a large part is not shared");
        };
        assert_eq!(big.len(), ARENA_BYTES);
        assert_eq!(run.arena_size, ARENA_BYTES);
    }

    #[test]
    fn a_batch_gives_back_every_record_as_it_was_taken() {
        // Small and large parts, absent and empty ones, across many
        // buffers.
        let messages: Vec<Message> = (0..2_000i64)
            .map(|i| {
                let mut m = Message::new("orders", 3, 100 + i);
                m = match i % 4 {
                    0 => m.with_key(format!("key-{i}")),
                    1 => m.with_key(""),
                    _ => m,
                };
                let payload = match i % 7 {
                    0 => vec![i as u8; ARENA_BYTES],
                    1 => Vec::new(),
                    _ => vec![i as u8; (i as usize * 37) % 3_000],
                };
                if i % 5 != 2 {
                    m = m.with_payload(payload);
                }
                if i % 3 == 0 {
                    m = m.with_header("h", vec![0xff, 0]);
                }
                m.timestamp = i * 10;
                m
            })
            .collect();
        let batch = Batch::of(&messages);
        assert_eq!(batch.len(), messages.len());
        // A run of nothing but empty parts.
        let empty = vec![Message::new("orders", 0, 1).with_key("").with_payload("")];
        assert_eq!(Batch::of(&empty).into_messages().collect::<Vec<_>>(), empty);
        assert_eq!(
            batch.bytes(),
            messages.iter().map(Message::size).sum::<usize>()
        );
        let back: Vec<Message> = batch.into_messages().collect();
        assert_eq!(back, messages);
        for (b, m) in back.iter().zip(&messages) {
            assert_eq!(b.key_hash, m.key.as_deref().map_or(0, key_hash));
            assert_eq!(b.timestamp, m.timestamp);
            assert_eq!(b.headers(), m.headers());
        }
    }
}
