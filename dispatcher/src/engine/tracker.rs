//! The offset tracker of one partition: which records were taken, which
//! finished, and the offset that is safe to commit.

use std::collections::VecDeque;

/// Tracks the records of one partition from fetch to finish.
///
/// Offsets arrive in the order Kafka delivers them: ascending, with gaps
/// where compaction or transaction markers removed records. The
/// committable offset is one past the highest offset below which every
/// tracked record is finished: Kafka's "next offset to read". Gaps do not
/// hold it up, because only delivered offsets are tracked.
///
/// The committable offset never moves backwards, except when the consumer
/// itself rewinds: librdkafka seeks back within an assignment after it
/// detects log truncation (an unclean leader election) or resets an
/// out-of-range offset to the earliest. The records at the reused offsets
/// are new records, so they are tracked (and handled) as such, in a new
/// *generation*; the older records at those offsets no longer count, and
/// the committable offset falls back to the rewind point until the new
/// records are finished.
#[derive(Debug, Default)]
pub(crate) struct OffsetTracker {
    /// Records not yet below the watermark, ascending by offset.
    pending: VecDeque<Entry>,
    /// The highest offset tracked in the current generation.
    last_tracked: Option<i64>,
    /// Next offset to read, once anything finished.
    committable: Option<i64>,
    /// Bumped on every rewind.
    generation: u32,
    /// Records (and their bytes) that left `pending` since
    /// [`take_released`](Self::take_released).
    released: (usize, usize),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    offset: i64,
    generation: u32,
    bytes: u32,
    done: bool,
}

/// How [`OffsetTracker::track`] took an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tracked {
    /// After every offset tracked before.
    Next,
    /// At or below the last offset tracked, which was `last`: the consumer
    /// rewound, and a new generation began.
    Rewound {
        /// The last offset tracked before the rewind.
        last: i64,
    },
}

impl OffsetTracker {
    /// Starts tracking `offset`, a record of `bytes` bytes, in the current
    /// generation (a new one when the offset is not above every offset
    /// tracked so far).
    pub(crate) fn track(&mut self, offset: i64, bytes: usize) -> Tracked {
        let mut tracked = Tracked::Next;
        if let Some(last) = self.last_tracked.filter(|&last| offset <= last) {
            tracked = Tracked::Rewound { last };
            self.generation = self.generation.wrapping_add(1);
            // The records at the reused offsets are superseded.
            while self.pending.back().is_some_and(|e| e.offset >= offset) {
                if let Some(e) = self.pending.pop_back() {
                    self.release(e);
                }
            }
            self.committable = self.committable.map(|c| c.min(offset));
        }
        self.last_tracked = Some(offset);
        self.pending.push_back(Entry {
            offset,
            generation: self.generation,
            bytes: u32::try_from(bytes).unwrap_or(u32::MAX),
            done: false,
        });
        tracked
    }

    /// The offset of the oldest record tracked and not finished.
    pub(crate) fn oldest_unfinished(&self) -> Option<i64> {
        self.pending.front().map(|e| e.offset)
    }

    /// The current generation: a record is finished with the generation
    /// it was tracked in.
    pub(crate) fn generation(&self) -> u32 {
        self.generation
    }

    fn release(&mut self, e: Entry) {
        self.released.0 += 1;
        self.released.1 += e.bytes as usize;
    }

    /// Marks `offset` of `generation` finished. Returns the new committable
    /// offset when it advanced. A record of a generation a rewind
    /// superseded is ignored.
    pub(crate) fn finish(&mut self, offset: i64, generation: u32) -> Option<i64> {
        let idx = self
            .index_of(offset)
            .filter(|&i| self.pending[i].generation == generation)?;
        self.pending[idx].done = true;
        if idx != 0 {
            return None;
        }
        let mut next = None;
        while let Some(&e) = self.pending.front().filter(|e| e.done) {
            next = Some(e.offset + 1);
            self.pending.pop_front();
            self.release(e);
        }
        let next = next?;
        if self.committable.is_none_or(|c| next > c) {
            self.committable = Some(next);
            return Some(next);
        }
        None
    }

