//! Fetched rdkafka messages into owned [`Message`]s, cheaply: the keys and
//! payloads of a run of records are copied into shared buffers instead of
//! two allocations per record.

use crate::message::{key_hash, Header, Message};
use bytes::{Bytes, BytesMut};
use rdkafka::message::{BorrowedMessage, Headers, Message as _};
use std::sync::Arc;

/// A buffer is closed at this size; larger records get their own. Records
/// of one partition are held in offset order from the watermark on, so the
/// buffers a partition keeps alive hold its backlog plus at most the
/// unused part of the first and the last buffer.
const ARENA_BYTES: usize = 32 * 1024;

/// Converts a run of records of one partition. Returns them with the bytes
/// they hold (keys, payloads, headers).
pub(crate) fn convert(topic: &Arc<str>, run: &[BorrowedMessage<'_>]) -> (Vec<Message>, usize) {
    let mut out = Vec::with_capacity(run.len());
    let mut total = 0;
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
        total += size;
        for m in &run[chunk_start..chunk_end] {
            let mut take = |part: Option<&[u8]>| part.map(|p| buf.split_to(p.len()).freeze());
            let key = take(m.key());
            let payload = take(m.payload());
            let headers = match m.headers() {
                Some(h) if h.count() > 0 => {
                    let headers: Arc<[Header]> = h
                        .iter()
                        .map(|h| Header {
                            name: h.key.to_owned(),
                            value: h.value.map(Bytes::copy_from_slice),
                        })
                        .collect();
                    total += headers
                        .iter()
                        .map(|h| h.name.len() + h.value.as_ref().map_or(0, Bytes::len))
                        .sum::<usize>();
                    Some(headers)
                }
                _ => None,
            };
            out.push(Message {
                topic: topic.clone(),
                partition: m.partition(),
                generation: 0,
                offset: m.offset(),
                key_hash: m.key().map_or(0, key_hash),
                key,
                payload,
                headers,
                timestamp: m.timestamp().to_millis(),
            });
        }
        chunk_start = chunk_end;
    }
    (out, total)
}
