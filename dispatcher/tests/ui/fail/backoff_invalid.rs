use dispatcher::kafka_handler;

#[kafka_handler(topic = "orders", backoff = exponential(factor = 0.5, jitter = 1.5))]
async fn out_of_range() -> Result<(), std::io::Error> {
    Ok(())
}

#[kafka_handler(topic = "orders", backoff = exponential(initial = "1m", max = "10s"))]
async fn initial_above_max() -> Result<(), std::io::Error> {
    Ok(())
}

#[kafka_handler(topic = "orders", backoff = exponential(base = "1s", factor = 2.0))]
async fn unknown_argument() -> Result<(), std::io::Error> {
    Ok(())
}

#[kafka_handler(topic = "orders", backoff = linear("1s"))]
async fn unknown_kind() -> Result<(), std::io::Error> {
    Ok(())
}

fn main() {}
