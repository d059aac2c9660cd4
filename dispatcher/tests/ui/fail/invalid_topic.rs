use dispatcher::kafka_handler;

#[kafka_handler(topic = ["orders", "orders/eu", "..", "orders"], dead_letter_topic = "orders DLT")]
async fn bad_names() -> Result<(), std::io::Error> {
    Ok(())
}

#[kafka_handler(topic = [])]
async fn no_topics() -> Result<(), std::io::Error> {
    Ok(())
}

#[kafka_handler(topic = orders)]
async fn unquoted() -> Result<(), std::io::Error> {
    Ok(())
}

#[kafka_handler(topic = "a-topic-name-that-is-far-too-long-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")]
async fn too_long() -> Result<(), std::io::Error> {
    Ok(())
}

fn main() {}
