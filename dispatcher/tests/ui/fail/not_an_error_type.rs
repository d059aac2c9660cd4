use dispatcher::kafka_handler;

#[derive(Debug)]
struct NotAnError;

#[kafka_handler(topic = "orders", retry = NotAnError, fatal = [std::fmt::Error, String])]
async fn bad_types() -> Result<(), std::io::Error> {
    Ok(())
}

#[derive(Debug)]
struct NotSync(std::cell::Cell<u8>);

impl std::fmt::Display for NotSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not sync")
    }
}

impl std::error::Error for NotSync {}

#[kafka_handler(topic = "orders", retry = NotSync)]
async fn not_sync() -> Result<(), std::io::Error> {
    Ok(())
}

fn main() {}
