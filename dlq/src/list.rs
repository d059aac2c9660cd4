//! `dlq list`: the dead letters of a topic.

use crate::cli::{Filters, ListArgs};
use crate::filter::failure_time;
use crate::render;
use crate::scan::{self, Record, Scanner};
use comfy_table::{presets, Cell, ContentArrangement, Table};
use dispatcher::dead_letter::{DeadLetterInfo, NotADeadLetter};
use serde_json::{json, Value};
use std::io::Write;

/// What a listing found.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Listing {
    /// Records read.
    pub records: usize,
    /// Of those, dead letters.
    pub dead_letters: usize,
    /// The dead letters that passed the filters, by last failure (then
    /// partition and offset).
    pub selected: Vec<(Record, DeadLetterInfo)>,
    /// Records whose headers are not those of a dead letter: partition,
    /// offset and why.
    pub not_dead_letters: Vec<(i32, i64, NotADeadLetter)>,
}

/// Reads `topic` from its beginning to its end as of now and keeps the
/// dead letters that pass `filters`.
pub fn collect(
    conn: &crate::cli::Connection,
    topic: &str,
    filters: &Filters,
) -> anyhow::Result<Listing> {
    let consumer = scan::consumer(conn, &scan::reader_group("list"))?;
    let parts = scan::partitions(&consumer, topic, conn.timeout)?;
    let mut scanner = Scanner::open(
        &consumer,
        topic,
        &scan::from_beginning(&parts),
        conn.timeout,
    )?;
    let mut listing = Listing::default();
    while let Some(record) = scanner.next_record()? {
        listing.records += 1;
        match record.dead_letter() {
            Ok(info) => {
                listing.dead_letters += 1;
                if filters.matches(&record, &info) {
                    listing.selected.push((record, info));
                }
            }
            Err(e) => listing
                .not_dead_letters
                .push((record.partition, record.offset, e)),
        }
    }
    listing.selected.sort_by(|(ra, ia), (rb, ib)| {
        (failure_time(ra, ia), ra.partition, ra.offset).cmp(&(
            failure_time(rb, ib),
            rb.partition,
            rb.offset,
        ))
    });
    Ok(listing)
}

/// Runs `dlq list`: a table, or JSON lines with `--json`, on `out`; a
/// note on standard error about records that are not dead letters.
pub fn list(args: &ListArgs, out: &mut dyn Write) -> anyhow::Result<Listing> {
    let listing = collect(&args.connection, &args.topic, &args.filters)?;
    if let Some((p, o, e)) = listing.not_dead_letters.first() {
        eprintln!(
            "dlq: {} record(s) of {} are not dead letters and were left out (first: {p}:{o}, {e})",
            listing.not_dead_letters.len(),
            args.topic
        );
    }
    if args.json {
        for (record, info) in &listing.selected {
            writeln!(out, "{}", to_json(record, info))?;
        }
        return Ok(listing);
    }
    if !listing.selected.is_empty() {
        writeln!(out, "{}", table(&listing.selected))?;
    }
    let filters = args.filters.describe();
    let scope = if filters.is_empty() {
        String::new()
    } else {
        format!(" ({} match {filters})", listing.selected.len())
    };
    writeln!(
        out,
        "{} dead letter{} in {}{scope}",
        listing.dead_letters,
        if listing.dead_letters == 1 { "" } else { "s" },
        args.topic,
    )?;
    Ok(listing)
}

/// The table of `dlq list`.
fn table(rows: &[(Record, DeadLetterInfo)]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header([
            "at",
            "last failure (UTC)",
            "source",
            "key",
            "handler",
            "reason",
            "error type",
            "attempts",
            "error",
        ]);
    for (record, info) in rows {
        table.add_row([
            Cell::new(format!("{}:{}", record.partition, record.offset)),
            Cell::new(
                failure_time(record, info)
                    .map(render::time_seconds)
                    .unwrap_or_else(|| "-".into()),
            ),
            Cell::new(format!(
                "{}[{}]@{}",
                info.original_topic, info.original_partition, info.original_offset
            )),
            Cell::new(
                record
                    .key
                    .as_deref()
                    .map(|k| render::cut(&render::text_or_hex(k), 24))
                    .unwrap_or_else(|| "-".into()),
            ),
            Cell::new(&info.handler),
            Cell::new(&info.reason),
            Cell::new(&info.error_type),
            Cell::new(info.attempts),
            Cell::new(if info.payload_omitted.is_some() {
                format!("{} (payload omitted)", render::cut(&info.error_message, 40))
            } else {
                render::cut(&info.error_message, 60)
            }),
        ]);
    }
    table
}

/// One dead letter as a JSON object, for `--json`.
pub fn to_json(record: &Record, info: &DeadLetterInfo) -> Value {
    let bytes = |b: &Option<Vec<u8>>| -> (Value, Value) {
        match b.as_deref() {
            None => (Value::Null, Value::Null),
            Some(b) => match std::str::from_utf8(b) {
                Ok(t) => (Value::from(t), Value::Null),
                Err(_) => (Value::Null, Value::from(render::hex(b))),
            },
        }
    };
    let (key, key_hex) = bytes(&record.key);
    let (payload, payload_hex) = bytes(&record.payload);
    let mut v = json!({
        "dlt_topic": record.topic,
        "dlt_partition": record.partition,
        "dlt_offset": record.offset,
        "dlt_timestamp": record.timestamp,
        "original_topic": info.original_topic,
        "original_partition": info.original_partition,
        "original_offset": info.original_offset,
        "original_timestamp": info.original_timestamp,
        "consumer_group": info.consumer_group,
        "handler": info.handler,
        "reason": info.reason,
        "error_kind": info.error_kind,
        "error_type": info.error_type,
        "error_message": info.error_message,
        "error_chain": info.error_chain,
        "attempts": info.attempts,
        "first_failure": info.first_failure.map(render::time),
        "last_failure": info.last_failure.map(render::time),
        "payload_omitted": info.payload_omitted,
        "key": key,
        "payload": payload,
    });
    if let Some(obj) = v.as_object_mut() {
        if !key_hex.is_null() {
            obj.insert("key_hex".into(), key_hex);
        }
        if !payload_hex.is_null() {
            obj.insert("payload_hex".into(), payload_hex);
        }
    }
    v
}
