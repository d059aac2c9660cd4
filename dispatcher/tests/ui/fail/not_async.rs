use dispatcher::kafka_handler;

#[kafka_handler(topic = "orders")]
fn blocking() -> Result<(), std::io::Error> {
    Ok(())
}

fn main() {}
