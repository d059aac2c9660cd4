use dispatcher::kafka_handler;

type IoError = std::io::Error;

#[kafka_handler(topic = "orders", retry = std::io::Error, fatal = [std::fmt::Error, IoError])]
async fn overlap_through_alias() -> Result<(), std::io::Error> {
    Ok(())
}

fn main() {}
