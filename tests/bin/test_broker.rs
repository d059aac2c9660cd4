//! A broker process for end-to-end tests: librdkafka's mock cluster on
//! 127.0.0.1.
//!
//! Usage: `test_broker PARTITIONS TOPIC [TOPIC...]`. Creates each topic and
//! its dead-letter topic (`<topic>.DLT`), as a real cluster would have them.
//! Prints the bootstrap servers on stdout as one line once the topics
//! exist, then runs until its stdin closes or it is killed.

use std::io::{Read, Write};

fn main() {
    let mut args = std::env::args().skip(1);
    let partitions: i32 = args
        .next()
        .and_then(|p| p.parse().ok())
        .expect("usage: test_broker PARTITIONS TOPIC [TOPIC...]");
    let topics: Vec<String> = args.collect();
    assert!(
        !topics.is_empty(),
        "usage: test_broker PARTITIONS TOPIC [TOPIC...]"
    );
    let broker = dispatcher::broker::EmbeddedBroker::start(1).expect("start the mock cluster");
    for t in &topics {
        for name in [t.clone(), format!("{t}.DLT")] {
            broker
                .create_topic(&name, partitions)
                .expect("create the topic");
        }
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", broker.bootstrap_servers()).expect("print the bootstrap servers");
    out.flush().expect("flush stdout");
    drop(out);
    // Block until stdin closes (the test dropped its end) or we are killed.
    let mut sink = [0u8; 256];
    let mut stdin = std::io::stdin().lock();
    while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
    drop(broker);
}
