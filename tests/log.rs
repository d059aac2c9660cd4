//! The handling log the `test_consumer` processes append to, and its
//! checker: nothing lost, per-key order, no redelivery below a commit.

use crate::produce::key_name;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

/// One line of the handling log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogLine {
    /// A record handled by process `pid`.
    Record {
        /// The record's key.
        key: String,
        /// Its sequence number within the key.
        seq: u64,
        /// Its partition.
        partition: i32,
        /// Its offset.
        offset: i64,
        /// The handling process.
        pid: u32,
    },
    /// A rebalance event of process `pid`: `assigned`, `revoked` or
    /// `drained` (in-flight records finished and committed) for the listed
    /// partitions.
    Marker {
        /// The event.
        kind: String,
        /// The process.
        pid: u32,
        /// The partitions, as numbers.
        partitions: Vec<i32>,
    },
    /// A commit of process `pid` went through: `(partition, offset)`.
    Committed {
        /// The process.
        pid: u32,
        /// The committed offsets.
        offsets: Vec<(i32, i64)>,
    },
}

fn parse_partitions(s: &str) -> Vec<i32> {
    // "topic[0],topic[3]"
    s.split(',')
        .filter_map(|tp| {
            let open = tp.rfind('[')?;
            tp[open + 1..].trim_end_matches(']').parse().ok()
        })
        .collect()
}

/// Reads the handling log. Panics on a malformed line: every line is
/// written with one `write` call, so a torn line is itself a defect. The
/// one exception is the last line of a log still being written: a reader
/// can see an append half-way, so a last line without its newline is left
/// for the next read.
pub fn read_log(path: &Path) -> Vec<LogLine> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("cannot read {}: {e}", path.display()),
    };
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    complete
        .lines()
        .enumerate()
        .map(|(i, l)| {
            parse_line(l).unwrap_or_else(|| panic!("malformed log line {}: {l:?}", i + 1))
        })
        .collect()
}

fn parse_line(l: &str) -> Option<LogLine> {
    let parts: Vec<&str> = l.split(' ').collect();
    if parts.first() == Some(&"#") && parts.get(1) == Some(&"committed") {
        // "topic[0]@12,topic[3]@40"
        let offsets = parts
            .get(3)
            .copied()
            .unwrap_or("")
            .split(',')
            .filter(|e| !e.is_empty())
            .map(|e| {
                let (tp, o) = e.rsplit_once('@')?;
                let p = parse_partitions(tp).first().copied()?;
                Some((p, o.parse().ok()?))
            })
            .collect::<Option<Vec<_>>>()?;
        return Some(LogLine::Committed {
            pid: parts.get(2)?.parse().ok()?,
            offsets,
        });
    }
    if parts.first() == Some(&"#") {
        return Some(LogLine::Marker {
            kind: (*parts.get(1)?).to_owned(),
            pid: parts.get(2)?.parse().ok()?,
            partitions: parse_partitions(parts.get(3).copied().unwrap_or("")),
        });
    }
    if parts.len() != 5 {
        return None;
    }
    Some(LogLine::Record {
        key: parts[0].to_owned(),
        seq: parts[1].parse().ok()?,
        partition: parts[2].parse().ok()?,
        offset: parts[3].parse().ok()?,
        pid: parts[4].parse().ok()?,
    })
}

/// How many distinct `(key, seq)` the log holds for keys `k00..`, and
/// whether every record below `produced[key]` is in it.
pub fn handled_all(lines: &[LogLine], produced: &[u64]) -> bool {
    let mut seen: Vec<Vec<bool>> = produced.iter().map(|&n| vec![false; n as usize]).collect();
    for l in lines {
        if let LogLine::Record { key, seq, .. } = l {
            if let Some(i) = key.strip_prefix('k').and_then(|n| n.parse::<usize>().ok()) {
                if let Some(slot) = seen.get_mut(i).and_then(|s| s.get_mut(*seq as usize)) {
                    *slot = true;
                }
            }
        }
    }
    seen.iter().all(|s| s.iter().all(|&b| b))
}

/// The records each process handled.
pub fn records_by_pid(lines: &[LogLine]) -> BTreeMap<u32, usize> {
    let mut m = BTreeMap::new();
    for l in lines {
        if let LogLine::Record { pid, .. } = l {
            *m.entry(*pid).or_default() += 1;
        }
    }
    m
}

