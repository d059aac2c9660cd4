//! TLS on loopback: a broker process (tansu) reached only through a TLS
//! front whose certificate is signed by a CA the test makes. The broker
//! advertises the front's address, so every connection the clients make,
//! bootstrap or not, goes over TLS.
//!
//! * Records produced over TLS are all handled by a dispatcher connected
//!   over TLS, and its group's committed offset reaches the end of the topic.
//! * A dispatcher trusting a different CA fails at startup with
//!   `Error::Unreachable`, whose message says the certificate failed
//!   verification.

use dispatcher::{Dispatcher, Error, Message};
use dispatcher_tests::tls_front::{tls_client_config, TestCa, TlsBroker};
use dispatcher_tests::{wait_for, WorkDir};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

const TOPIC: &str = "e2e-tls";
const RECORDS: usize = 50;

/// Payloads handled by [`record_tls`].
static HANDLED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

fn handled() -> BTreeSet<String> {
    HANDLED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

#[dispatcher::kafka_handler(topic = "e2e-tls")]
async fn record_tls(msg: &Message) -> Result<(), std::io::Error> {
    let payload = String::from_utf8_lossy(msg.payload().unwrap_or_default()).into_owned();
    HANDLED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(payload);
    Ok(())
}

/// A dispatcher on `brokers` over TLS trusting `ca_pem`, with this file's
/// handler, creating the topic at startup.
fn tls_dispatcher(brokers: &str, ca_pem: &Path, group: &str) -> Dispatcher {
    Dispatcher::builder()
        .ignore_environment()
        .handle_signals(false)
        .brokers(brokers)
        .group_id(group)
        .kafka_property("security.protocol", "SSL")
        .kafka_property("ssl.ca.location", ca_pem.to_string_lossy())
        .kafka_property("session.timeout.ms", "6000")
        .kafka_property("heartbeat.interval.ms", "500")
        .commit_interval(Duration::from_millis(100))
        .drain_timeout(Duration::from_secs(5))
        .topics([TOPIC])
        .create_topics(1, 1)
        .build()
        .expect("build the dispatcher")
}

/// The partitions of the topic, read over TLS (empty while it does not
/// exist).
fn partitions(client: &BaseConsumer) -> Vec<i32> {
    client
        .fetch_metadata(Some(TOPIC), Duration::from_secs(5))
        .ok()
        .and_then(|md| {
            md.topics()
                .iter()
                .find(|t| t.name() == TOPIC && t.error().is_none())
                .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        })
        .unwrap_or_default()
}

/// The committed offsets of the client's group and the end offsets of the
/// topic, by partition, read over TLS.
fn committed_and_end(
    client: &BaseConsumer,
    partitions: &[i32],
) -> (BTreeMap<i32, i64>, BTreeMap<i32, i64>) {
    let mut tpl = TopicPartitionList::new();
    for &p in partitions {
        tpl.add_partition(TOPIC, p);
    }
    let committed = client
        .committed_offsets(tpl, Duration::from_secs(5))
        .map(|c| {
            c.elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) => Some((e.partition(), o)),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let end = partitions
        .iter()
        .filter_map(|&p| {
            client
                .fetch_watermarks(TOPIC, p, Duration::from_secs(5))
                .ok()
                .map(|(_, high)| (p, high))
        })
        .collect();
    (committed, end)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_produced_over_tls_are_handled_and_committed_over_tls() {
    let started = Instant::now();
    let mut dir = WorkDir::new("tls-ok");
    let broker = TlsBroker::start(dir.path()).await;
    let brokers = broker.brokers();
    let group = "e2e-tls-group";
    println!(
        "e2e tls: tansu (pid {}) on {} advertising {}, TLS front on {brokers}",
        broker.tansu.process.pid(),
        broker.tansu.addr,
        broker.tansu.advertised
    );

    // The dispatcher creates the topic at startup, over TLS.
    let dispatcher = tls_dispatcher(&brokers, &broker.ca_pem, group);
    let shutdown = dispatcher.shutdown_handle();
    let run = tokio::spawn(dispatcher.run());

    // A client of the group, over TLS, to watch the topic and the group's
    // commits. Records are produced once the topic exists, so that the
    // producer cannot have the broker create it with its own defaults.
    let (ca, b) = (broker.ca_pem.clone(), brokers.clone());
    let (client, parts) = tokio::task::spawn_blocking(move || {
        let client: BaseConsumer = tls_client_config(&b, &ca)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("allow.auto.create.topics", "false")
            .create()
            .expect("create the TLS metadata client");
        let mut parts = Vec::new();
        wait_for(
            "the dispatcher to create the topic",
            Duration::from_secs(30),
            || {
                parts = partitions(&client);
                !parts.is_empty()
            },
        );
        (client, parts)
    })
    .await
    .expect("join");
    assert_eq!(
        parts,
        vec![0],
        "the dispatcher created {TOPIC} with one partition within 30 s; see {}",
        dir.path().display()
    );

    let producer: FutureProducer = tls_client_config(&brokers, &broker.ca_pem)
        .set("allow.auto.create.topics", "false")
        .set("linger.ms", "1")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("create the TLS producer");
    // One record at a time, each acknowledged before the next: tansu 0.6.0
    // reports a partition's end offset (ListOffsets latest) as the base
    // offset of its last record batch plus one, which is short of the end
    // after a batch of several records. The end the test expects comes from
    // the delivery reports.
    let mut delivered = BTreeSet::new();
    for i in 0..RECORDS {
        let (key, payload) = (format!("k{}", i % 5), format!("tls-{i}"));
        match producer
            .send(
                FutureRecord::to(TOPIC).key(&key).payload(&payload),
                Duration::from_secs(30),
            )
            .await
        {
            Ok(d) => {
                assert_eq!(d.partition, 0, "the topic has one partition");
                delivered.insert(d.offset);
            }
            Err((e, _)) => panic!(
                "producing over TLS failed: {e}; see {}",
                dir.path().display()
            ),
        }
    }
    let end_offset = delivered.last().map_or(0, |o| o + 1);
    assert_eq!(
        (delivered.len(), end_offset),
        (RECORDS, RECORDS as i64),
        "{RECORDS} records at offsets 0..{RECORDS}"
    );
    println!(
        "e2e tls: {RECORDS} records produced over TLS after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let want: BTreeSet<String> = (0..RECORDS).map(|i| format!("tls-{i}")).collect();
    let (all_handled, committed, ends) = tokio::task::spawn_blocking(move || {
        let all_handled = wait_for("every record handled", Duration::from_secs(40), || {
            handled().is_superset(&want)
        });
        let mut last = Default::default();
        let _ = all_handled
            && wait_for(
                "the committed offset to reach the end",
                Duration::from_secs(20),
                || {
                    last = committed_and_end(&client, &[0]);
                    let (committed, ends) = &last;
                    !committed.is_empty() && committed == ends
                },
            );
        (all_handled, last.0, last.1)
    })
    .await
    .expect("join");
    let got = handled();
    assert!(
        all_handled,
        "{} of {RECORDS} records handled within 40 s; see {}",
        got.len(),
        dir.path().display()
    );
    let end = BTreeMap::from([(0, end_offset)]);
    assert_eq!(ends, end, "the topic's end offsets read over TLS");
    assert_eq!(
        committed, end,
        "the group's committed offsets read over TLS"
    );

    shutdown.shutdown();
    let stopped = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the dispatcher stops within 30 s")
        .expect("join");
    assert!(
        stopped.is_ok(),
        "the dispatcher stopped with an error: {stopped:?}"
    );

    let stats = broker.front.stats();
    let (handshakes, failed) = (
        stats.handshakes.load(Ordering::Relaxed),
        stats.failed_handshakes.load(Ordering::Relaxed),
    );
    assert!(handshakes > 0, "no TLS handshake completed on the front");
    assert_eq!(failed, 0, "failed TLS handshakes on the front");
    println!(
        "e2e tls: {} records handled and committed at offset {RECORDS} over TLS ({handshakes} TLS connections), {:.1} s",
        got.len(),
        started.elapsed().as_secs_f64()
    );
    dir.remove_on_drop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_different_ca_fails_at_startup_saying_the_certificate_failed() {
    let started = Instant::now();
    let mut dir = WorkDir::new("tls-wrong-ca");
    let broker = TlsBroker::start(dir.path()).await;
    let brokers = broker.brokers();
    let other = TestCa::new("some other CA").write_pem(dir.path(), "other-ca.pem");

    let dispatcher = tls_dispatcher(&brokers, &other, "e2e-tls-wrong-ca-group");
    let result = tokio::time::timeout(Duration::from_secs(45), dispatcher.run())
        .await
        .expect("run() returns within 45 s when the certificate is refused");
    let err = result.expect_err("run() fails when the broker's CA is not trusted");
    let msg = err.to_string();
    println!("e2e tls: wrong CA: {msg}");
    match &err {
        Error::Unreachable {
            brokers: b, reason, ..
        } => {
            assert_eq!(b, &brokers, "the error names the brokers: {msg}");
            let reason = reason.as_deref().unwrap_or_default();
            assert!(
                reason.contains("certificate verify failed"),
                "the reason says the certificate failed verification: {reason:?}"
            );
        }
        other => panic!("expected Error::Unreachable, got {other:?}"),
    }
    assert!(
        msg.contains("certificate verify failed") && msg.contains(&brokers),
        "the message names the brokers and the certificate failure: {msg}"
    );

    let stats = broker.front.stats();
    assert_eq!(
        stats.handshakes.load(Ordering::Relaxed),
        0,
        "no TLS handshake may complete with the wrong CA"
    );
    assert!(
        stats.failed_handshakes.load(Ordering::Relaxed) > 0,
        "the client reached the front and refused its certificate"
    );
    println!(
        "e2e tls: wrong CA refused at startup in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    dir.remove_on_drop();
}
