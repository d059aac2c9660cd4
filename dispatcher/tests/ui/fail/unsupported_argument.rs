use dispatcher::kafka_handler;

struct Order;

#[kafka_handler(topic = "orders")]
async fn on_order(order: Order, count: u32) -> Result<(), std::io::Error> {
    let _ = (order, count);
    Ok(())
}

fn main() {}