    /// Where `offset` is in `pending`. Offsets are usually contiguous, so
    /// the distance from the first one is tried before a binary search.
    fn index_of(&self, offset: i64) -> Option<usize> {
        let first = self.pending.front()?.offset;
        let guess = usize::try_from(offset.checked_sub(first)?).ok()?;
        if self.pending.get(guess).is_some_and(|e| e.offset == offset) {
            return Some(guess);
        }
        self.pending
            .binary_search_by_key(&offset, |e| e.offset)
            .ok()
    }

    /// The offset to commit (next to read), if any record finished.
    pub(crate) fn committable(&self) -> Option<i64> {
        self.committable
    }

    /// Records tracked and not yet below the watermark.
    #[cfg(test)]
    pub(crate) fn outstanding(&self) -> usize {
        self.pending.len()
    }

    /// The records and bytes that left the tracker (passed the watermark,
    /// or were superseded by a rewind) since the last call.
    pub(crate) fn take_released(&mut self) -> (usize, usize) {
        std::mem::take(&mut self.released)
    }

    /// The lowest offset tracked and not finished.
    #[cfg(test)]
    pub(crate) fn lowest_unfinished(&self) -> Option<i64> {
        self.pending.iter().find(|e| !e.done).map(|e| e.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn commits_next_offset_after_contiguous_prefix() {
        let mut t = OffsetTracker::default();
        for o in [10, 11, 12] {
            assert_eq!(t.track(o, 10), Tracked::Next);
        }
        assert_eq!(t.finish(11, 0), None);
        assert_eq!(t.committable(), None);
        assert_eq!(t.finish(10, 0), Some(12));
        assert_eq!(t.finish(12, 0), Some(13));
        assert_eq!(t.outstanding(), 0);
        assert_eq!(t.take_released(), (3, 30));
    }

    #[test]
    fn gaps_do_not_stall() {
        let mut t = OffsetTracker::default();
        for o in [5, 9, 30] {
            t.track(o, 10);
        }
        t.finish(9, 0);
        t.finish(5, 0);
        assert_eq!(t.committable(), Some(10));
        t.finish(30, 0);
        assert_eq!(t.committable(), Some(31));
    }

    #[test]
    fn unknown_offsets_are_ignored() {
        let mut t = OffsetTracker::default();
        t.track(3, 10);
        assert_eq!(t.finish(99, 0), None);
        assert_eq!(t.finish(3, 0), Some(4));
        assert_eq!(t.finish(3, 0), None);
        assert_eq!(t.take_released(), (1, 10));
    }

    #[test]
    fn a_rewind_starts_a_generation_and_holds_the_watermark_at_the_rewind_point() {
        let mut t = OffsetTracker::default();
        for o in 10..20 {
            t.track(o, 1);
        }
        for o in 10..15 {
            t.finish(o, 0);
        }
        assert_eq!(t.committable(), Some(15));
        // librdkafka rewinds to 12: 12.. are new records.
        assert_eq!(t.track(12, 1), Tracked::Rewound { last: 19 });
        assert_eq!(t.generation(), 1);
        assert_eq!(
            t.committable(),
            Some(12),
            "nothing past an unhandled record"
        );
        // An old record at a reused offset finishing changes nothing.
        assert_eq!(t.finish(15, 0), None);
        assert_eq!(t.finish(12, 0), None);
        assert_eq!(t.committable(), Some(12));
        t.track(13, 1);
        assert_eq!(t.finish(13, 1), None, "12 is not finished");
        assert_eq!(t.finish(12, 1), Some(14));
        assert_eq!(t.lowest_unfinished(), None);
    }

    /// Offsets with random gaps, and a random order of finishing a random
    /// subset of them.
    fn scenario() -> impl Strategy<Value = (Vec<i64>, Vec<usize>)> {
        prop::collection::vec(1i64..5, 1..200).prop_flat_map(|steps| {
            let offsets: Vec<i64> = steps
                .iter()
                .scan(0i64, |acc, s| {
                    *acc += s;
                    Some(*acc)
                })
                .collect();
            let n = offsets.len();
            let order = prop::collection::vec(0..n, 0..n * 2)
                .prop_map(|v| v)
                .prop_shuffle();
            (Just(offsets), order)
        })
    }

    proptest! {
        #[test]
        fn never_passes_an_unfinished_offset_and_never_moves_back((offsets, order) in scenario()) {
            let mut t = OffsetTracker::default();
            for &o in &offsets {
                prop_assert_eq!(t.track(o, 10), Tracked::Next);
            }
            let mut finished = std::collections::BTreeSet::new();
            let mut last = None;
            for &i in &order {
                let o = offsets[i];
                t.finish(o, 0);
                finished.insert(o);
                let c = t.committable();
                // Monotonic.
                prop_assert!(c >= last, "moved back from {last:?} to {c:?}");
                last = c;
                if let Some(c) = c {
                    // Every tracked offset below the commit point is finished.
                    for &o in offsets.iter().filter(|&&o| o < c) {
                        prop_assert!(finished.contains(&o), "committed {c} past unfinished {o}");
                    }
                }
                // The commit point is as far as it may be: the lowest unfinished offset.
                let lowest = offsets.iter().copied().find(|o| !finished.contains(o));
                prop_assert_eq!(t.lowest_unfinished(), lowest);
                if let (Some(c), Some(l)) = (c, lowest) {
                    prop_assert!(c <= l);
                    let prev = offsets.iter().copied().rfind(|&o| o < l);
                    prop_assert_eq!(Some(c), prev.map(|p| p + 1));
                }
            }
        }

        #[test]
        fn commits_everything_once_everything_finishes(
            (offsets, _) in scenario(),
            seed in any::<u64>(),
        ) {
            let mut t = OffsetTracker::default();
            for &o in &offsets {
                t.track(o, 10);
            }
            let mut order = offsets.clone();
            // Deterministic shuffle from the seed.
            let mut s = seed | 1;
            for i in (1..order.len()).rev() {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                order.swap(i, (s % (i as u64 + 1)) as usize);
            }
            for o in order {
                t.finish(o, 0);
            }
            prop_assert_eq!(t.committable(), offsets.last().map(|o| o + 1));
            prop_assert_eq!(t.outstanding(), 0);
        }
    }

    /// Steps of a partition's life with rewinds: deliver the next offset,
    /// rewind by some amount, or finish some delivered record.
    #[derive(Debug, Clone)]
    enum Step {
        Deliver(i64),
        Rewind(i64),
        Finish(usize),
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        prop::collection::vec(
            prop_oneof![
                6 => (1i64..3).prop_map(Step::Deliver),
                1 => (0i64..6).prop_map(Step::Rewind),
                6 => (0usize..64).prop_map(Step::Finish),
            ],
            1..300,
        )
    }

    proptest! {
        #[test]
        fn rewinds_never_let_the_watermark_pass_a_live_unfinished_record(steps in steps()) {
            let mut t = OffsetTracker::default();
            let mut next = 0i64;
            // Delivered records not superseded: (offset, generation, finished).
            let mut live: Vec<(i64, u32, bool)> = Vec::new();
            for step in steps {
                match step {
                    Step::Deliver(gap) => {
                        let o = next + gap - 1;
                        t.track(o, 1);
                        live.push((o, t.generation(), false));
                        next = o + 1;
                    }
                    Step::Rewind(back) => {
                        let o = (next - 1 - back).max(0);
                        if next == 0 { continue; }
                        let rewound = matches!(t.track(o, 1), Tracked::Rewound { .. });
                        prop_assert!(rewound, "a rewind to {} is reported", o);
                        live.retain(|(lo, _, _)| *lo < o);
                        live.push((o, t.generation(), false));
                        next = o + 1;
                    }
                    Step::Finish(i) => {
                        if live.is_empty() { continue; }
                        let i = i % live.len();
                        let (o, g, _) = live[i];
                        t.finish(o, g);
                        live[i].2 = true;
                    }
                }
                if let (Some(c), Some(lowest)) = (
                    t.committable(),
                    live.iter().filter(|(_, _, done)| !done).map(|(o, _, _)| *o).min(),
                ) {
                    prop_assert!(c <= lowest, "committable {c} passed unfinished {lowest}");
                }
            }
        }
    }
}
