use dispatcher::extract::{PublishError, Publisher, State};
use dispatcher::kafka_handler;

struct Prices {
    vat_percent: u32,
}

struct Db;

#[kafka_handler(topic = "orders")]
async fn on_order(prices: State<Prices>, _db: dispatcher::extract::State<Db>) -> Result<(), std::io::Error> {
    assert_eq!(prices.vat_percent, 20);
    Ok(())
}

// Consume-transform-produce: the dispatcher provides the Publisher.
#[kafka_handler(topic = "payments", retry = PublishError)]
async fn relay(text: &str, out: Publisher) -> Result<(), PublishError> {
    out.send("payments.copy", None, text.as_bytes()).await?;
    Ok(())
}

fn main() {
    let handlers = dispatcher::handler::registered();
    let states_of = |name: &str| -> Vec<&str> {
        let spec = handlers.iter().find(|h| h.name == name).expect("registered");
        spec.states.iter().map(|s| s.type_name()).collect()
    };
    assert_eq!(states_of("on_order"), ["Prices", "Db"]);
    assert_eq!(states_of("relay"), ["Publisher"]);
    let builder = || {
        dispatcher::Dispatcher::builder()
            .ignore_environment()
            .handle_signals(false)
            .brokers("127.0.0.1:9")
    };
    let missing = builder().state(Prices { vat_percent: 20 }).build().expect_err("Db is missing");
    assert!(matches!(missing, dispatcher::Error::MissingState { ref state, .. } if state == "Db"));
    builder()
        .state(Prices { vat_percent: 20 })
        .state(Db)
        .build()
        .expect("both states are provided, and the Publisher is the dispatcher's own");
}
