use dispatcher::handler::HandlerError;
use dispatcher::{kafka_handler, Message};

#[kafka_handler(topic = "orders")]
async fn passes_through(text: &str) -> Result<(), HandlerError> {
    let _: u8 = text.parse()?;
    Ok(())
}

fn main() {
    let handlers = dispatcher::handler::registered();
    let bad = Message::new("orders", 0, 0).with_payload("x");
    let error =
        futures::executor::block_on(handlers[0].handler.call(bad.clone())).expect_err("not a number");
    assert!(error.is::<std::num::ParseIntError>());
}
