//! Shared pieces of the end-to-end tests: child processes that are always
//! killed, a keyed producer, and the checker of the handling log written by
//! the `test_consumer` processes; and, for the TLS tests, a tansu broker
//! process ([`tansu`]) behind a TLS front with test-made certificates
//! ([`tls_front`]).

pub mod tansu;
pub mod tls_front;

use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A child process that is killed (SIGKILL, by its PID) when dropped, so no
/// process outlives a failing test.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Child,
    status: Option<ExitStatus>,
}

impl ChildGuard {
    /// Wraps a spawned child.
    pub fn new(name: impl Into<String>, child: Child) -> Self {
        ChildGuard {
            name: name.into(),
            child,
            status: None,
        }
    }

    /// The child's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The name given at spawn, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends SIGKILL and reaps the child.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(s) = self.try_status() {
            return s;
        }
        let _ = self.child.kill();
        let s = self.child.wait().expect("reap a killed child");
        self.status = Some(s);
        s
    }

    /// Sends SIGTERM (through `kill -TERM PID`).
    pub fn terminate(&mut self) {
        if self.try_status().is_some() {
            return;
        }
        let pid = self.pid().to_string();
        let ok = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "could not send SIGTERM to {} (pid {pid})", self.name);
    }

    /// The exit status if the child has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("query a child's status");
        }
        self.status
    }

    /// Waits up to `timeout` for the child to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_status() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.try_status().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A scratch directory for one test run, removed when the test passes.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    /// Creates a fresh directory named after the test and this process.
    pub fn new(test: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("dispatcher-e2e-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create the work directory");
        WorkDir { path, keep: true }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the directory when dropped (call when the test passed).
    pub fn remove_on_drop(&mut self) {
        self.keep = false;
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("e2e: logs kept in {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Starts `test_broker` with `topics` of `partitions` partitions and returns
/// it with its bootstrap servers.
pub fn start_broker(
    exe: &str,
    dir: &Path,
    partitions: i32,
    topics: &[&str],
) -> (ChildGuard, String) {
    let stderr = std::fs::File::create(dir.join("broker.err")).expect("create broker.err");
    let child = Command::new(exe)
        .arg(partitions.to_string())
        .args(topics)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn test_broker");
    let mut guard = ChildGuard::new("test_broker", child);
    let stdout = guard.child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("test_broker printed its bootstrap servers within 30 s");
    let servers = line.trim().to_owned();
    assert!(
        !servers.is_empty(),
        "test_broker exited without printing its bootstrap servers"
    );
    (guard, servers)
}

/// What every multi-process scenario starts with: a `test_broker` process
/// with one topic, the handling log, and how to start consumers on it.
pub struct Scenario {
    /// The broker process; killed when dropped.
    pub broker: ChildGuard,
    /// Its bootstrap servers.
    pub brokers: String,
    /// The handling log all consumers append to.
    pub log: PathBuf,
    /// How to start consumers.
    pub consumers: ConsumerConfig,
}

impl Scenario {
    /// Starts the broker with `topic` of `partitions` partitions, files in
    /// `dir`. `broker_exe` and `consumer_exe` are the paths of the
    /// `test_broker` and `test_consumer` binaries.
    pub fn start(
        dir: &Path,
        broker_exe: &str,
        consumer_exe: &str,
        partitions: i32,
        topic: &str,
        group: &str,
    ) -> Self {
        let (broker, brokers) = start_broker(broker_exe, dir, partitions, &[topic]);
        let log = dir.join("handled.log");
        let consumers = ConsumerConfig {
            exe: consumer_exe.to_owned(),
            brokers: brokers.clone(),
            group: group.to_owned(),
            topic: topic.to_owned(),
            log: log.clone(),
            dir: dir.to_owned(),
        };
        Scenario {
            broker,
            brokers,
            log,
            consumers,
        }
    }
}

/// How to start `test_consumer` processes.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Path of the `test_consumer` binary.
    pub exe: String,
    /// Bootstrap servers.
    pub brokers: String,
    /// Consumer group.
    pub group: String,
    /// Topic to consume.
    pub topic: String,
    /// The shared handling log.
    pub log: PathBuf,
    /// Where each process's stderr goes (`consumer-N.err`).
    pub dir: PathBuf,
}

impl ConsumerConfig {
    /// Starts consumer number `n`.
    pub fn spawn(&self, n: usize) -> ChildGuard {
        self.spawn_with(n, &[])
    }

    /// Starts consumer number `n` with extra environment variables.
    pub fn spawn_with(&self, n: usize, env: &[(&str, &str)]) -> ChildGuard {
        let stderr = std::fs::File::create(self.dir.join(format!("consumer-{n}.err")))
            .expect("create the consumer's stderr file");
        let child = Command::new(&self.exe)
            .env("KAFKA_BROKERS", &self.brokers)
            .env("KAFKA_GROUP_ID", &self.group)
            .env("E2E_TOPIC", &self.topic)
            .env("E2E_LOG", &self.log)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn test_consumer");
        ChildGuard::new(format!("consumer-{n}"), child)
    }
}

/// Polls `condition` every 50 ms until it holds or `timeout` passes.
pub fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            eprintln!("e2e: timed out after {timeout:?} waiting for {what}");
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The key of index `i`.
pub fn key_name(i: usize) -> String {
    format!("k{i:02}")
}

/// Produces keyed records continuously: rounds of one record per key
/// (payload `key:seq`, seq counting from 0 per key), each round acknowledged
/// before the next starts, so per key the offsets follow the seqs.
#[derive(Debug)]
pub struct KeyedProducer {
    stop: Arc<AtomicBool>,
    produced: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<Vec<u64>>,
}

impl KeyedProducer {
    /// Starts producing to `topic`, one round of `keys` records every
    /// `every`.
    pub fn start(brokers: &str, topic: &str, keys: usize, every: Duration) -> Self {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("linger.ms", "1")
            .set("message.timeout.ms", "30000")
            .create()
            .expect("create the producer");
        let stop = Arc::new(AtomicBool::new(false));
        let produced = Arc::new(AtomicU64::new(0));
        let (s, p, topic) = (stop.clone(), produced.clone(), topic.to_owned());
        let task = tokio::spawn(async move {
            let names: Vec<String> = (0..keys).map(key_name).collect();
            let mut seq: u64 = 0;
            let mut tick = tokio::time::interval(every);
            while !s.load(Ordering::Acquire) {
                tick.tick().await;
                let payloads: Vec<String> = names.iter().map(|k| format!("{k}:{seq}")).collect();
                let sends = names.iter().zip(&payloads).map(|(k, v)| {
                    producer.send(
                        FutureRecord::to(&topic).key(k.as_str()).payload(v.as_str()),
                        Duration::from_secs(30),
                    )
                });
                for r in futures::future::join_all(sends).await {
                    if let Err((e, _)) = r {
                        panic!("producing failed: {e}");
                    }
                }
                seq += 1;
                p.fetch_add(keys as u64, Ordering::Release);
            }
            vec![seq; keys]
        });
        KeyedProducer {
            stop,
            produced,
            task,
        }
    }

    /// Records acknowledged so far.
    pub fn produced(&self) -> u64 {
        self.produced.load(Ordering::Acquire)
    }

    /// Stops after the current round; returns the count produced per key.
    pub async fn stop(self) -> Vec<u64> {
        self.stop.store(true, Ordering::Release);
        self.task.await.expect("the producer task panicked")
    }
}

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
///   seq.
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
            LogLine::Marker {
                kind,
                pid,
                partitions,
            } => match kind.as_str() {
                "assigned" => {
                    proc_of(&mut procs, *pid).assignments += 1;
                    for p in partitions {
                        assigned.insert((*pid, *p), true);
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
        if !missing.is_empty() {
            r.violations.push(format!(
                "LOST: {k}: {} of {n} records never handled, first {:?}",
                missing.len(),
                &missing[..missing.len().min(10)]
            ));
        }
    }
    r.distinct = seen.len();
    r.duplicates = r.lines - r.distinct;
    r.processes = procs;
    r
}

/// The committed offsets of `group` and the end offsets of `topic`.
pub fn offsets(
    brokers: &str,
    group: &str,
    topic: &str,
) -> (BTreeMap<i32, i64>, BTreeMap<i32, i64>) {
    (
        dispatcher::testing::committed_offsets(brokers, group, topic).expect("committed offsets"),
        dispatcher::testing::end_offsets(brokers, topic).expect("end offsets"),
    )
}

/// Whether every partition's committed offset equals its end offset.
pub fn committed_at_end(committed: &BTreeMap<i32, i64>, ends: &BTreeMap<i32, i64>) -> bool {
    ends.iter()
        .all(|(p, end)| committed.get(p).copied().unwrap_or(0) == *end)
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
