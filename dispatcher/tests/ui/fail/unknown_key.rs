use dispatcher::kafka_handler;

#[kafka_handler(topic = "orders", retries = std::io::Error)]
async fn typo() -> Result<(), std::io::Error> {
    Ok(())
}

#[kafka_handler(topic = "orders", colour = "blue")]
async fn unrelated() -> Result<(), std::io::Error> {
    Ok(())
}

fn main() {}
