use dispatcher::kafka_handler;
use dispatcher::policy::Backoff;
use std::time::Duration;

#[kafka_handler(topic = "a", backoff = fixed("2s"))]
async fn fixed() -> Result<(), std::io::Error> {
    Ok(())
}

#[kafka_handler(
    topic = "b",
    backoff = exponential(initial = "250ms", max = "1m", factor = 3.0, jitter = 0.2),
)]
async fn exponential_full() -> Result<(), std::io::Error> {
    Ok(())
}

#[kafka_handler(topic = "c", backoff = exponential())]
async fn exponential_defaults() -> Result<(), std::io::Error> {
    Ok(())
}

#[kafka_handler(topic = "d", backoff = exponential(max = "1h", factor = 1))]
async fn exponential_some() -> Result<(), std::io::Error> {
    Ok(())
}

fn main() {
    let handlers = dispatcher::handler::registered();
    let backoff = |i: usize| *handlers[i].policy.backoff();
    assert_eq!(backoff(0), Backoff::Fixed(Duration::from_secs(2)));
    assert_eq!(
        backoff(1),
        Backoff::Exponential {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(60),
            factor: 3.0,
            jitter: 0.2,
        }
    );
    assert_eq!(backoff(2), Backoff::DEFAULT);
    assert_eq!(
        backoff(3),
        Backoff::Exponential {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(3600),
            factor: 1.0,
            jitter: 0.0,
        }
    );
}
