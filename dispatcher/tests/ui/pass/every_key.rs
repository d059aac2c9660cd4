use dispatcher::handler::HandlerError;
use dispatcher::kafka_handler;
use dispatcher::policy::{Backoff, Classification, Classify, OrderingMode};
use std::time::Duration;

#[derive(Debug)]
struct ConfigError;

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("bad configuration")
    }
}

impl std::error::Error for ConfigError {}

struct NeverMind;

impl Classify for NeverMind {
    fn classify(&self, _: &HandlerError) -> Option<Classification> {
        None
    }
}

#[kafka_handler(
    topic = "orders",
    group = "billing",
    retry = [std::io::Error, std::num::ParseIntError],
    fatal = ConfigError,
    policy = NeverMind,
    max_attempts = 5,
    backoff = fixed("200ms"),
    timeout = "30s",
    ordering = partition,
    concurrency = 16,
    dead_letter_topic = "orders.DLT",
    retry_topics = ["1s", "30s", "5m"],
    retry_topic_name = "{topic}-retry-{level}",
    crate = ::dispatcher,
)]
async fn on_order() -> Result<(), anyhow::Error> {
    Ok(())
}

fn main() {
    let handlers = dispatcher::handler::registered();
    let spec = &handlers[0];
    assert_eq!(spec.name, "on_order");
    assert_eq!(spec.topics, &["orders"]);
    assert_eq!(spec.group, Some("billing"));
    assert!(spec.file.ends_with("every_key.rs"), "{}", spec.file);
    assert_eq!(spec.line, 25);
    assert!(spec.qualified_name().ends_with("::on_order"));
    let policy = &spec.policy;
    assert_eq!(policy.max_attempts(), 5);
    assert_eq!(
        *policy.backoff(),
        Backoff::Fixed(Duration::from_millis(200))
    );
    assert_eq!(policy.timeout(), Some(Duration::from_secs(30)));
    assert_eq!(policy.ordering(), OrderingMode::Partition);
    assert_eq!(policy.concurrency(), Some(16));
    assert_eq!(policy.dead_letter_topic(), Some("orders.DLT"));
    assert_eq!(
        policy.retry_topics(),
        &[
            Duration::from_secs(1),
            Duration::from_secs(30),
            Duration::from_secs(300)
        ]
    );
    assert_eq!(spec.retry_topic("billing", "orders", 2).as_deref(), Some("orders-retry-2"));
    assert_eq!(spec.retry_topic("billing", "orders", 4), None);
    let classify = |e: HandlerError| policy.classify(&e);
    assert_eq!(
        classify(HandlerError::new(ConfigError)),
        Classification::Fatal
    );
    assert_eq!(
        classify(HandlerError::new(std::io::Error::other("x"))),
        Classification::Retry
    );
    let parse = "x".parse::<u8>().expect_err("not a number");
    assert_eq!(classify(HandlerError::new(parse)), Classification::Retry);
    let other = HandlerError::new(std::fmt::Error);
    assert_eq!(classify(other), Classification::DeadLetter);
    assert!(format!("{policy:?}").contains("ConfigError"), "{policy:?}");
}
