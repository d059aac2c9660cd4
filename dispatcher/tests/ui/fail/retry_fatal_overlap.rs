use dispatcher::kafka_handler;

#[kafka_handler(topic = "orders", retry = [std::io::Error, std::fmt::Error], fatal = std::io::Error)]
async fn overlap() -> Result<(), std::io::Error> {
    Ok(())
}

#[kafka_handler(topic = "orders", retry = [std::fmt::Error, std::fmt::Error])]
async fn listed_twice() -> Result<(), std::io::Error> {
    Ok(())
}

fn main() {}
