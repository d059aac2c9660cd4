//! What a scenario reads back: committed offsets, dead letters, and the
//! metrics a consumer process serves.

use crate::log::Report;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// One past the highest of `offsets` (partition, offset) in each
/// partition: the ends of what a test published, which it knows better
/// than a broker's reported high watermark.
pub fn ends_of(offsets: impl IntoIterator<Item = (i32, i64)>) -> BTreeMap<i32, i64> {
    let mut ends = BTreeMap::new();
    for (p, o) in offsets {
        let end = ends.entry(p).or_insert(0);
        *end = (*end).max(o + 1);
    }
    ends
}

/// Polls `kit`'s committed offsets of `topic` until they equal `ends` or
/// `timeout` passes; returns the last offsets read and whether they did.
pub async fn committed_to(
    kit: &dispatcher::testing::TestKit,
    topic: &str,
    ends: &BTreeMap<i32, i64>,
    timeout: Duration,
) -> (BTreeMap<i32, i64>, bool) {
    let deadline = Instant::now() + timeout;
    loop {
        let committed = kit.committed_offsets(topic).await.unwrap_or_default();
        if ends.iter().all(|(p, end)| committed.get(p) == Some(end)) {
            return (committed, true);
        }
        if Instant::now() >= deadline {
            return (committed, false);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The committed offsets of `group` on `topic`.
pub fn committed(brokers: &str, group: &str, topic: &str) -> BTreeMap<i32, i64> {
    dispatcher::testing::committed_offsets(brokers, group, topic).expect("committed offsets")
}

/// Reads `dead_letter_topic` until it holds every record of `poison`
/// (payload `key:seq:poison`), for up to `timeout`, and checks that each
/// dead letter names its source: `source_topic`, and the partition and
/// offset where `report` saw the record handled. Returns the distinct
/// poison records found and the problems.
pub fn check_dead_letters(
    brokers: &str,
    dead_letter_topic: &str,
    source_topic: &str,
    poison: &[(String, u64)],
    report: &Report,
    timeout: Duration,
) -> (usize, Vec<String>) {
    let deadline = Instant::now() + timeout;
    let mut want = poison.len();
    let mut problems = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let records = match dispatcher::testing::read_topic(brokers, dead_letter_topic, want, left)
        {
            Ok(r) => r,
            Err(e) => return (0, vec![format!("reading {dead_letter_topic}: {e}")]),
        };
        let mut found: BTreeMap<(String, u64), usize> = BTreeMap::new();
        problems.clear();
        for r in &records {
            let payload = String::from_utf8_lossy(r.payload.as_deref().unwrap_or_default());
            let Some((key, seq)) = payload
                .strip_suffix(":poison")
                .and_then(|b| b.split_once(':'))
                .and_then(|(k, s)| Some((k.to_owned(), s.parse::<u64>().ok()?)))
            else {
                problems.push(format!(
                    "{dead_letter_topic}@{}: not a poison record: {payload:?}",
                    r.offset
                ));
                continue;
            };
            match r.dead_letter() {
                Ok(info) => {
                    let at = report.handled_at.get(&(key.clone(), seq)).copied();
                    if info.original_topic != source_topic
                        || at != Some((info.original_partition, info.original_offset))
                    {
                        problems.push(format!(
                            "dead letter of {key}:{seq} names {}[{}]@{}, but the record was at {source_topic} {at:?}",
                            info.original_topic, info.original_partition, info.original_offset
                        ));
                    }
                }
                Err(e) => problems.push(format!("dead letter of {key}:{seq}: {e}")),
            }
            *found.entry((key, seq)).or_default() += 1;
        }
        let missing: Vec<&(String, u64)> =
            poison.iter().filter(|p| !found.contains_key(*p)).collect();
        if missing.is_empty() || Instant::now() >= deadline {
            for m in missing.iter().take(10) {
                problems.push(format!(
                    "LOST: poison record {}:{} is not in {dead_letter_topic}",
                    m.0, m.1
                ));
            }
            return (found.len(), problems);
        }
        want = records.len() + missing.len();
    }
}

/// The sum of every series of metric `name` served at
/// `http://127.0.0.1:{port}/metrics` (a dispatcher with
/// `DISPATCHER_METRICS_ADDRESS`), or `None` when nothing answers.
pub fn scrape(port: u16, name: &str) -> Option<f64> {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    let values: Vec<f64> = body
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}
