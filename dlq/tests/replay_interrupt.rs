//! Ctrl-C during `dlq replay` (the binary): what was sent is committed,
//! and the next run sends the rest, each record once.

mod common;

use common::{
    brokers, committed, create_topic, end_offsets, header, many_dead_letters, read_all, replay,
};
use dispatcher_dlq::REPLAYED_FROM;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_a_replay_committed_and_the_next_run_resumes() {
    let brokers = brokers();
    let (source, dlt) = ("dlq-it-ctrl-c", "dlq-it-ctrl-c.DLT");
    let count = 10_000;
    create_topic(source, 4);
    create_topic(dlt, 4);
    let b = brokers.clone();
    tokio::task::spawn_blocking(move || many_dead_letters(&b, source, dlt, 4, count))
        .await
        .expect("thread");
    let group = "dlq-it-ctrl-c-group";

    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_dlq"))
        .args(["replay", dlt, "--group", group, "--brokers", &brokers])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start dlq replay");
    // Ctrl-C once records arrive.
    let deadline = Instant::now() + Duration::from_secs(60);
    while end_offsets(&brokers, source).await.values().sum::<i64>() == 0 {
        assert!(
            Instant::now() < deadline,
            "the replay sent nothing within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let pid = child.id().expect("running").to_string();
    let _ = tokio::process::Command::new("sh")
        // The shell's own kill: no procps needed.
        .args(["-c", &format!("kill -INT {pid}")])
        .status()
        .await
        .expect("kill -INT");
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("it stops within 60 s")
        .expect("its output");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    println!("exit {:?}\n{stdout}\n{stderr}", out.status.code());
    // Interrupted (130), or finished before the signal came (0).
    match out.status.code() {
        Some(130) => assert!(
            stdout.contains("interrupted: what was sent is committed"),
            "{stdout}"
        ),
        Some(0) => println!("the replay finished before Ctrl-C"),
        other => panic!("exit {other:?}: {stdout}\n{stderr}"),
    }
    // Everything sent is committed, and nothing else.
    let sent = read_all(&brokers, source).await.len() as i64;
    let done: i64 = committed(&brokers, group, dlt).await.values().sum();
    assert_eq!(sent, done, "records sent vs offsets committed");

    let (rest, printed) = replay(&[dlt, "--group", group, "--brokers", &brokers])
        .await
        .expect("the rest");
    assert_eq!(rest.sent as i64 + sent, count as i64, "{printed}");
    let records = read_all(&brokers, source).await;
    assert_eq!(records.len(), count);
    let from: BTreeSet<String> = records
        .iter()
        .filter_map(|r| header(r, REPLAYED_FROM))
        .collect();
    assert_eq!(from.len(), count, "each dead letter replayed once");
    let payloads: BTreeSet<Vec<u8>> = records.iter().filter_map(|r| r.payload.clone()).collect();
    assert_eq!(payloads.len(), count);
    assert_eq!(
        committed(&brokers, group, dlt).await,
        end_offsets(&brokers, dlt).await
    );
}
