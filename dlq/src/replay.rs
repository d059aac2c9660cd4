//! `dlq replay`: dead letters sent back to their original topic, exactly
//! once across interruptions.
//!
//! The dead-letter topic is read with a consumer group (by assignment, from
//! the group's committed offsets) up to its end offsets as of the start.
//! Each selected dead letter is written, with its original key, payload and
//! headers other than `dlt.*` and `retry.*`, and a [`REPLAYED_FROM`]
//! header, by a transactional producer whose `transactional.id` is derived
//! from the group; the offsets consumed (skipped records included) are
//! committed in the same transaction (`send_offsets_to_transaction`). A
//! transaction that does not commit counts for nothing: its records are
//! not visible to `read_committed` consumers (the default) and the group
//! stays where it was, so the next replay resumes where the last committed
//! transaction ended. A new replay of the group fences an older one still
//! running, and aborts its open transaction, before it reads where to
//! start.
//!
//! A broker that accepts the offsets of a transaction without keeping them
//! (librdkafka's mock cluster, the embedded broker of `dlq dev-broker` and
//! of the tests, does) is detected after the first transaction; from then
//! on the offsets are also committed right after each transaction, and an
//! interruption between the two can send that transaction's records again.

use crate::cli::{Connection, ReplayArgs};
use crate::scan::{self, Record, Scanner, Start};
use crate::REPLAYED_FROM;
use anyhow::{anyhow, bail, Context};
use dispatcher::dead_letter::NotADeadLetter;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A transaction is committed after this many records read...
const TRANSACTION_RECORDS: usize = 500;
/// ...or when it has been open this long.
const TRANSACTION_TIME: Duration = Duration::from_secs(1);

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplaySummary {
    /// The dead-letter topic.
    pub topic: String,
    /// The consumer group.
    pub group: String,
    /// Whether it was a dry run (nothing written or committed).
    pub dry_run: bool,
    /// Records read from the dead-letter topic.
    pub read: u64,
    /// Records sent (committed), or that would be sent in a dry run.
    pub sent: u64,
    /// Of those, by target topic.
    pub sent_to: BTreeMap<String, u64>,
    /// Dead letters that did not pass the filters.
    pub skipped_filtered: u64,
    /// Records that are not dead letters (no `dlt.original.*` headers).
    pub skipped_not_dead_letters: u64,
    /// Dead letters written without their payload (`dlt.payload.omitted`):
    /// there is nothing to replay; the original is in the source topic.
    pub skipped_payload_omitted: u64,
    /// Transactions committed.
    pub transactions: u64,
    /// The group's offsets at the start, by partition (`None`: none
    /// committed).
    pub started_at: BTreeMap<i32, Option<i64>>,
    /// The group's offsets at the end (those of the start in a dry run).
    pub ended_at: BTreeMap<i32, Option<i64>>,
    /// The end offsets of the dead-letter topic as of the start.
    pub end_offsets: BTreeMap<i32, i64>,
    /// It stopped at `--limit`.
    pub limit_reached: bool,
    /// It was interrupted (Ctrl-C) and committed what it had sent.
    pub interrupted: bool,
    /// The broker did not keep the offsets committed in the transactions,
    /// so they were committed after each one instead.
    pub offsets_committed_after_transactions: bool,
}

/// What becomes of one record.
enum Decision {
    Send(String),
    Filtered,
    NotADeadLetter(NotADeadLetter),
    PayloadOmitted,
}

/// The first delivery failure of the producer, if any.
#[derive(Default)]
struct Deliveries {
    failed: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, m)) = result {
            let mut failed = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
            failed.get_or_insert_with(|| format!("writing to {}: {e}", m.topic()));
        }
    }
}

type TxProducer = BaseProducer<Deliveries>;

/// The transaction being filled.
#[derive(Default)]
struct Txn {
    open: bool,
    began: Option<Instant>,
    records: usize,
    sent: u64,
    sent_to: BTreeMap<String, u64>,
    /// The next offset to read, by partition, of what this transaction read.
    offsets: BTreeMap<i32, i64>,
}

