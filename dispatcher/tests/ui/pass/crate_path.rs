// `crate = ...` names the dispatcher crate when it is reached another way,
// e.g. through a facade crate that re-exports it.
mod facade {
    pub use dispatcher as kafka;
}

// No `use` of anything from the dispatcher: the expansion needs no imports.
#[facade::kafka::kafka_handler(topic = "orders", crate = facade::kafka)]
async fn via_facade(msg: &facade::kafka::Message) -> Result<(), std::io::Error> {
    let _ = msg;
    Ok(())
}

fn main() {
    let handlers = dispatcher::handler::registered();
    assert_eq!(handlers[0].name, "via_facade");
}
