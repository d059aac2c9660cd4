use dispatcher::extract::State;
use dispatcher::kafka_handler;
use std::cell::Cell;

// A state is shared by every record in flight: it must be `Send + Sync`.
#[kafka_handler(topic = "orders")]
async fn on_order(counter: State<Cell<u64>>) -> Result<(), std::io::Error> {
    counter.set(counter.get() + 1);
    Ok(())
}

fn main() {}
