use dispatcher::kafka_handler;

#[kafka_handler(topic = "orders")]
async fn stringly() -> Result<(), String> {
    Err("nope".to_owned())
}

fn main() {}
