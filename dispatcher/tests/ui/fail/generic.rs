use dispatcher::{kafka_handler, Json};

#[kafka_handler(topic = "orders")]
async fn generic<T: serde::de::DeserializeOwned>(order: Json<T>) -> Result<(), std::io::Error> {
    let _ = order;
    Ok(())
}

#[kafka_handler(topic = "orders")]
async fn impl_trait(payload: impl AsRef<[u8]>) -> Result<(), std::io::Error> {
    let _ = payload;
    Ok(())
}

fn main() {}
