use dispatcher::{kafka_handler, Message};

#[kafka_handler(topic = "orders")]
async fn owned(msg: Message) -> Result<(), std::io::Error> {
    assert_eq!(msg.topic(), "orders");
    Ok(())
}

#[kafka_handler(topic = "orders", group = "second")]
async fn borrowed(msg: &Message) -> Result<(), std::io::Error> {
    assert_eq!(msg.offset(), 7);
    Ok(())
}

fn main() {
    let handlers = dispatcher::handler::registered();
    assert_eq!(handlers.len(), 2);
    assert_eq!(handlers[0].name, "owned");
    assert_eq!(handlers[1].name, "borrowed");
    let msg = Message::new("orders", 0, 7);
    for spec in &handlers {
        futures::executor::block_on(spec.handler.call(msg.clone())).expect("handler succeeds");
    }
}
