use dispatcher::kafka_handler;

#[kafka_handler(topic = "orders", timeout = "30 seconds")]
async fn spelled_out() -> Result<(), std::io::Error> {
    Ok(())
}

#[kafka_handler(topic = "orders", backoff = fixed("1.5s"))]
async fn fractional() -> Result<(), std::io::Error> {
    Ok(())
}

#[kafka_handler(topic = "orders", timeout = 30)]
async fn unquoted() -> Result<(), std::io::Error> {
    Ok(())
}

#[kafka_handler(topic = "orders", backoff = exponential(initial = "1d"))]
async fn unknown_unit() -> Result<(), std::io::Error> {
    Ok(())
}

#[kafka_handler(topic = "orders", timeout = "0s")]
async fn zero_timeout() -> Result<(), std::io::Error> {
    Ok(())
}

fn main() {}
