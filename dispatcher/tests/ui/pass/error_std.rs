use dispatcher::policy::Classification;
use dispatcher::{kafka_handler, Message};
use std::fmt;

#[derive(Debug)]
struct PaymentDeclined;

impl fmt::Display for PaymentDeclined {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("payment declined")
    }
}

impl std::error::Error for PaymentDeclined {}

#[kafka_handler(topic = "payments")]
async fn io_error() -> Result<(), std::io::Error> {
    Err(std::io::Error::other("broker busy"))
}

#[kafka_handler(topic = "payments")]
async fn custom_error() -> std::result::Result<(), PaymentDeclined> {
    Err(PaymentDeclined)
}

// `io::Result<()>`: an alias whose last segment is `Result`.
#[kafka_handler(topic = "payments")]
async fn io_result() -> std::io::Result<()> {
    Ok(())
}

fn main() {
    let handlers = dispatcher::handler::registered();
    let msg = Message::new("payments", 0, 0);
    let run = |i: usize| futures::executor::block_on(handlers[i].handler.call(msg.clone()));

    let io = run(0).expect_err("fails");
    assert!(io.is::<std::io::Error>());
    assert_eq!(handlers[0].policy.classify(&io), Classification::Retry);

    let custom = run(1).expect_err("fails");
    assert!(custom.is::<PaymentDeclined>());
    assert_eq!(custom.to_string(), "payment declined");
    assert_eq!(
        handlers[1].policy.classify(&custom),
        Classification::DeadLetter
    );

    run(2).expect("succeeds");
}
