use dispatcher::{kafka_handler, Message};

#[kafka_handler(topic = "ticks")]
async fn tick() -> Result<(), std::io::Error> {
    Ok(())
}

fn main() {
    let handlers = dispatcher::handler::registered();
    assert_eq!(handlers.len(), 1);
    assert_eq!(handlers[0].topics, &["ticks"]);
    futures::executor::block_on(handlers[0].handler.call(Message::new("ticks", 0, 0)))
        .expect("handler succeeds");
}