/// Figures of one process in the log.
#[derive(Debug, Default, Clone)]
pub struct ProcessFigures {
    /// Record lines written.
    pub handled: usize,
    /// Of those, records some process had handled before (redeliveries).
    pub duplicates: usize,
    /// Assignments received.
    pub assignments: usize,
    /// Revokes and shutdown drains completed.
    pub drains: usize,
}

/// What the checker found.
#[derive(Debug, Default)]
pub struct Report {
    /// Record lines in the log.
    pub lines: usize,
    /// Distinct `(key, seq)` handled.
    pub distinct: usize,
    /// Records produced.
    pub produced: u64,
    /// `lines - distinct`.
    pub duplicates: usize,
    /// Produced records never handled.
    pub lost: usize,
    /// Where each handled `(key, seq)` was: `(partition, offset)`.
    pub handled_at: BTreeMap<(String, u64), (i32, i64)>,
    /// Successful commits logged (`# committed` lines).
    pub commits: usize,
    /// The end of each partition: one past the highest offset handled.
    pub ends: BTreeMap<i32, i64>,
    /// A key seen again by the same process after a drain of its partition
    /// (redelivery within one process after a rebalance).
    pub redelivered_within_process: usize,
    /// Per process, in order of first appearance.
    pub processes: Vec<(u32, ProcessFigures)>,
    /// Every violation found; empty when the log is correct.
    pub violations: Vec<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "produced {} records; log has {} record lines, {} distinct, {} duplicates ({} redelivered within one process after a rebalance)",
            self.produced, self.lines, self.distinct, self.duplicates, self.redelivered_within_process
        )?;
        for (i, (pid, p)) in self.processes.iter().enumerate() {
            writeln!(
                f,
                "  process #{i} pid {pid}: handled {}, duplicates {}, assignments {}, drains {}",
                p.handled, p.duplicates, p.assignments, p.drains
            )?;
        }
        if !self.violations.is_empty() {
            writeln!(f, "{} violations, first ones:", self.violations.len())?;
            for v in self.violations.iter().take(20) {
                writeln!(f, "  {v}")?;
            }
        }
        Ok(())
    }
}

