//! `dlq dev-broker`: the binary serves a broker that other programs use
//! through the address it prints, and stops on Ctrl-C.

use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_broker_serves_clients_until_ctrl_c() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_dlq"))
        .args([
            "dev-broker",
            "--port",
            "0",
            "--partitions",
            "3",
            "--topic",
            "orders",
            "--topic",
            "orders.DLT",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start dlq dev-broker");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut printed = Vec::new();
    let brokers = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            printed.push(line.clone());
            if let Some(b) = line.strip_prefix("KAFKA_BROKERS=") {
                return b.to_owned();
            }
        }
        panic!("dev-broker ended before printing KAFKA_BROKERS: {printed:?}");
    })
    .await
    .expect("the address within 30 s");
    assert!(brokers.starts_with("127.0.0.1:"), "{brokers}");
    assert!(
        printed.iter().any(|l| l == "topic orders: 3 partitions"),
        "{printed:?}"
    );

    // A client bootstraps through the forwarded port, writes and reads.
    let b = brokers.clone();
    let partitions = tokio::task::spawn_blocking(move || {
        dispatcher::testing::end_offsets(&b, "orders").map(|o| o.len())
    })
    .await
    .expect("thread")
    .expect("metadata through the forwarded port");
    assert_eq!(partitions, 3);
    let producer = dispatcher::testing::Producer::new(&brokers).expect("producer");
    let (p, o) = producer
        .send("orders", Some(2), Some(b"k"), Some(b"hello"), &[])
        .await
        .expect("write through the dev broker");
    assert_eq!((p, o), (2, 0));
    let b = brokers.clone();
    let read = tokio::task::spawn_blocking(move || {
        dispatcher::testing::read_topic(&b, "orders", 1, Duration::from_secs(30))
    })
    .await
    .expect("thread")
    .expect("read back");
    assert_eq!(read[0].payload.as_deref(), Some(b"hello".as_slice()));

    // Ctrl-C stops it.
    let pid = child.id().expect("running").to_string();
    let status = tokio::process::Command::new("sh")
        // The shell's own kill: no procps needed.
        .args(["-c", &format!("kill -INT {pid}")])
        .status()
        .await
        .expect("kill -INT");
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("stopped within 30 s")
        .expect("exit status");
    assert!(exit.success(), "{exit:?}");
    let mut rest = Vec::new();
    while let Some(line) = lines.next_line().await.expect("read stdout") {
        rest.push(line);
    }
    assert_eq!(
        rest.last().map(String::as_str),
        Some("dlq dev-broker: stopped"),
        "{rest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = taken.local_addr().expect("address").port().to_string();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_dlq"))
        .args(["dev-broker", "--port", &port])
        .output()
        .await
        .expect("run dlq dev-broker");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("listening on 127.0.0.1:{port} (in use? choose another with --port, or --port 0 for a free one)")),
        "{stderr}"
    );
}
