//! The metrics and health server against a running dispatcher: the
//! counters equal what happened to the records, the lag reaches zero, and
//! readiness follows stalls, draining and fatal stops.

use dispatcher::testing::TestKit;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, thiserror::Error)]
#[error("order rejected")]
struct Rejected;

#[derive(Debug, thiserror::Error)]
#[error("configuration is broken")]
struct Broken;

/// Offsets whose first attempt already failed.
static FAILED_ONCE: Mutex<Option<HashSet<(i32, i64)>>> = Mutex::new(None);

/// `ok` is handled; `flaky` fails once with an I/O error, then works;
/// `bad` is rejected and dead-lettered.
#[dispatcher::kafka_handler(topic = "it-metrics", retry = std::io::Error, max_attempts = 3, backoff = fixed("10ms"))]
async fn counted(msg: &dispatcher::Message, body: &str) -> anyhow::Result<()> {
    match body {
        "bad" => Err(Rejected.into()),
        "flaky" => {
            let first = FAILED_ONCE
                .lock()
                .expect("lock")
                .get_or_insert_with(HashSet::new)
                .insert((msg.partition(), msg.offset()));
            if first {
                Err(std::io::Error::other("connection reset").into())
            } else {
                Ok(())
            }
        }
        _ => Ok(()),
    }
}

/// Released by the test.
static RELEASE: AtomicBool = AtomicBool::new(false);

/// `hang` waits until the test releases it; `fatal` stops the dispatcher.
#[dispatcher::kafka_handler(topic = ["it-stall", "it-ready-drain", "it-ready-fatal"], fatal = Broken)]
async fn hanging(body: &str) -> Result<(), Broken> {
    match body {
        "hang" => {
            while !RELEASE.load(Ordering::Acquire) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok(())
        }
        "fatal" => Err(Broken),
        _ => Ok(()),
    }
}

/// Released by the idle test.
static IDLE_RELEASE: AtomicBool = AtomicBool::new(false);

/// `hold` waits until the idle test releases it.
#[dispatcher::kafka_handler(topic = "it-idle")]
async fn idle(body: &str) -> Result<(), Broken> {
    while body == "hold" && !IDLE_RELEASE.load(Ordering::Acquire) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// A port nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// GET `path` from the server: the status code and the body.
async fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

/// The sum of the samples of `name` whose labels include every one of
/// `labels` (`key="value"`); `None` when there is no such sample.
fn sample(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let mut found = None;
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (series_name, series_labels) = series.split_once('{').unwrap_or((series, ""));
        if series_name == name && labels.iter().all(|l| series_labels.contains(l)) {
            *found.get_or_insert(0.0) += value.parse::<f64>().unwrap_or(f64::NAN);
        }
    }
    found
}

