//! `dlq list` and `dlq show` on dead letters with the headers the
//! dispatcher writes, on the embedded broker.

mod common;

use common::{brokers, create_topic, dlq, Letter};
use dispatcher::testing::Producer;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Three dead letters in two partitions (and a record that is not one):
/// a JSON payload, a text payload, a binary key and payload.
async fn three_dead_letters(topic: &str) -> String {
    let brokers = brokers();
    create_topic(topic, 2);
    let producer = Producer::new(&brokers).expect("producer");
    let mut a = Letter::new("orders", 10, "customer-1", r#"{"id":1,"amount_cents":-5}"#);
    a.original_partition = 1;
    assert_eq!(a.write(&producer, topic, 0).await, 0);
    let mut b = Letter::new("orders", 11, "customer-2", "plain text");
    b.handler = "billing::on_payment";
    b.reason = "retries-exhausted";
    b.error_kind = "io";
    b.error_type = "std::io::Error";
    b.error_message = "connection reset";
    b.attempts = 3;
    b.last_failure_ms = 1_700_000_100_000;
    assert_eq!(b.write(&producer, topic, 1).await, 0);
    let mut c = Letter::new("orders", 12, "", "");
    c.original_partition = 2;
    c.key = Some(vec![0xff, 0x00]);
    c.payload = vec![0xde, 0xad, 0xbe, 0xef];
    c.reason = "undecodable";
    c.error_kind = "decode";
    c.error_type = "serde_json::Error";
    c.error_message = "expected value at line 1 column 1";
    c.last_failure_ms = 1_700_000_200_000;
    assert_eq!(c.write(&producer, topic, 0).await, 1);
    producer
        .send(topic, Some(1), Some(b"stray"), Some(b"no headers"), &[])
        .await
        .expect("a record that is not a dead letter");
    brokers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_shows_a_table_json_lines_and_filters() {
    let topic = "dlq-it-list.DLT";
    let brokers = three_dead_letters(topic).await;

    let table = dlq(&["list", topic, "--brokers", &brokers])
        .await
        .expect("list");
    println!("{table}");
    for text in [
        "at",
        "last failure (UTC)",
        "0:0",
        "1:0",
        "0:1",
        "2023-11-14T22:13:20Z",
        "orders[1]@10",
        "orders[2]@12",
        "customer-1",
        "0xff00",
        "billing::on_order",
        "billing::on_payment",
        "retries-exhausted",
        "std::io::Error",
        "connection reset",
        "3 dead letters in dlq-it-list.DLT",
    ] {
        assert!(table.contains(text), "{text:?} missing from\n{table}");
    }
    // By last failure: a, b, c.
    let (a, b, c) = (
        table.find("orders[1]@10").expect("a"),
        table.find("orders[0]@11").expect("b"),
        table.find("orders[2]@12").expect("c"),
    );
    assert!(a < b && b < c, "{table}");

    let json = dlq(&["list", topic, "--json", "--brokers", &brokers])
        .await
        .expect("list --json");
    let rows: Vec<Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(rows.len(), 3, "{json}");
    let a = &rows[0];
    assert_eq!(a["dlt_topic"], topic);
    assert_eq!(
        (a["dlt_partition"].as_i64(), a["dlt_offset"].as_i64()),
        (Some(0), Some(0))
    );
    assert_eq!(a["original_topic"], "orders");
    assert_eq!(a["original_partition"], 1);
    assert_eq!(a["original_offset"], 10);
    assert_eq!(a["original_timestamp"], 1_699_999_995_000i64);
    assert_eq!(a["consumer_group"], "billing");
    assert_eq!(a["handler"], "billing::on_order");
    assert_eq!(a["reason"], "not-retryable");
    assert_eq!(a["error_kind"], "handler");
    assert_eq!(a["error_type"], "billing::Rejected");
    assert_eq!(a["error_message"], "the order was rejected");
    assert_eq!(
        a["error_chain"],
        "the order was rejected: caused by the rules"
    );
    assert_eq!(a["attempts"], 1);
    assert_eq!(a["first_failure"], "2023-11-14T22:13:19.000Z");
    assert_eq!(a["last_failure"], "2023-11-14T22:13:20.000Z");
    assert_eq!(a["payload_omitted"], Value::Null);
    assert_eq!(a["key"], "customer-1");
    assert_eq!(a["payload"], r#"{"id":1,"amount_cents":-5}"#);
    let c = &rows[2];
    assert_eq!(c["key"], Value::Null);
    assert_eq!(c["key_hex"], "0xff00");
    assert_eq!(c["payload"], Value::Null);
    assert_eq!(c["payload_hex"], "0xdeadbeef");

    // Filters: a handler by its last segment, a time window, a key, an
    // error type.
    let by_handler = dlq(&[
        "list",
        topic,
        "--json",
        "--handler",
        "on_order",
        "--brokers",
        &brokers,
    ])
    .await
    .expect("--handler");
    let offsets: Vec<String> = by_handler
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("json");
            format!("{}:{}", v["dlt_partition"], v["dlt_offset"])
        })
        .collect();
    assert_eq!(offsets, ["0:0", "0:1"]);
    let window = dlq(&[
        "list",
        topic,
        "--since",
        "1700000050000",
        "--until",
        "2023-11-14T22:16:00Z",
        "--brokers",
        &brokers,
    ])
    .await
    .expect("--since --until");
    assert!(window.contains("orders[0]@11"), "{window}");
    assert!(
        !window.contains("orders[1]@10") && !window.contains("orders[2]@12"),
        "{window}"
    );
    assert!(
        window.contains("3 dead letters in dlq-it-list.DLT (1 match --since"),
        "{window}"
    );
    let by_key = dlq(&[
        "list",
        topic,
        "--json",
        "--key",
        "customer-2",
        "--brokers",
        &brokers,
    ])
    .await
    .expect("--key");
    assert_eq!(by_key.lines().count(), 1);
    assert!(
        by_key.contains(r#""handler":"billing::on_payment""#),
        "{by_key}"
    );
    let by_reason = dlq(&[
        "list",
        topic,
        "--json",
        "--reason",
        "retries-exhausted",
        "--brokers",
        &brokers,
    ])
    .await
    .expect("--reason");
    assert_eq!(by_reason.lines().count(), 1);
    assert!(
        by_reason.contains(r#""dlt_offset":0,"dlt_partition":1"#),
        "{by_reason}"
    );
    let none = dlq(&["list", topic, "--error-type", "Nope", "--brokers", &brokers])
        .await
        .expect("no match");
    assert_eq!(
        none.trim(),
        "3 dead letters in dlq-it-list.DLT (0 match --error-type Nope)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_prints_every_header_and_the_payload() {
    let topic = "dlq-it-show.DLT";
    let brokers = three_dead_letters(topic).await;

    let shown = dlq(&["show", topic, "0:0", "--brokers", &brokers])
        .await
        .expect("show");
    println!("{shown}");
    for line in [
        "dlq-it-show.DLT 0:0",
        "key: customer-1",
        "  trace-id = abc-123",
        "  dlt.original.topic = orders",
        "  dlt.original.partition = 1",
        "  dlt.original.offset = 10",
        "  dlt.original.timestamp = 1699999995000 (2023-11-14T22:13:15.000Z)",
        "  dlt.consumer.group = billing",
        "  dlt.handler = billing::on_order",
        "  dlt.reason = not-retryable",
        "  dlt.error.kind = handler",
        "  dlt.error.type = billing::Rejected",
        "  dlt.error.message = the order was rejected",
        "  dlt.error.chain = the order was rejected: caused by the rules",
        "  dlt.attempts = 1",
        "  dlt.first.failure = 1699999999000 (2023-11-14T22:13:19.000Z)",
        "  dlt.last.failure = 1700000000000 (2023-11-14T22:13:20.000Z)",
        "payload (JSON, 26 bytes):",
        "  \"id\": 1,",
        "  \"amount_cents\": -5",
    ] {
        assert!(
            shown.lines().any(|l| l == line),
            "{line:?} missing from\n{shown}"
        );
    }

    let binary = dlq(&["show", topic, "0:1", "--brokers", &brokers])
        .await
        .expect("show binary");
    assert!(binary.contains("key: 0xff00"), "{binary}");
    assert!(
        binary.contains("payload (binary, as hex, 4 bytes):\n0xdeadbeef"),
        "{binary}"
    );
    let stray = dlq(&["show", topic, "1:1", "--brokers", &brokers])
        .await
        .expect("show a record that is not a dead letter");
    assert!(
        stray.contains(
            "(not a dead letter: not a dead letter: header dlt.original.topic is missing)"
        ),
        "{stray}"
    );
    assert!(
        stray.contains("payload (text, 10 bytes):\nno headers"),
        "{stray}"
    );

    let past_end = dlq(&["show", topic, "0:7", "--brokers", &brokers])
        .await
        .expect_err("no such offset");
    assert!(
        past_end
            .to_string()
            .contains("dlq-it-show.DLT[0] has no offset 7: it holds offsets 0 to 2"),
        "{past_end}"
    );
    let no_partition = dlq(&["show", topic, "5:0", "--brokers", &brokers])
        .await
        .expect_err("no such partition");
    assert!(
        no_partition.to_string().contains("has no partition 5"),
        "{no_partition}"
    );
    let no_topic = dlq(&["show", "dlq-it-missing.DLT", "0:0", "--brokers", &brokers])
        .await
        .expect_err("no such topic");
    assert!(
        no_topic
            .to_string()
            .contains("topic dlq-it-missing.DLT does not exist"),
        "{no_topic}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_topic_lists_nothing_at_once() {
    let topic = "dlq-it-empty.DLT";
    let brokers = brokers();
    create_topic(topic, 3);
    let started = Instant::now();
    let out = dlq(&["list", topic, "--brokers", &brokers, "--timeout", "20s"])
        .await
        .expect("list");
    assert_eq!(out.trim(), "0 dead letters in dlq-it-empty.DLT");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let json = dlq(&["list", topic, "--json", "--brokers", &brokers])
        .await
        .expect("list --json");
    assert_eq!(json, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_takes_the_brokers_from_kafka_brokers() {
    let topic = "dlq-it-binary.DLT";
    let brokers = three_dead_letters(topic).await;
    let bin = env!("CARGO_BIN_EXE_dlq");
    let out = tokio::process::Command::new(bin)
        .args(["list", topic])
        .env("KAFKA_BROKERS", &brokers)
        .output()
        .await
        .expect("run dlq");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("billing::on_payment"), "{stdout}");
    assert!(
        stdout.contains("3 dead letters in dlq-it-binary.DLT"),
        "{stdout}"
    );
    assert!(
        stderr.contains(
            "1 record(s) of dlq-it-binary.DLT are not dead letters and were left out (first: 1:1"
        ),
        "{stderr}"
    );

    let out = tokio::process::Command::new(bin)
        .args(["list", topic])
        .env_remove("KAFKA_BROKERS")
        .output()
        .await
        .expect("run dlq");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--brokers"), "{stderr}");

    let out = tokio::process::Command::new(bin)
        .args(["show", "dlq-it-nowhere.DLT", "0:0"])
        .env("KAFKA_BROKERS", &brokers)
        .output()
        .await
        .expect("run dlq");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr.trim(),
        "dlq: error: topic dlq-it-nowhere.DLT does not exist"
    );
}