struct Replayer<'a> {
    args: &'a ReplayArgs,
    consumer: &'a BaseConsumer,
    producer: Option<TxProducer>,
    summary: ReplaySummary,
    txn: Txn,
    targets: HashMap<String, bool>,
    progress: ProgressBar,
}

/// Runs `dlq replay`: prints what it would send with `--dry-run`, and a
/// summary; `stop` (Ctrl-C) ends it after the record at hand, committed.
pub fn replay(
    args: &ReplayArgs,
    out: &mut dyn Write,
    stop: &AtomicBool,
) -> anyhow::Result<ReplaySummary> {
    let conn = &args.connection;
    let group = args.group_id();
    let consumer = scan::consumer(conn, &group)?;
    let parts = scan::partitions(&consumer, &args.topic, conn.timeout)?;
    // The producer first: initializing it fences an older replay of this
    // group and ends its open transaction, so the offsets read next are
    // final.
    let producer = if args.dry_run {
        None
    } else {
        Some(transactional_producer(conn, &args.transactional_id())?)
    };
    let started_at = committed(&consumer, &args.topic, &parts, conn.timeout)?;
    let starts: BTreeMap<i32, Start> = started_at
        .iter()
        .map(|(&p, o)| (p, o.map_or(Start::Beginning, Start::At)))
        .collect();
    let mut scanner = Scanner::open(&consumer, &args.topic, &starts, conn.timeout)?;
    let progress = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(Some(scanner.span), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} {wide_bar} {pos}/{len} read, {msg} [{elapsed_precise}, eta {eta}]",
        ) {
            bar.set_style(style);
        }
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut r = Replayer {
        args,
        consumer: &consumer,
        producer,
        summary: ReplaySummary {
            topic: args.topic.clone(),
            group,
            dry_run: args.dry_run,
            ended_at: started_at.clone(),
            started_at,
            end_offsets: scanner.ends().clone(),
            ..ReplaySummary::default()
        },
        txn: Txn::default(),
        targets: HashMap::new(),
        progress,
    };
    let result = r.run(&mut scanner, out, stop);
    r.progress.finish_and_clear();
    if let Err(e) = result {
        r.abort();
        return Err(e);
    }
    write_summary(&r.summary, &args.filters.describe(), out)?;
    Ok(r.summary)
}

