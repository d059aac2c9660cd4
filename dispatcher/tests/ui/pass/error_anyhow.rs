use dispatcher::policy::Classification;
use dispatcher::{kafka_handler, Message};

#[kafka_handler(topic = "orders", retry = std::num::ParseIntError)]
async fn anyhow_error(text: &str) -> Result<(), anyhow::Error> {
    let n: u32 = text.parse()?;
    anyhow::ensure!(n > 0, "zero");
    Ok(())
}

#[kafka_handler(topic = "orders")]
async fn anyhow_result(text: &str) -> anyhow::Result<()> {
    anyhow::ensure!(!text.is_empty(), "empty");
    Ok(())
}

fn main() {
    let handlers = dispatcher::handler::registered();
    let bad = Message::new("orders", 0, 0).with_payload("x");
    let error =
        futures::executor::block_on(handlers[0].handler.call(bad.clone())).expect_err("not a number");
    // The ParseIntError inside the anyhow::Error is still found.
    assert!(error.is::<std::num::ParseIntError>());
    assert_eq!(handlers[0].policy.classify(&error), Classification::Retry);

    let ok = Message::new("orders", 0, 1).with_payload("1");
    for spec in &handlers {
        futures::executor::block_on(spec.handler.call(ok.clone())).expect("succeeds");
    }
}