/// Checks the log against what was produced (`produced[i]` records of key
/// `k{i:02}`, seqs `0..produced[i]`):
///
/// - every produced record was handled at least once (nothing lost);
/// - no unknown record was handled;
/// - per key, in file order, a seq is never more than one past the highest
///   seq of that key handled before (no gap: a record handled before its
///   predecessor was handled even once is lost or out of order);
/// - per key, within one process and one assignment of its partition (no
///   `drained` marker for the partition in between), each seq is exactly one
///   past the previous (strictly increasing and contiguous);
/// - every process logs an assignment before it handles a record of a
///   partition (guards the marker parsing itself);
/// - a key's records all sit in one partition, with offsets increasing with
///   seq;
/// - no process handles a record below the offset of its partition last
///   committed (`# committed` lines) before the process was assigned the
///   partition: what a crash or a rebalance delivers again is only what was
///   handled after the last commit.
pub fn check(lines: &[LogLine], produced: &[u64]) -> Report {
    let mut r = Report {
        produced: produced.iter().sum(),
        ..Report::default()
    };
    let mut max_seen: HashMap<&str, u64> = HashMap::new();
    let mut seen: HashMap<(&str, u64), i64> = HashMap::new();
    let mut key_partition: HashMap<&str, i32> = HashMap::new();
    // (pid, partition) -> assignment epoch in that process.
    let mut epoch: HashMap<(u32, i32), u64> = HashMap::new();
    let mut assigned: HashMap<(u32, i32), bool> = HashMap::new();
    // (pid, key) -> (last seq, epoch of the partition then).
    let mut last: HashMap<(u32, &str), (u64, u64)> = HashMap::new();
    let mut procs: Vec<(u32, ProcessFigures)> = Vec::new();
    // Partition -> highest offset committed so far; (pid, partition) -> the
    // committed offset when pid was last assigned the partition.
    let mut committed_hi: HashMap<i32, i64> = HashMap::new();
    let mut floor: HashMap<(u32, i32), i64> = HashMap::new();
    fn proc_of(procs: &mut Vec<(u32, ProcessFigures)>, pid: u32) -> &mut ProcessFigures {
        let i = match procs.iter().position(|(p, _)| *p == pid) {
            Some(i) => i,
            None => {
                procs.push((pid, ProcessFigures::default()));
                procs.len() - 1
            }
        };
        &mut procs[i].1
    }
    for (n, l) in lines.iter().enumerate() {
        let line_no = n + 1;
        match l {
            LogLine::Committed { offsets, .. } => {
                r.commits += 1;
                for &(p, o) in offsets {
                    // The last commit logged, not the highest: a committed
                    // offset can go down (after a rewind), and the next
                    // owner reads the last one.
                    committed_hi.insert(p, o);
                }
            }
            LogLine::Marker {
                kind,
                pid,
                partitions,
            } => match kind.as_str() {
                "assigned" => {
                    proc_of(&mut procs, *pid).assignments += 1;
                    for p in partitions {
                        assigned.insert((*pid, *p), true);
                        floor.insert((*pid, *p), committed_hi.get(p).copied().unwrap_or(0));
                    }
                }
                "drained" => {
                    proc_of(&mut procs, *pid).drains += 1;
                    for p in partitions {
                        *epoch.entry((*pid, *p)).or_default() += 1;
                    }
                }
                _ => {}
            },
            LogLine::Record {
                key,
                seq,
                partition,
                offset,
                pid,
            } => {
                r.lines += 1;
                let key = key.as_str();
                let fig = proc_of(&mut procs, *pid);
                fig.handled += 1;
                let known = key
                    .strip_prefix('k')
                    .and_then(|i| i.parse::<usize>().ok())
                    .and_then(|i| produced.get(i))
                    .is_some_and(|&n| *seq < n);
                if !known {
                    r.violations
                        .push(format!("line {line_no}: {key}:{seq} was never produced"));
                }
                if !assigned.get(&(*pid, *partition)).copied().unwrap_or(false) {
                    r.violations.push(format!(
                        "line {line_no}: pid {pid} handled {key}:{seq} of partition {partition} before any 'assigned' marker for it"
                    ));
                    assigned.insert((*pid, *partition), true);
                }
                let committed_before = floor.get(&(*pid, *partition)).copied().unwrap_or(0);
                if *offset < committed_before {
                    r.violations.push(format!(
                        "line {line_no}: REWIND: pid {pid} handled {key}:{seq} at {partition}@{offset}, below the offset {committed_before} committed before it was assigned the partition"
                    ));
                }
                let end = r.ends.entry(*partition).or_insert(0);
                *end = (*end).max(offset + 1);
                match key_partition.insert(key, *partition) {
                    Some(p) if p != *partition => r.violations.push(format!(
                        "line {line_no}: {key} seen in partitions {p} and {partition}"
                    )),
                    _ => {}
                }
                match seen.get(&(key, *seq)) {
                    Some(&o) => {
                        fig.duplicates += 1;
                        if o != *offset {
                            r.violations.push(format!(
                                "line {line_no}: {key}:{seq} at offset {offset}, earlier at {o}"
                            ));
                        }
                    }
                    None => {
                        seen.insert((key, *seq), *offset);
                    }
                }
                let max = max_seen.get(key).copied();
                let allowed = max.map_or(0, |m| m + 1);
                if *seq > allowed {
                    r.violations.push(format!(
                        "line {line_no}: GAP: pid {pid} handled {key}:{seq} but the highest seq of {key} handled before was {} (seqs {allowed}..{} never handled before it)",
                        max.map_or("none".to_owned(), |m| m.to_string()),
                        seq - 1
                    ));
                }
                if max.is_none_or(|m| *seq > m) {
                    max_seen.insert(key, *seq);
                }
                let e = epoch.get(&(*pid, *partition)).copied().unwrap_or(0);
                if let Some(&(prev, prev_epoch)) = last.get(&(*pid, key)) {
                    if prev_epoch == e {
                        if *seq != prev + 1 {
                            r.violations.push(format!(
                                "line {line_no}: ORDER: pid {pid} handled {key}:{seq} right after {key}:{prev} within one assignment"
                            ));
                        }
                    } else if *seq <= prev {
                        r.redelivered_within_process += 1;
                    }
                }
                last.insert((*pid, key), (*seq, e));
            }
        }
    }
    // Offsets increase with seq within a key.
    let mut by_key: BTreeMap<&str, Vec<(u64, i64)>> = BTreeMap::new();
    for (&(k, s), &o) in &seen {
        by_key.entry(k).or_default().push((s, o));
    }
    for (k, mut v) in by_key {
        v.sort_unstable();
        if v.windows(2).any(|w| w[1].1 <= w[0].1) {
            r.violations
                .push(format!("{k}: offsets do not increase with seq"));
        }
    }
    for (i, &n) in produced.iter().enumerate() {
        let k = key_name(i);
        let missing: Vec<u64> = (0..n)
            .filter(|s| !seen.contains_key(&(k.as_str(), *s)))
            .collect();
        r.lost += missing.len();
        if !missing.is_empty() {
            r.violations.push(format!(
                "LOST: {k}: {} of {n} records never handled, first {:?}",
                missing.len(),
                &missing[..missing.len().min(10)]
            ));
        }
    }
    r.distinct = seen.len();
    r.handled_at = seen
        .iter()
        .map(|(&(k, s), &o)| {
            let p = key_partition.get(k).copied().unwrap_or(-1);
            ((k.to_owned(), s), (p, o))
        })
        .collect();
    r.duplicates = r.lines - r.distinct;
    r.processes = procs;
    r
}

