use dispatcher::handler::HandlerError;
use dispatcher::kafka_handler;
use dispatcher::policy::{Classification, Classify};

struct AlwaysFatal;

impl Classify for AlwaysFatal {
    fn classify(&self, _: &HandlerError) -> Option<Classification> {
        Some(Classification::Fatal)
    }
}

struct Limit(u32);

impl Classify for Limit {
    fn classify(&self, _: &HandlerError) -> Option<Classification> {
        (self.0 > 0).then_some(Classification::Retry)
    }
}

const RETRY_ALL: Limit = Limit(1);
static NONE: Limit = Limit(0);

mod policies {
    pub struct Nested;
    impl dispatcher::policy::Classify for Nested {
        fn classify(&self, _: &dispatcher::handler::HandlerError) -> Option<dispatcher::policy::Classification> {
            Some(dispatcher::policy::Classification::DeadLetter)
        }
    }
}

#[kafka_handler(topic = "a", policy = AlwaysFatal)]
async fn unit_struct() -> Result<(), std::io::Error> {
    Ok(())
}

#[kafka_handler(topic = "b", policy = RETRY_ALL)]
async fn constant() -> Result<(), std::io::Error> {
    Ok(())
}

#[kafka_handler(topic = "c", policy = NONE)]
async fn a_static() -> Result<(), std::io::Error> {
    Ok(())
}

#[kafka_handler(topic = "d", policy = policies::Nested, retry = [])]
async fn nested_path() -> Result<(), std::io::Error> {
    Ok(())
}

fn main() {
    let handlers = dispatcher::handler::registered();
    let io = HandlerError::new(std::io::Error::other("x"));
    let classify = |i: usize| handlers[i].policy.classify(&io);
    assert_eq!(classify(0), Classification::Fatal);
    assert_eq!(classify(1), Classification::Retry);
    // `None` from the classifier falls back to the default lists.
    assert_eq!(classify(2), Classification::Retry);
    assert_eq!(classify(3), Classification::DeadLetter);
}