impl Replayer<'_> {
    fn run(
        &mut self,
        scanner: &mut Scanner<'_>,
        out: &mut dyn Write,
        stop: &AtomicBool,
    ) -> anyhow::Result<()> {
        loop {
            if stop.load(Ordering::Relaxed) {
                self.summary.interrupted = true;
                break;
            }
            if self
                .args
                .limit
                .is_some_and(|limit| self.summary.sent + self.txn.sent >= limit)
            {
                self.summary.limit_reached = true;
                break;
            }
            let Some(record) = scanner.next_record()? else {
                break;
            };
            self.handle(&record, out)?;
            self.progress.inc(1);
            self.progress
                .set_message(format!("{} sent", self.summary.sent + self.txn.sent));
            let full = self.txn.records >= TRANSACTION_RECORDS
                || self
                    .txn
                    .began
                    .is_some_and(|t| t.elapsed() >= TRANSACTION_TIME);
            if full {
                self.commit()?;
            }
        }
        self.commit()
    }

    fn decide(&self, record: &Record) -> Decision {
        let info = match record.dead_letter() {
            Ok(info) => info,
            Err(e) => return Decision::NotADeadLetter(e),
        };
        if !self.args.filters.matches(record, &info) {
            return Decision::Filtered;
        }
        if info.payload_omitted.is_some() {
            return Decision::PayloadOmitted;
        }
        Decision::Send(self.args.to.clone().unwrap_or(info.original_topic))
    }

    /// Whether `topic` exists (asked once per topic).
    fn target_exists(&mut self, topic: &str) -> anyhow::Result<bool> {
        if let Some(&known) = self.targets.get(topic) {
            return Ok(known);
        }
        let exists = scan::topic_exists(self.consumer, topic, self.args.connection.timeout)?;
        self.targets.insert(topic.to_owned(), exists);
        Ok(exists)
    }

    fn handle(&mut self, record: &Record, out: &mut dyn Write) -> anyhow::Result<()> {
        self.summary.read += 1;
        let decision = self.decide(record);
        if self.producer.is_some() && !self.txn.open {
            self.begin()?;
        }
        self.txn.records += 1;
        self.txn.offsets.insert(record.partition, record.offset + 1);
        let target = match decision {
            Decision::Send(target) => target,
            Decision::Filtered => {
                self.summary.skipped_filtered += 1;
                return Ok(());
            }
            Decision::NotADeadLetter(e) => {
                if self.summary.skipped_not_dead_letters == 0 {
                    self.progress.suspend(|| {
                        eprintln!(
                            "dlq: {}:{} is not a dead letter ({e}): skipped",
                            record.partition, record.offset
                        );
                    });
                }
                self.summary.skipped_not_dead_letters += 1;
                return Ok(());
            }
            Decision::PayloadOmitted => {
                self.progress.suspend(|| {
                    eprintln!(
                        "dlq: {}:{} was written without its payload (dlt.payload.omitted): skipped; its original is in its source topic",
                        record.partition, record.offset
                    );
                });
                self.summary.skipped_payload_omitted += 1;
                return Ok(());
            }
        };
        let exists = self.target_exists(&target)?;
        if self.args.dry_run {
            let note = if exists { "" } else { " (no such topic)" };
            let key = record
                .key
                .as_deref()
                .map(crate::render::text_or_hex)
                .map(|k| format!("key {}", crate::render::cut(&k, 40)))
                .unwrap_or_else(|| "no key".into());
            let headers = record
                .headers
                .iter()
                .filter(|(n, _)| !replay_drops(n))
                .count()
                + 1;
            writeln!(
                out,
                "would send {}:{} -> {target}{note}: {key}, {} payload bytes, {headers} header(s)",
                record.partition,
                record.offset,
                record.payload.as_ref().map_or(0, Vec::len),
            )?;
        } else {
            if !exists {
                bail!(
                    "cannot replay {}:{} to {target}: topic {target} does not exist (create it, or choose another with --to)",
                    record.partition,
                    record.offset
                );
            }
            self.send(record, &target)?;
        }
        self.txn.sent += 1;
        *self.txn.sent_to.entry(target).or_default() += 1;
        if self.args.dry_run {
            // Nothing to commit: count it at once.
            self.merge_txn();
        }
        Ok(())
    }

    fn send(&mut self, record: &Record, target: &str) -> anyhow::Result<()> {
        let producer = self
            .producer
            .as_ref()
            .ok_or_else(|| anyhow!("no producer"))?;
        let from = format!("{}/{}/{}", record.topic, record.partition, record.offset);
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len() + 1);
        for (name, value) in &record.headers {
            if !replay_drops(name) {
                headers = headers.insert(Header {
                    key: name,
                    value: value.as_deref(),
                });
            }
        }
        headers = headers.insert(Header {
            key: REPLAYED_FROM,
            value: Some(from.as_bytes()),
        });
        let mut out: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(target).headers(headers);
        if let Some(k) = record.key.as_deref() {
            out = out.key(k);
        }
        if let Some(p) = record.payload.as_deref() {
            out = out.payload(p);
        }
        let deadline = Instant::now() + self.args.connection.timeout;
        loop {
            match producer.send(out) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if Instant::now() < deadline =>
                {
                    producer.poll(Duration::from_millis(50));
                    out = back;
                }
                Err((e, _)) => {
                    return Err(e).with_context(|| format!("sending {from} to {target}"));
                }
            }
        }
        producer.poll(Duration::ZERO);
        Ok(())
    }

    fn begin(&mut self) -> anyhow::Result<()> {
        if let Some(p) = &self.producer {
            p.begin_transaction().context("beginning a transaction")?;
        }
        self.txn = Txn {
            open: true,
            began: Some(Instant::now()),
            ..Txn::default()
        };
        Ok(())
    }

    fn merge_txn(&mut self) {
        let txn = std::mem::take(&mut self.txn);
        self.summary.sent += txn.sent;
        for (topic, n) in txn.sent_to {
            *self.summary.sent_to.entry(topic).or_default() += n;
        }
        if !self.args.dry_run {
            for (p, o) in txn.offsets {
                self.summary.ended_at.insert(p, Some(o));
            }
        }
    }

    /// Commits the open transaction with the offsets it read.
    fn commit(&mut self) -> anyhow::Result<()> {
        let Some(producer) = &self.producer else {
            return Ok(());
        };
        if !self.txn.open {
            return Ok(());
        }
        let timeout = self.args.connection.timeout;
        let tpl = self.offsets_list()?;
        let metadata = self
            .consumer
            .group_metadata()
            .ok_or_else(|| anyhow!("the consumer has no group metadata"))?;
        retry(timeout, || {
            producer.send_offsets_to_transaction(&tpl, &metadata, timeout)
        })
        .context("adding the consumed offsets to the transaction")?;
        if let Some(e) = producer
            .context()
            .failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            bail!("{e}");
        }
        retry(timeout, || producer.commit_transaction(timeout))
            .context("committing the transaction")?;
        self.summary.transactions += 1;
        self.merge_txn();
        self.check_offsets_kept(&tpl)
    }

    /// After a transaction: makes sure the broker kept its offsets, and
    /// commits them outside it when it did not (see the module docs).
    fn check_offsets_kept(&mut self, tpl: &TopicPartitionList) -> anyhow::Result<()> {
        let timeout = self.args.connection.timeout;
        if !self.summary.offsets_committed_after_transactions {
            let stored = self
                .consumer
                .committed_offsets(tpl.clone(), timeout)
                .context("reading the group's offsets after a transaction")?;
            let kept = tpl.elements().iter().all(|want| {
                stored
                    .elements()
                    .iter()
                    .any(|got| got.partition() == want.partition() && got.offset() == want.offset())
            });
            if kept {
                return Ok(());
            }
            self.summary.offsets_committed_after_transactions = true;
            self.progress.suspend(|| {
                eprintln!(
                    "dlq: note: the broker did not keep the offsets committed in the transaction \
                     (librdkafka's mock cluster, as in `dlq dev-broker`, does not); committing \
                     them after each transaction instead, so an interruption between the two \
                     may send that transaction's records again"
                );
            });
        }
        self.consumer
            .commit(tpl, CommitMode::Sync)
            .context("committing the group's offsets after the transaction")
    }

    fn offsets_list(&self) -> anyhow::Result<TopicPartitionList> {
        let mut tpl = TopicPartitionList::new();
        for (&p, &o) in &self.txn.offsets {
            tpl.add_partition_offset(&self.args.topic, p, Offset::Offset(o))
                .with_context(|| format!("offsets of {}[{p}]", self.args.topic))?;
        }
        Ok(tpl)
    }

    /// Aborts an open transaction after an error: none of it counts.
    fn abort(&mut self) {
        if let (Some(p), true) = (&self.producer, self.txn.open) {
            if let Err(e) = p.abort_transaction(self.args.connection.timeout) {
                eprintln!("dlq: aborting the transaction failed too: {e}");
            }
            self.txn = Txn::default();
        }
    }
}