/// Whether process `pid` has, in its current assignment of every
/// partition, handled every offset from the committed offset to the end, so
/// that its watermark is at the end of each partition: a clean shutdown must
/// then commit exactly the end offsets. A partition already committed to its
/// end needs nothing.
pub fn caught_up(
    lines: &[LogLine],
    pid: u32,
    committed: &BTreeMap<i32, i64>,
    ends: &BTreeMap<i32, i64>,
) -> bool {
    ends.iter().all(|(&p, &end)| {
        let c = committed.get(&p).copied().unwrap_or(0);
        if c >= end {
            return true;
        }
        // The latest assignment of p to pid, with no drain of p after it.
        let mut offsets: Option<Vec<i64>> = None;
        for l in lines {
            match l {
                LogLine::Marker {
                    kind,
                    pid: q,
                    partitions,
                } if *q == pid && partitions.contains(&p) => match kind.as_str() {
                    "assigned" => offsets = Some(Vec::new()),
                    "drained" => offsets = None,
                    _ => {}
                },
                LogLine::Record {
                    partition,
                    offset,
                    pid: q,
                    ..
                } if *q == pid && *partition == p => {
                    if let Some(o) = offsets.as_mut() {
                        o.push(*offset);
                    }
                }
                _ => {}
            }
        }
        let Some(mut o) = offsets else {
            return false;
        };
        o.sort_unstable();
        o.dedup();
        match (o.first(), o.last()) {
            (Some(&first), Some(&last)) => {
                first <= c && last == end - 1 && o.len() as i64 == last - first + 1
            }
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<LogLine> {
        text.lines()
            .map(|l| parse_line(l).unwrap_or_else(|| panic!("bad fixture line {l:?}")))
            .collect()
    }

    #[test]
    fn a_record_redelivered_below_a_logged_commit_is_a_rewind() {
        // pid 1 handles k00:0..2 at offsets 0..2 and commits 2; pid 2 gets
        // the partition and handles offset 1 again: below the commit.
        let log = lines(
            "# assigned 1 t[0]\n\
             k00 0 0 0 1\n\
             k00 1 0 1 1\n\
             # committed 1 t[0]@2\n\
             # assigned 2 t[0]\n\
             k00 1 0 1 2\n",
        );
        let report = check(&log, &[2]);
        assert_eq!(report.commits, 1);
        assert!(
            report.violations.iter().any(|v| v.contains("REWIND")),
            "{report}"
        );
    }

    #[test]
    fn a_record_redelivered_at_or_above_the_commit_is_a_duplicate_only() {
        let log = lines(
            "# assigned 1 t[0]\n\
             k00 0 0 0 1\n\
             k00 1 0 1 1\n\
             # committed 1 t[0]@1\n\
             # assigned 2 t[0]\n\
             k00 1 0 1 2\n",
        );
        let report = check(&log, &[2]);
        assert!(report.violations.is_empty(), "{report}");
        assert_eq!(report.duplicates, 1);
    }
}
