use dispatcher::kafka_handler;

#[kafka_handler(topic = "orders", retry = std::io::Error, retry = std::fmt::Error)]
async fn twice() -> Result<(), std::io::Error> {
    Ok(())
}

#[kafka_handler(topic = "orders", topics = ["payments"])]
async fn alias_twice() -> Result<(), std::io::Error> {
    Ok(())
}

fn main() {}
