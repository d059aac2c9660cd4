use dispatcher::kafka_handler;

#[kafka_handler(topic = "orders", "retry", max_attempts 3, timeout =)]
async fn on_order() -> Result<(), std::io::Error> {
    Ok(())
}

fn main() {}