/// Polls the server until `done` holds for what it answers at `path`,
/// failing with the last answer after 30 s.
async fn wait_for_answer(port: u16, path: &str, done: impl Fn(u16, &str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = get(port, path).await;
        if let Some((status, body)) = &answer {
            if done(*status, body) {
                return body.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting on {path}; last answer: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_counters_equal_what_happened_and_the_lag_reaches_zero() {
    let port = free_port();
    let kit = TestKit::start(
        TestKit::builder()
            .topics(["it-metrics"])
            .metrics_address(port.to_string())
            .kafka_property("statistics.interval.ms", "100"),
    )
    .await
    .expect("start");
    let ready = wait_for_answer(port, "/health/ready", |s, _| s == 200).await;
    assert_eq!(ready.trim(), "ready");
    let (ok, flaky, bad) = (40, 6, 4);
    for i in 0..ok + flaky + bad {
        let body = if i < ok {
            "ok"
        } else if i < ok + flaky {
            "flaky"
        } else {
            "bad"
        };
        kit.publish("it-metrics", Some(&format!("k{}", i % 7)), body)
            .await
            .expect("publish");
    }
    kit.wait_until("every record finished", Duration::from_secs(60), |k| {
        k.finished_count("it-metrics") == ok + flaky + bad
    })
    .await
    .expect("every record finished");
    kit.wait_committed_to_end("it-metrics", Duration::from_secs(30))
        .await
        .expect("committed to the end");
    let topic = r#"topic="it-metrics""#;
    let outcome = |o: &'static str| {
        move |m: &str| -> Option<f64> {
            sample(
                m,
                "dispatcher_records_finished_total",
                &[r#"topic="it-metrics""#, o],
            )
        }
    };
    let metrics = wait_for_answer(port, "/metrics", |_, m| {
        let lags: Vec<f64> = m
            .lines()
            .filter(|l| {
                l.starts_with("dispatcher_consumer_lag{") && l.contains(r#"topic="it-metrics""#)
            })
            .filter_map(|l| l.rsplit_once(' ')?.1.parse().ok())
            .collect();
        lags.len() == 4
            && lags.iter().all(|&l| l == 0.0)
            && outcome(r#"outcome="handled""#)(m) == Some((ok + flaky) as f64)
            && sample(m, "dispatcher_records_in_flight", &[topic]) == Some(0.0)
    })
    .await;
    assert_eq!(
        sample(&metrics, "dispatcher_records_received_total", &[topic]),
        Some((ok + flaky + bad) as f64)
    );
    assert_eq!(
        outcome(r#"outcome="dead_lettered""#)(&metrics),
        Some(bad as f64)
    );
    assert_eq!(outcome(r#"outcome="fatal""#)(&metrics), Some(0.0));
    assert_eq!(
        sample(&metrics, "dispatcher_retries_total", &[topic]),
        Some(flaky as f64)
    );
    assert_eq!(
        sample(&metrics, "dispatcher_dead_letter_writes_total", &[topic]),
        Some(bad as f64)
    );
    // One attempt per record, plus one per retry.
    assert_eq!(
        sample(
            &metrics,
            "dispatcher_handler_duration_seconds_count",
            &[topic]
        ),
        Some((ok + 2 * flaky + bad) as f64)
    );
    let group = format!(r#"group="{}""#, kit.group_id());
    let commits = sample(&metrics, "dispatcher_commits_total", &[&group]).unwrap_or(0.0);
    assert!(commits >= 1.0, "commits counted: {metrics}");
    assert_eq!(
        sample(
            &metrics,
            "dispatcher_commit_duration_seconds_count",
            &[&group]
        ),
        Some(commits),
        "every commit timed"
    );
    assert_eq!(
        sample(&metrics, "dispatcher_assigned_partitions", &[&group]),
        Some(4.0)
    );
    let committed = kit
        .committed_offsets("it-metrics")
        .await
        .expect("committed offsets");
    for (partition, offset) in committed {
        let p = format!(r#"partition="{partition}""#);
        let gauge = sample(&metrics, "dispatcher_committed_offset", &[topic, &p]);
        assert_eq!(
            gauge,
            Some(offset as f64),
            "partition {partition}: {metrics}"
        );
    }
    assert_eq!(sample(&metrics, "dispatcher_ready", &[]), Some(1.0));
    let (live, _) = get(port, "/health/live").await.expect("live answers");
    assert_eq!(live, 200);
    kit.shutdown().await.expect("clean shutdown");
}

/// Readiness turns off while a record stalls its partition and comes back
/// when it finishes; it is off while the dispatcher drains for shutdown,
/// and after a fatal error. The tests share `RELEASE`, so they run as one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_stalls_draining_and_fatal_stops() {
    // A stall, and its end.
    RELEASE.store(false, Ordering::Release);
    let port = free_port();
    let kit = TestKit::start(
        TestKit::builder()
            .topics(["it-stall"])
            .metrics_address(port.to_string())
            .stall_timeout(Duration::from_millis(500)),
    )
    .await
    .expect("start");
    wait_for_answer(port, "/health/ready", |s, _| s == 200).await;
    let (partition, offset) = kit
        .publish("it-stall", Some("stuck-key"), "hang")
        .await
        .expect("publish");
    let why = wait_for_answer(port, "/health/ready", |s, _| s == 503).await;
    assert!(
        why.contains(&format!("it-stall[{partition}] stalled")),
        "{why}"
    );
    let metrics = get(port, "/metrics").await.expect("metrics").1;
    let p = format!(r#"partition="{partition}""#);
    assert_eq!(
        sample(
            &metrics,
            "dispatcher_partition_stalled",
            &[r#"topic="it-stall""#, &p]
        ),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        sample(
            &metrics,
            "dispatcher_oldest_unfinished_age_seconds",
            &[r#"topic="it-stall""#, &p]
        )
        .is_some_and(|age| age >= 0.5),
        "{metrics}"
    );
    assert_eq!(sample(&metrics, "dispatcher_ready", &[]), Some(0.0));
    RELEASE.store(true, Ordering::Release);
    kit.outcome("it-stall", partition, offset, Duration::from_secs(30))
        .await
        .expect("the record finishes once released");
    wait_for_answer(port, "/health/ready", |s, _| s == 200).await;
    kit.shutdown().await.expect("clean shutdown");

    // Draining: a record in flight holds the shutdown while readiness is off.
    RELEASE.store(false, Ordering::Release);
    let port = free_port();
    let mut kit = TestKit::start(
        TestKit::builder()
            .topics(["it-ready-drain"])
            .metrics_address(port.to_string())
            .drain_timeout(Duration::from_secs(20)),
    )
    .await
    .expect("start");
    wait_for_answer(port, "/health/ready", |s, _| s == 200).await;
    let (partition, offset) = kit
        .publish("it-ready-drain", None, "hang")
        .await
        .expect("publish");
    // The record is running (it stays unfinished until released).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(kit.events("it-ready-drain", partition, offset).is_empty());
    kit.shutdown_handle().shutdown();
    let why = wait_for_answer(port, "/health/ready", |s, _| s == 503).await;
    assert!(why.contains("shutting down"), "{why}");
    RELEASE.store(true, Ordering::Release);
    kit.join().await.expect("a clean stop after the drain");

    // A fatal error: readiness is off while the rest drains.
    RELEASE.store(false, Ordering::Release);
    let port = free_port();
    let mut kit = TestKit::start(
        TestKit::builder()
            .topics(["it-ready-fatal"])
            .metrics_address(port.to_string())
            .drain_timeout(Duration::from_secs(20)),
    )
    .await
    .expect("start");
    wait_for_answer(port, "/health/ready", |s, _| s == 200).await;
    // A record that holds the drain, on another key, then the fatal one.
    kit.publish("it-ready-fatal", Some("a"), "hang")
        .await
        .expect("publish");
    kit.publish("it-ready-fatal", Some("b"), "fatal")
        .await
        .expect("publish");
    let why = wait_for_answer(port, "/health/ready", |s, _| s == 503).await;
    assert!(why.contains("fatal"), "{why}");
    RELEASE.store(true, Ordering::Release);
    let stopped = kit.join().await;
    assert!(stopped.is_err(), "run() returns the fatal error");
}

/// The server drops gauges nobody set for 30 s (those of partitions that
/// moved to another consumer); the ones of a quiet consumer stay, and
/// still move afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gauges_of_a_quiet_consumer_stay_and_still_move() {
    let port = free_port();
    let kit = TestKit::start(
        TestKit::builder()
            .topics(["it-idle"])
            .metrics_address(port.to_string()),
    )
    .await
    .expect("start");
    wait_for_answer(port, "/health/ready", |s, _| s == 200).await;
    let (p, o) = kit
        .publish("it-idle", Some("a"), "ok")
        .await
        .expect("publish");
    kit.outcome("it-idle", p, o, Duration::from_secs(30))
        .await
        .expect("handled");
    // Longer than the server keeps a gauge nobody sets.
    tokio::time::sleep(Duration::from_secs(35)).await;
    let metrics = get(port, "/metrics").await.expect("metrics").1;
    let topic = r#"topic="it-idle""#;
    let group = format!(r#"group="{}""#, kit.group_id());
    assert_eq!(
        sample(&metrics, "dispatcher_ready", &[]),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "dispatcher_assigned_partitions", &[&group]),
        Some(4.0)
    );
    assert_eq!(
        sample(&metrics, "dispatcher_partition_stalled", &[topic]),
        Some(0.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "dispatcher_records_in_flight", &[topic]),
        Some(0.0),
        "{metrics}"
    );
    let partition = format!(r#"partition="{p}""#);
    assert_eq!(
        sample(
            &metrics,
            "dispatcher_committed_offset",
            &[topic, &partition]
        ),
        Some((o + 1) as f64),
        "{metrics}"
    );
    // A record in flight shows after the quiet time.
    IDLE_RELEASE.store(false, Ordering::Release);
    let (p, o) = kit
        .publish("it-idle", Some("b"), "hold")
        .await
        .expect("publish");
    wait_for_answer(port, "/metrics", |_, m| {
        sample(m, "dispatcher_records_in_flight", &[r#"topic="it-idle""#]) == Some(1.0)
    })
    .await;
    IDLE_RELEASE.store(true, Ordering::Release);
    kit.outcome("it-idle", p, o, Duration::from_secs(30))
        .await
        .expect("handled");
    wait_for_answer(port, "/metrics", |_, m| {
        sample(m, "dispatcher_records_in_flight", &[r#"topic="it-idle""#]) == Some(0.0)
    })
    .await;
    kit.shutdown().await.expect("clean shutdown");
}
