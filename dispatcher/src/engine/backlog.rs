//! What one partition holds between Kafka and its watermark, and the room
//! left for more.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;

/// Wakes the poll thread when it sleeps with nothing to do: librdkafka
/// calls it when a partition queue or the consumer queue receives
/// something, and a partition worker calls it when its backlog has room
/// again.
#[derive(Debug, Default)]
pub(crate) struct PollWaker {
    thread: OnceLock<Thread>,
}

impl PollWaker {
    /// Registers the calling thread as the one to wake.
    pub(crate) fn register_current(&self) {
        let _ = self.thread.set(std::thread::current());
    }

    /// Wakes the poll thread (or makes its next sleep return at once).
    pub(crate) fn wake(&self) {
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }
}

/// What a partition's backlog can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Room {
    /// Records.
    pub(crate) records: usize,
    /// Bytes.
    pub(crate) bytes: usize,
}

/// The records of one partition taken from Kafka and not yet below its
/// watermark (waiting, running, or finished behind an unfinished one),
/// counted and in bytes. The poll loop takes records from the partition
/// only while both are under their limits, which bounds the worker's
/// memory and what a crash delivers again, also when one record is slow
/// and the rest of the partition races ahead. The worker releases records
/// as its watermark passes them, and wakes the poll loop when room opens
/// up after it ran out.
#[derive(Debug)]
pub(crate) struct Backlog {
    records: AtomicUsize,
    bytes: AtomicUsize,
    max_records: usize,
    max_bytes: usize,
    /// The poll loop ran out of room and waits to be woken.
    waiting: AtomicBool,
    waker: Arc<PollWaker>,
}

impl Backlog {
    pub(crate) fn new(max_records: usize, max_bytes: usize, waker: Arc<PollWaker>) -> Self {
        Backlog {
            records: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            max_records: max_records.max(1),
            max_bytes: max_bytes.max(1),
            waiting: AtomicBool::new(false),
            waker,
        }
    }

    /// What the poll loop may take now: `None` when either limit is
    /// reached. The byte room is checked before each record is taken, so
    /// the last record taken can pass the byte limit (one record larger
    /// than the limit still gets through an empty backlog).
    pub(crate) fn room(&self) -> Option<Room> {
        let records = self.records.load(Ordering::Acquire);
        let bytes = self.bytes.load(Ordering::Acquire);
        (records < self.max_records && bytes < self.max_bytes).then(|| Room {
            records: self.max_records - records,
            bytes: self.max_bytes - bytes,
        })
    }

    /// The poll loop took `records` records of `bytes` bytes.
    pub(crate) fn take(&self, records: usize, bytes: usize) {
        self.records.fetch_add(records, Ordering::AcqRel);
        self.bytes.fetch_add(bytes, Ordering::AcqRel);
    }

    /// The poll loop found no room: it will be woken when there is some.
    /// Returns whether room appeared meanwhile (then it need not wait).
    pub(crate) fn wait_for_room(&self) -> bool {
        self.waiting.store(true, Ordering::SeqCst);
        if self.resumable() {
            self.waiting.store(false, Ordering::SeqCst);
            return true;
        }
        false
    }

    /// The worker released `records` records of `bytes` bytes (they passed
    /// the watermark, or were dropped).
    pub(crate) fn release(&self, records: usize, bytes: usize) {
        if records == 0 && bytes == 0 {
            return;
        }
        self.records.fetch_sub(records, Ordering::AcqRel);
        self.bytes.fetch_sub(bytes, Ordering::AcqRel);
        if self.waiting.load(Ordering::SeqCst)
            && self.resumable()
            && self.waiting.swap(false, Ordering::SeqCst)
        {
            self.waker.wake();
        }
    }

    /// Enough room to be worth a wake-up: a quarter of each limit, so a
    /// full partition is refilled in batches, not record by record.
    fn resumable(&self) -> bool {
        let slack = |max: usize| max - (max / 4).max(1).min(max);
        let records = self.records.load(Ordering::Acquire);
        let bytes = self.bytes.load(Ordering::Acquire);
        (records == 0 || records <= slack(self.max_records))
            && (bytes == 0 || bytes <= slack(self.max_bytes))
    }

    /// Records held now.
    pub(crate) fn records(&self) -> usize {
        self.records.load(Ordering::Acquire)
    }

    /// Bytes held now.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_follows_both_limits() {
        let b = Backlog::new(10, 1_000, Arc::default());
        assert_eq!(
            b.room(),
            Some(Room {
                records: 10,
                bytes: 1_000
            })
        );
        b.take(4, 400);
        assert_eq!(
            b.room(),
            Some(Room {
                records: 6,
                bytes: 600
            })
        );
        b.take(1, 700);
        assert_eq!(b.room(), None, "bytes passed the limit");
        b.release(5, 1_100);
        assert_eq!((b.records(), b.bytes()), (0, 0));
        b.take(10, 10);
        assert_eq!(b.room(), None, "records reached the limit");
    }

    #[test]
    fn a_waiting_poll_loop_is_woken_once_a_quarter_is_free() {
        let b = Backlog::new(8, 1 << 20, Arc::default());
        b.take(8, 80);
        assert!(!b.wait_for_room());
        b.release(1, 10);
        assert!(
            b.waiting.load(Ordering::SeqCst),
            "7 of 8 held: not worth a wake-up"
        );
        b.release(1, 10);
        assert!(!b.waiting.load(Ordering::SeqCst), "6 of 8 held: woken");
    }
}
