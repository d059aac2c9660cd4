use dispatcher::kafka_handler;

#[kafka_handler(topic = "orders", retry_topics = ["30s", "10s"])]
async fn descending() -> Result<(), std::io::Error> {
    Ok(())
}

#[kafka_handler(topic = "orders", retry_topics = [])]
async fn empty() -> Result<(), std::io::Error> {
    Ok(())
}

#[kafka_handler(topic = "orders", retry_topics = ["1s", "5 minutes"])]
async fn malformed() -> Result<(), std::io::Error> {
    Ok(())
}

#[kafka_handler(topic = "orders", retry_topics = "1s")]
async fn not_a_list() -> Result<(), std::io::Error> {
    Ok(())
}

#[kafka_handler(topic = "orders", retry_topics = ["1s"], retry_topic_name = "{topic}.{attempt}")]
async fn unknown_placeholder() -> Result<(), std::io::Error> {
    Ok(())
}

#[kafka_handler(topic = "orders", retry_topic_name = "{topic}-retry-{level}")]
async fn name_without_levels() -> Result<(), std::io::Error> {
    Ok(())
}

fn main() {}
