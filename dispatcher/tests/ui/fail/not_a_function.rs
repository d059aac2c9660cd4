use dispatcher::kafka_handler;

#[kafka_handler(topic = "orders")]
struct Handler;

fn main() {}
