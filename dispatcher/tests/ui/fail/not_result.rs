use dispatcher::kafka_handler;

#[kafka_handler(topic = "orders")]
async fn nothing() {}

#[kafka_handler(topic = "orders")]
async fn option() -> Option<()> {
    None
}

#[kafka_handler(topic = "orders")]
async fn ok_not_unit() -> Result<u32, std::io::Error> {
    Ok(1)
}

fn main() {}
