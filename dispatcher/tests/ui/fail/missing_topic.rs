use dispatcher::kafka_handler;

#[kafka_handler(retry = std::io::Error)]
async fn nowhere() -> Result<(), std::io::Error> {
    Ok(())
}

#[kafka_handler]
async fn bare() -> Result<(), std::io::Error> {
    Ok(())
}

fn main() {}
