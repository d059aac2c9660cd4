use dispatcher::{kafka_handler, Message};
use std::error::Error;

#[kafka_handler(topic = "orders")]
async fn boxed(text: &str) -> Result<(), Box<dyn Error + Send + Sync>> {
    let _: u8 = text.parse()?;
    Ok(())
}

fn main() {
    let handlers = dispatcher::handler::registered();
    let bad = Message::new("orders", 0, 0).with_payload("300");
    let error = futures::executor::block_on(handlers[0].handler.call(bad.clone())).expect_err("too large");
    // The boxed error's message and type survive the conversion, so a
    // policy can list `ParseIntError`.
    assert_eq!(error.to_string(), "number too large to fit in target type");
    assert!(error.is::<std::num::ParseIntError>());
    assert_eq!(error.type_name(), "Box<dyn Error + Send + Sync>");
}
