#![doc = include_str!("../../README.md")]

mod broker;
mod builder;
mod config;
mod consumer;
mod dead_letter;
mod dispatcher;
mod error;
mod event;
mod execute;
mod extract;
mod fetch;
mod handler;
mod handler_error;
mod lanes;
mod limit;
mod logging;
mod message;
mod partition;
mod policy;
pub mod testing;
mod tracker;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use broker::EmbeddedBroker;
pub use builder::DispatcherBuilder;
pub use config::{
    ENV_BROKERS, ENV_CLIENT_ID, ENV_GROUP_ID, ENV_HANDLER_CONCURRENCY, ENV_RDKAFKA_PREFIX,
};
pub use dead_letter::{headers as dead_letter_headers, DeadLetter, DeadLetterSink, SinkError};
pub use dispatcher::{run, Dispatcher, ShutdownHandle};
pub use dispatcher_macros::kafka_handler;
pub use error::{Error, FatalError, Result};
pub use event::{EventListener, Outcome, RecordEvent};
pub use execute::DeadLetterWriteFailed;
pub use extract::{DecodeError, FromMessage, Json};
pub use handler::{registered_handlers, Handler, HandlerFuture, HandlerSpec};
pub use handler_error::{Chain, HandlerError, HandlerPanic, HandlerTimeout};
pub use logging::init_logging;
pub use message::{Header, Message};
pub use policy::{Backoff, Classification, Classify, ErrorMatcher, ListedError, Ordering, Policy};
