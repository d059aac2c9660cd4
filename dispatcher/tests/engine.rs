//! The engine with hand-written handlers (no macro), on the embedded broker.

use dispatcher::event::Outcome;
use dispatcher::handler::{Handler, HandlerFuture, HandlerSpec};
use dispatcher::policy::Policy;
use dispatcher::testing::TestKit;
use dispatcher::Message;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

static SEEN: Mutex<Vec<(i32, i64)>> = Mutex::new(Vec::new());

struct Record;
impl Handler for Record {
    fn call(&self, msg: Message) -> HandlerFuture<'static> {
        Box::pin(async move {
            SEEN.lock()
                .expect("lock")
                .push((msg.partition(), msg.offset()));
            Ok(())
        })
    }
}

static RECORD: Record = Record;

fn spec(topic: &'static [&'static str]) -> HandlerSpec {
    HandlerSpec::new("record", topic, &RECORD)
        .declared_at(module_path!(), file!(), line!())
        .with_policy(Policy::DEFAULT)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_record_handled_once_and_committed_to_the_end() {
    let kit = TestKit::start(
        TestKit::builder()
            .without_registered_handlers()
            .handler(spec(&["engine-once"])),
    )
    .await
    .expect("start");
    let n = 400;
    for i in 0..n {
        kit.publish(
            "engine-once",
            Some(&format!("k{}", i % 17)),
            format!("v{i}"),
        )
        .await
        .expect("publish");
    }
    kit.wait_until("all records handled", Duration::from_secs(60), |k| {
        k.finished_count("engine-once") == n
    })
    .await
    .expect("handled");
    kit.wait_committed_to_end("engine-once", Duration::from_secs(30))
        .await
        .expect("commits reach the end");
    let seen = SEEN.lock().expect("lock").clone();
    let mut counts: HashMap<(i32, i64), usize> = HashMap::new();
    for s in &seen {
        *counts.entry(*s).or_default() += 1;
    }
    assert_eq!(counts.len(), n, "every record seen");
    assert!(
        counts.values().all(|&c| c == 1),
        "no duplicates in a clean run"
    );
    assert!(kit
        .final_outcomes("engine-once")
        .values()
        .all(|o| matches!(o, Outcome::Handled { attempts: 1 })));
    kit.shutdown().await.expect("clean shutdown");
}
