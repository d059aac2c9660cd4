use dispatcher::{kafka_handler, Json, Message};

#[derive(serde::Deserialize)]
struct Order {
    id: u64,
}

#[kafka_handler(topic = "orders")]
async fn on_order(order: Json<Order>) -> Result<(), std::io::Error> {
    assert_eq!(order.id, 7);
    Ok(())
}

#[kafka_handler(topic = "orders")]
async fn maybe_order(order: Option<Json<Order>>) -> Result<(), std::io::Error> {
    if let Some(Json(order)) = order {
        assert_eq!(order.id, 7);
    }
    Ok(())
}

fn main() {
    let handlers = dispatcher::handler::registered();
    let msg = Message::new("orders", 0, 0).with_payload(r#"{"id":7}"#);
    for spec in &handlers {
        futures::executor::block_on(spec.handler.call(msg.clone())).expect("valid JSON");
    }
    let bad = Message::new("orders", 0, 1).with_payload("not json");
    let error = futures::executor::block_on(handlers[0].handler.call(bad.clone())).expect_err("bad JSON");
    assert!(error.is_decode_error());
    assert_eq!(
        handlers[0].policy.classify(&error),
        dispatcher::policy::Classification::DeadLetter
    );
    let tombstone = Message::new("orders", 0, 2);
    futures::executor::block_on(handlers[1].handler.call(tombstone.clone()))
        .expect("Option accepts a tombstone");
}
