use dispatcher::kafka_handler;

struct NotAClassifier;

#[kafka_handler(topic = "orders", policy = NotAClassifier)]
async fn on_order() -> Result<(), std::io::Error> {
    Ok(())
}

fn main() {}
