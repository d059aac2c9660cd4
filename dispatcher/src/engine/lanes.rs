//! Ordering lanes of one partition: which keys have a record running, and
//! the records waiting behind it.

use crate::message::Message;
use crate::policy::OrderingMode as Ordering;
use rustc_hash::FxHashMap;
use std::collections::hash_map::Entry;
use std::collections::VecDeque;

/// A lane is busy while one of its records is ready or running; records of
/// a busy lane wait in it, in offset order. In `key` mode each key has a
/// lane (records without a key share one), in `partition` mode the whole
/// partition is one lane, in `unordered` mode there are none.
///
/// Key lanes are found by a 64-bit hash of the key, computed once per
/// record while its bytes are in cache. Two keys with the same hash share a
/// lane: that orders them more strictly than needed, never less.
#[derive(Debug)]
pub(crate) struct Lanes {
    ordering: Ordering,
    keyed: FxHashMap<u64, VecDeque<Message>>,
    /// The lane of records without a key, or of the whole partition.
    shared: Option<VecDeque<Message>>,
}

/// Names a record's lane without borrowing the record.
#[derive(Debug)]
pub(crate) enum LaneId {
    None,
    Shared,
    Key(u64),
}

impl Lanes {
    pub(crate) fn new(ordering: Ordering) -> Self {
        Lanes {
            ordering,
            keyed: FxHashMap::default(),
            shared: None,
        }
    }

    fn uses_shared(&self, msg: &Message) -> Option<bool> {
        match self.ordering {
            Ordering::Unordered => None,
            Ordering::Partition => Some(true),
            Ordering::Key => Some(msg.key().is_none()),
        }
    }

    fn waiting_mut(&mut self, msg: &Message) -> Option<&mut VecDeque<Message>> {
        match self.uses_shared(msg)? {
            true => self.shared.as_mut(),
            false => self.keyed.get_mut(&msg.key_hash),
        }
    }

    /// Returns the record when its lane is free (the caller starts it and
    /// opens the lane); queues it behind the lane's running record when busy.
    pub(crate) fn admit(&mut self, msg: Message) -> Option<Message> {
        match self.waiting_mut(&msg) {
            Some(waiting) => {
                waiting.push_back(msg);
                None
            }
            None => Some(msg),
        }
    }

    /// The lane of `msg`, to open later.
    pub(crate) fn id(&self, msg: &Message) -> LaneId {
        match self.uses_shared(msg) {
            None => LaneId::None,
            Some(true) => LaneId::Shared,
            Some(false) => LaneId::Key(msg.key_hash),
        }
    }

    /// Marks a lane busy.
    pub(crate) fn open(&mut self, id: LaneId) {
        match id {
            LaneId::None => {}
            LaneId::Shared => {
                self.shared.get_or_insert_with(VecDeque::new);
            }
            LaneId::Key(k) => {
                self.keyed.entry(k).or_default();
            }
        }
    }

    /// The running record of a lane finished: returns the lane's next record
    /// (the lane stays busy for it), or frees the lane.
    pub(crate) fn release(&mut self, msg: &Message) -> Option<Message> {
        match self.uses_shared(msg)? {
            true => {
                let next = self.shared.as_mut().and_then(VecDeque::pop_front);
                if next.is_none() {
                    self.shared = None;
                }
                next
            }
            // One lookup: take the next record, or free the lane.
            false => match self.keyed.entry(msg.key_hash) {
                Entry::Occupied(mut lane) => {
                    let next = lane.get_mut().pop_front();
                    if next.is_none() {
                        lane.remove();
                    }
                    next
                }
                Entry::Vacant(_) => None,
            },
        }
    }

    /// Drops the waiting records at or above `offset` (a rewind delivers
    /// them again) and keeps the ones below, and every lane's place.
    /// Returns how many were dropped.
    pub(crate) fn drop_from(&mut self, offset: i64) -> usize {
        let mut dropped = 0;
        for waiting in self.keyed.values_mut().chain(self.shared.as_mut()) {
            let before = waiting.len();
            waiting.retain(|m| m.offset() < offset);
            dropped += before - waiting.len();
        }
        dropped
    }

    /// Drops every waiting record and frees every lane; returns how many
    /// records were dropped.
    pub(crate) fn clear(&mut self) -> usize {
        let dropped = self.keyed.values().map(VecDeque::len).sum::<usize>()
            + self.shared.as_ref().map_or(0, VecDeque::len);
        self.keyed.clear();
        self.shared = None;
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(offset: i64, key: Option<&'static str>) -> Message {
        let m = Message::new("t", 0, offset);
        match key {
            Some(k) => m.with_key(k),
            None => m,
        }
    }

    fn start(lanes: &mut Lanes, m: Message) -> Option<Message> {
        let m = lanes.admit(m)?;
        let id = lanes.id(&m);
        lanes.open(id);
        Some(m)
    }

    #[test]
    fn key_mode_serialises_each_key_and_keyless_records() {
        let mut l = Lanes::new(Ordering::Key);
        let a0 = start(&mut l, rec(0, Some("a"))).expect("a free");
        assert!(start(&mut l, rec(1, Some("a"))).is_none(), "a busy");
        let b2 = start(&mut l, rec(2, Some("b"))).expect("b free");
        let n3 = start(&mut l, rec(3, None)).expect("keyless free");
        assert!(start(&mut l, rec(4, None)).is_none(), "keyless busy");
        assert!(start(&mut l, rec(5, Some("a"))).is_none());
        assert_eq!(l.release(&a0).map(|m| m.offset()), Some(1));
        assert_eq!(l.release(&b2).map(|m| m.offset()), None);
        assert!(start(&mut l, rec(6, Some("b"))).is_some(), "b free again");
        assert_eq!(l.release(&n3).map(|m| m.offset()), Some(4));
        assert_eq!(l.clear(), 1, "offset 5 was waiting");
    }

    #[test]
    fn partition_mode_is_one_lane_and_unordered_has_none() {
        let mut l = Lanes::new(Ordering::Partition);
        let first = start(&mut l, rec(0, Some("a"))).expect("free");
        assert!(start(&mut l, rec(1, Some("b"))).is_none());
        assert_eq!(l.release(&first).map(|m| m.offset()), Some(1));
        let mut u = Lanes::new(Ordering::Unordered);
        assert!(start(&mut u, rec(0, Some("a"))).is_some());
        assert!(start(&mut u, rec(1, Some("a"))).is_some());
        assert_eq!(u.clear(), 0);
    }
}