/// Runs a transactional step again while librdkafka says it is retriable.
fn retry(
    timeout: Duration,
    mut step: impl FnMut() -> rdkafka::error::KafkaResult<()>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match step() {
            Err(KafkaError::Transaction(e)) if e.is_retriable() && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e.into()),
            Ok(()) => return Ok(()),
        }
    }
}

fn transactional_producer(conn: &Connection, transactional_id: &str) -> anyhow::Result<TxProducer> {
    let mut config = ClientConfig::new();
    for (name, value) in &conn.properties {
        config.set(name, value);
    }
    let producer: TxProducer = config
        .set("bootstrap.servers", &conn.brokers)
        .set("transactional.id", transactional_id)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create_with_context(Deliveries::default())
        .with_context(|| format!("creating a transactional producer for {}", conn.brokers))?;
    producer
        .init_transactions(conn.timeout)
        .with_context(|| {
            format!("initializing the transactional producer {transactional_id:?} (the brokers must support transactions)")
        })?;
    Ok(producer)
}

/// The group's committed offset of each partition, `None` where none.
fn committed(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: &[i32],
    timeout: Duration,
) -> anyhow::Result<BTreeMap<i32, Option<i64>>> {
    let mut tpl = TopicPartitionList::new();
    for &p in partitions {
        tpl.add_partition(topic, p);
    }
    let got = consumer
        .committed_offsets(tpl, timeout)
        .with_context(|| format!("reading the group's offsets of {topic}"))?;
    Ok(partitions
        .iter()
        .map(|&p| {
            let o = got.find_partition(topic, p).and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            });
            (p, o)
        })
        .collect())
}

