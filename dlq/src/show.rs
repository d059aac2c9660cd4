//! `dlq show`: one record, every header and the payload.

use crate::cli::{Connection, ShowArgs};
use crate::render;
use crate::scan::{self, Record, Scanner, Start};
use anyhow::bail;
use dispatcher::dead_letter::headers;
use std::collections::BTreeMap;
use std::io::Write;

/// Reads the record at `partition`:`offset` of `topic`.
pub fn fetch(
    conn: &Connection,
    topic: &str,
    partition: i32,
    offset: i64,
) -> anyhow::Result<Record> {
    let consumer = scan::consumer(conn, &scan::reader_group("show"))?;
    let parts = scan::partitions(&consumer, topic, conn.timeout)?;
    if !parts.contains(&partition) {
        bail!(
            "{topic} has no partition {partition} (its partitions: {})",
            parts
                .iter()
                .map(i32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let marks = scan::watermarks(&consumer, topic, &[partition], conn.timeout)?;
    let (low, high) = marks.get(&partition).copied().unwrap_or((0, 0));
    if offset < low || offset >= high {
        bail!("{topic}[{partition}] has no offset {offset}: it holds offsets {low} to {high} (exclusive)");
    }
    let starts = BTreeMap::from([(partition, Start::At(offset))]);
    let mut scanner = Scanner::open(&consumer, topic, &starts, conn.timeout)?;
    match scanner.next_record()? {
        Some(r) if r.offset == offset => Ok(r),
        Some(r) => bail!(
            "{topic}[{partition}] has no record at offset {offset} (compacted away, or a transaction marker); the next one is at {}",
            r.offset
        ),
        None => bail!("{topic}[{partition}] has no record at offset {offset} or after it"),
    }
}

/// Runs `dlq show`.
pub fn show(args: &ShowArgs, out: &mut dyn Write) -> anyhow::Result<Record> {
    let (partition, offset) = args.at;
    let record = fetch(&args.connection, &args.topic, partition, offset)?;
    write_record(&record, out)?;
    Ok(record)
}

/// Headers whose value is a time in milliseconds since the epoch.
const TIME_HEADERS: [&str; 3] = [
    headers::ORIGINAL_TIMESTAMP,
    headers::FIRST_FAILURE,
    headers::LAST_FAILURE,
];

fn write_record(record: &Record, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{} {}:{}",
        record.topic, record.partition, record.offset
    )?;
    if let Some(t) = record.timestamp.and_then(render::from_millis) {
        writeln!(out, "timestamp: {}", render::time(t))?;
    }
    let key = record
        .key
        .as_deref()
        .map(render::text_or_hex)
        .unwrap_or_else(|| "(none)".into());
    writeln!(out, "key: {key}")?;
    if let Err(e) = record.dead_letter() {
        writeln!(out, "(not a dead letter: {e})")?;
    }
    writeln!(out, "headers:")?;
    if record.headers.is_empty() {
        writeln!(out, "  (none)")?;
    }
    for (name, value) in &record.headers {
        let text = match value.as_deref() {
            None => "(null)".to_owned(),
            Some(v) => {
                let text = render::text_or_hex(v);
                let as_time = TIME_HEADERS
                    .contains(&name.as_str())
                    .then(|| text.trim().parse::<i64>().ok())
                    .flatten()
                    .and_then(render::from_millis);
                match as_time {
                    Some(t) => format!("{text} ({})", render::time(t)),
                    None => text,
                }
            }
        };
        // A multi-line value (an error chain, say) stays readable.
        let text = text.replace('\n', "\n    ");
        writeln!(out, "  {name} = {text}")?;
    }
    match record.payload.as_deref() {
        None => writeln!(out, "payload: (none: a tombstone)")?,
        Some(bytes) => {
            let (kind, text) = render::payload(bytes);
            writeln!(out, "payload ({kind}, {} bytes):", bytes.len())?;
            writeln!(out, "{text}")?;
        }
    }
    Ok(())
}
