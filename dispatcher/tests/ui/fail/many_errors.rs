// Every problem is reported at once: the attribute's and the signature's.
use dispatcher::kafka_handler;

#[kafka_handler(topic = "bad topic", max_attempts = 0, timeout = "soon", ordering = fifo)]
fn on_order<T>(value: T) -> Option<T> {
    Some(value)
}

fn main() {}
