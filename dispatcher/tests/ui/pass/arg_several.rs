use dispatcher::{kafka_handler, Json, Message};

#[derive(serde::Deserialize)]
struct Order {
    id: u64,
}

#[kafka_handler(topic = "orders")]
async fn several(
    Json(order): Json<Order>,
    msg: &Message,
    raw: Option<&str>,
    mut copy: Vec<u8>,
) -> Result<(), std::io::Error> {
    copy.push(b'!');
    assert_eq!(order.id, 1);
    assert_eq!(msg.partition(), 3);
    assert_eq!(raw, Some(r#"{"id":1}"#));
    assert_eq!(copy.last(), Some(&b'!'));
    Ok(())
}

// Named lifetimes are fine: the handler is still not generic over types.
#[kafka_handler(topic = "orders")]
async fn with_lifetime<'a>(text: &'a str, msg: &'a Message) -> Result<(), std::io::Error> {
    assert_eq!(text.len(), msg.payload().map_or(0, <[u8]>::len));
    Ok(())
}

fn main() {
    let msg = Message::new("orders", 3, 0).with_payload(r#"{"id":1}"#);
    for spec in dispatcher::handler::registered() {
        futures::executor::block_on(spec.handler.call(msg.clone())).expect("handler succeeds");
    }
}
