//! The offset tracker of one partition: which records were handed out,
//! which finished, and the offset that is safe to commit.

use std::collections::VecDeque;

/// Tracks the records of one partition from fetch to finish.
///
/// Offsets are tracked in the order Kafka delivers them (ascending, with
/// gaps where compaction or transaction markers removed records). The
/// committable offset is one past the highest offset below which every
/// tracked record is finished: Kafka's "next offset to read". It never moves
/// backwards and is not held up by gaps, because only delivered offsets are
/// tracked.
#[derive(Debug, Default)]
pub(crate) struct OffsetTracker {
    /// Unfinished-or-finished records not yet below the watermark, ascending.
    pending: VecDeque<(i64, bool)>,
    /// The highest offset ever tracked.
    last_tracked: Option<i64>,
    /// Next offset to read, once anything finished.
    committable: Option<i64>,
}

impl OffsetTracker {
    /// Starts tracking `offset`. Returns `false` (and ignores it) when the
    /// offset is not above every offset tracked before, which happens only
    /// when a stale record is redelivered; it must not be handled twice in
    /// one assignment.
    pub(crate) fn track(&mut self, offset: i64) -> bool {
        if self.last_tracked.is_some_and(|last| offset <= last) {
            return false;
        }
        self.last_tracked = Some(offset);
        self.pending.push_back((offset, false));
        true
    }

    /// Marks `offset` finished. Returns the new committable offset when it
    /// advanced.
    pub(crate) fn finish(&mut self, offset: i64) -> Option<i64> {
        let idx = self
            .pending
            .binary_search_by_key(&offset, |&(o, _)| o)
            .ok()?;
        self.pending[idx].1 = true;
        if idx != 0 {
            return None;
        }
        let mut next = None;
        while let Some(&(o, true)) = self.pending.front() {
            next = Some(o + 1);
            self.pending.pop_front();
        }
        let next = next?;
        if self.committable.is_none_or(|c| next > c) {
            self.committable = Some(next);
            return Some(next);
        }
        None
    }

    /// The offset to commit (next to read), if any record finished.
    pub(crate) fn committable(&self) -> Option<i64> {
        self.committable
    }

    /// Records tracked and not yet below the watermark.
    pub(crate) fn outstanding(&self) -> usize {
        self.pending.len()
    }

    /// The lowest offset tracked and not finished.
    #[cfg(test)]
    pub(crate) fn lowest_unfinished(&self) -> Option<i64> {
        self.pending.iter().find(|(_, done)| !done).map(|&(o, _)| o)
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
            assert!(t.track(o));
        }
        assert_eq!(t.finish(11), None);
        assert_eq!(t.committable(), None);
        assert_eq!(t.finish(10), Some(12));
        assert_eq!(t.finish(12), Some(13));
        assert_eq!(t.outstanding(), 0);
    }

    #[test]
    fn gaps_do_not_stall() {
        let mut t = OffsetTracker::default();
        for o in [5, 9, 30] {
            t.track(o);
        }
        t.finish(9);
        t.finish(5);
        assert_eq!(t.committable(), Some(10));
        t.finish(30);
        assert_eq!(t.committable(), Some(31));
    }

    #[test]
    fn stale_and_unknown_offsets_are_ignored() {
        let mut t = OffsetTracker::default();
        t.track(3);
        assert!(!t.track(3));
        assert!(!t.track(2));
        assert_eq!(t.finish(99), None);
        assert_eq!(t.finish(3), Some(4));
        assert_eq!(t.finish(3), None);
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
                prop_assert!(t.track(o));
            }
            let mut finished = std::collections::BTreeSet::new();
            let mut last = None;
            for &i in &order {
                let o = offsets[i];
                t.finish(o);
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
                t.track(o);
            }
            let mut order = offsets.clone();
            // Deterministic shuffle from the seed.
            let mut s = seed | 1;
            for i in (1..order.len()).rev() {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                order.swap(i, (s % (i as u64 + 1)) as usize);
            }
            for o in order {
                t.finish(o);
            }
            prop_assert_eq!(t.committable(), offsets.last().map(|o| o + 1));
            prop_assert_eq!(t.outstanding(), 0);
        }
    }
}
