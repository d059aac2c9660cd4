//! Every failed record leaves a dead letter, however large it or its error
//! is: a near-maximum undecodable record is dead-lettered without its
//! payload (with a header saying so and where the original is), a 200 KB
//! error message is cut to the header limit, the partitions are committed
//! to their ends and the consumer keeps running. Before, the too-large
//! dead-letter write was fatal, and the restarted consumer failed on the
//! same record forever.

use dispatcher::dead_letter::headers as h;
use dispatcher::testing::TestKit;
use dispatcher::{Json, Message};
use std::time::Duration;

const LARGE: &str = "it-dlt-large";
const LONG_ERROR: &str = "it-dlt-long-error";

#[derive(Debug, serde::Deserialize)]
struct Order {
    #[allow(dead_code)]
    id: u64,
}

#[dispatcher::kafka_handler(topic = "it-dlt-large")]
async fn orders(_order: Json<Order>) -> Result<(), std::io::Error> {
    Ok(())
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Verbose(String);

#[dispatcher::kafka_handler(topic = "it-dlt-long-error")]
async fn verbose(msg: &Message) -> Result<(), Verbose> {
    if msg.payload() == Some(&b"fail"[..]) {
        return Err(Verbose(format!("the reason is {}", "very ".repeat(40_000))));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_records_and_errors_still_leave_a_dead_letter() {
    let kit = TestKit::start(
        TestKit::builder()
            .topics([LARGE, LONG_ERROR])
            .embedded_partitions(1),
    )
    .await
    .expect("start the test kit");

    // Just under the producer's message.max.bytes (1,000,000): it is
    // stored, but not with the dead-letter headers added.
    let huge = vec![b'x'; 999_900];
    let (p, big) = kit
        .publish_to(LARGE, 0, Some("k"), &huge)
        .await
        .expect("publish the large record");
    let (_, after) = kit
        .publish_to(LARGE, 0, Some("k"), r#"{"id": 1}"#)
        .await
        .expect("publish");
    let (_, failing) = kit
        .publish_to(LONG_ERROR, 0, Some("k"), "fail")
        .await
        .expect("publish");
    kit.publish_to(LONG_ERROR, 0, Some("k"), "fine")
        .await
        .expect("publish");

    let wait = Duration::from_secs(60);
    let letters = kit
        .read(&format!("{LARGE}.DLT"), 1, wait)
        .await
        .expect("the large record's dead letter");
    let letter = &letters[0];
    assert_eq!(letter.payload, None, "written without its payload");
    assert_eq!(letter.key.as_deref(), Some(&b"k"[..]), "the key is kept");
    let omitted = letter.header(h::PAYLOAD_OMITTED).expect("says why");
    assert!(
        omitted.contains("999900 bytes") && omitted.contains(&format!("{LARGE}[{p}] offset {big}")),
        "{omitted}"
    );
    assert_eq!(letter.header(h::ORIGINAL_OFFSET), Some(big.to_string()));
    assert_eq!(letter.header(h::REASON).as_deref(), Some("undecodable"));

    let letters = kit
        .read(&format!("{LONG_ERROR}.DLT"), 1, wait)
        .await
        .expect("the long error's dead letter");
    let letter = &letters[0];
    assert_eq!(letter.header(h::ORIGINAL_OFFSET), Some(failing.to_string()));
    for name in [h::ERROR_MESSAGE, h::ERROR_CHAIN] {
        let value = letter.header(name).expect("error header");
        assert!(
            value.len() <= h::MAX_VALUE_BYTES,
            "{name}: {} bytes",
            value.len()
        );
        assert!(value.starts_with("the reason is very very"), "{name}");
        assert!(value.ends_with(h::TRUNCATED_MARKER), "{name}");
    }
    assert_eq!(
        letter.payload.as_deref(),
        Some(&b"fail"[..]),
        "the payload is kept"
    );

    // The partitions moved on past both, and the consumer still runs.
    kit.outcome(LARGE, 0, after, wait)
        .await
        .expect("the record after the large one is handled");
    kit.wait_committed_to_end(LARGE, wait)
        .await
        .expect("committed past the large record");
    kit.wait_committed_to_end(LONG_ERROR, wait)
        .await
        .expect("committed past the long error");
    kit.shutdown().await.expect("run() did not stop");
}
