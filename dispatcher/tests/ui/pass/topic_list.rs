use dispatcher::kafka_handler;

#[kafka_handler(topic = ["orders", "orders.v2", "legacy_orders-1"])]
async fn list() -> Result<(), std::io::Error> {
    Ok(())
}

#[kafka_handler(topics = ["a"], ordering = unordered)]
async fn alias() -> Result<(), std::io::Error> {
    Ok(())
}

#[kafka_handler(topics = "b", ordering = key,)]
async fn alias_single() -> Result<(), std::io::Error> {
    Ok(())
}

fn main() {
    let handlers = dispatcher::handler::registered();
    assert_eq!(
        handlers[0].topics,
        &["orders", "orders.v2", "legacy_orders-1"]
    );
    assert_eq!(handlers[1].topics, &["a"]);
    assert_eq!(
        handlers[1].policy.ordering(),
        dispatcher::policy::OrderingMode::Unordered
    );
    assert_eq!(handlers[2].topics, &["b"]);
    assert_eq!(
        handlers[2].policy.ordering(),
        dispatcher::policy::OrderingMode::Key
    );
}
