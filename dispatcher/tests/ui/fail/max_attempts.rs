use dispatcher::kafka_handler;

#[kafka_handler(topic = "orders", max_attempts = 0)]
async fn zero() -> Result<(), std::io::Error> {
    Ok(())
}

#[kafka_handler(topic = "orders", max_attempts = "3")]
async fn quoted() -> Result<(), std::io::Error> {
    Ok(())
}

#[kafka_handler(topic = "orders", max_attempts = 2.5)]
async fn fractional() -> Result<(), std::io::Error> {
    Ok(())
}

#[kafka_handler(topic = "orders", max_attempts = 99999999999)]
async fn huge() -> Result<(), std::io::Error> {
    Ok(())
}

fn main() {}