fn offsets_text(offsets: &BTreeMap<i32, Option<i64>>) -> String {
    offsets
        .iter()
        .map(|(p, o)| match o {
            Some(o) => format!("{p}:{o}"),
            None => format!("{p}:-"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn write_summary(s: &ReplaySummary, filters: &str, out: &mut dyn Write) -> std::io::Result<()> {
    let verb = if s.dry_run { "would send" } else { "sent" };
    let skipped = s.skipped_filtered + s.skipped_not_dead_letters + s.skipped_payload_omitted;
    writeln!(
        out,
        "{}{}: {} read, {} {verb}, {skipped} skipped",
        if s.dry_run {
            "dry run, nothing written or committed: "
        } else {
            ""
        },
        s.topic,
        s.read,
        s.sent,
    )?;
    if s.read == 0 && !s.interrupted {
        writeln!(out, "  nothing left to replay: the group is at the end")?;
    }
    for (topic, n) in &s.sent_to {
        writeln!(out, "  {verb} to {topic}: {n}")?;
    }
    if s.skipped_filtered > 0 {
        writeln!(
            out,
            "  skipped, not matching {filters}: {}",
            s.skipped_filtered
        )?;
    }
    if s.skipped_not_dead_letters > 0 {
        writeln!(
            out,
            "  skipped, not dead letters: {}",
            s.skipped_not_dead_letters
        )?;
    }
    if s.skipped_payload_omitted > 0 {
        writeln!(
            out,
            "  skipped, written without their payload (dlt.payload.omitted): {}",
            s.skipped_payload_omitted
        )?;
    }
    let ends: BTreeMap<i32, Option<i64>> =
        s.end_offsets.iter().map(|(&p, &o)| (p, Some(o))).collect();
    writeln!(
        out,
        "group {}: offsets {} (were {}; end of the topic at the start {})",
        s.group,
        offsets_text(&s.ended_at),
        offsets_text(&s.started_at),
        offsets_text(&ends),
    )?;
    if s.limit_reached {
        writeln!(out, "stopped at --limit: run again to go on")?;
    }
    if s.interrupted {
        writeln!(
            out,
            "interrupted: what was sent is committed; run again to go on"
        )?;
    }
    Ok(())
}

/// Headers a replay leaves out: the dead letter's own `dlt.*`, and the
/// `retry.*` state of retry topics, so that the replayed record starts
/// over as a new record of its topic.
fn replay_drops(name: &str) -> bool {
    name.starts_with("dlt.") || name.starts_with("retry.")
}
