use dispatcher::kafka_handler;
use std::rc::Rc;

async fn save() {}

#[kafka_handler(topic = "orders")]
async fn holds_rc(payload: &str) -> Result<(), std::io::Error> {
    let shared = Rc::new(payload.to_owned());
    save().await;
    drop(shared);
    Ok(())
}

fn main() {}
