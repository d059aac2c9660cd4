//! A SIGTERM that arrives while `run()` is still in its startup checks
//! (here: waiting for a broker that accepts connections and never answers)
//! stops the process cleanly with exit 0, instead of killing it by the
//! signal's default action before the dispatcher listens for it.

use dispatcher_tests::{wait_for, ConsumerConfig, WorkDir};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn sigterm_during_the_startup_checks_exits_cleanly() {
    let mut dir = WorkDir::new("startup-signal");
    // A "broker" that accepts connections and never says a word.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = listener.local_addr().expect("local address").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let a = accepted.clone();
    std::thread::spawn(move || {
        let mut open = Vec::new();
        for conn in listener.incoming().flatten() {
            a.fetch_add(1, Ordering::AcqRel);
            open.push(conn);
        }
    });
    let mut consumer = ConsumerConfig {
        exe: env!("CARGO_BIN_EXE_test_consumer").to_owned(),
        brokers: format!("127.0.0.1:{port}"),
        group: "startup-signal".to_owned(),
        topic: "startup-signal".to_owned(),
        log: dir.path().join("handled.log"),
        dir: dir.path().to_owned(),
    }
    .spawn(0);
    assert!(
        wait_for(
            "the consumer to connect to the silent broker",
            Duration::from_secs(30),
            || accepted.load(Ordering::Acquire) > 0
        ),
        "the consumer never connected; see {}",
        dir.path().display()
    );
    let status = consumer.stop(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM during the startup checks: {status:?}, expected exit 0; see {}",
        dir.path().display()
    );
    dir.remove_on_drop();
}
