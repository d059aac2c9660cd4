use dispatcher::kafka_handler;

#[kafka_handler(topic = "orders", ordering = random, concurrency = 0, group = "")]
async fn bad() -> Result<(), std::io::Error> {
    Ok(())
}

fn main() {}
