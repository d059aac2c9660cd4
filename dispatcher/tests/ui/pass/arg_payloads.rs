use dispatcher::{kafka_handler, Message};

#[kafka_handler(topic = "raw")]
async fn slice(payload: &[u8]) -> Result<(), std::io::Error> {
    assert_eq!(payload, b"hello");
    Ok(())
}

#[kafka_handler(topic = "raw")]
async fn vec(payload: Vec<u8>) -> Result<(), std::io::Error> {
    assert_eq!(payload, b"hello".to_vec());
    Ok(())
}

#[kafka_handler(topic = "raw")]
async fn bytes(payload: bytes::Bytes) -> Result<(), std::io::Error> {
    assert_eq!(&payload[..], b"hello");
    Ok(())
}

#[kafka_handler(topic = "raw")]
async fn text(payload: &str) -> Result<(), std::io::Error> {
    assert_eq!(payload, "hello");
    Ok(())
}

#[kafka_handler(topic = "raw")]
async fn string(payload: String) -> Result<(), std::io::Error> {
    assert_eq!(payload, "hello");
    Ok(())
}

fn main() {
    let handlers = dispatcher::handler::registered();
    assert_eq!(handlers.len(), 5);
    let msg = Message::new("raw", 0, 0).with_payload("hello");
    for spec in &handlers {
        futures::executor::block_on(spec.handler.call(msg.clone())).expect("handler succeeds");
    }
    // A tombstone is not a payload: the extraction fails as a decode error.
    let tombstone = Message::new("raw", 0, 1);
    for spec in &handlers {
        let error = futures::executor::block_on(spec.handler.call(tombstone.clone()))
            .expect_err("a tombstone has no payload");
        assert!(error.is_decode_error(), "{error}");
    }
}
