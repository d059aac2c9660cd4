use dispatcher::kafka_handler;

struct Service;

impl Service {
    #[kafka_handler(topic = "orders")]
    async fn on_order(&self, payload: &[u8]) -> Result<(), std::io::Error> {
        let _ = payload;
        Ok(())
    }
}

fn main() {}
