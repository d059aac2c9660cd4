//! Declarative Kafka consumers for Rust. See the repository README for the guide.

mod extract;
mod handler;
mod handler_error;
mod message;
mod policy;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use dispatcher_macros::kafka_handler;
pub use extract::{DecodeError, FromMessage, Json};
pub use handler::{registered_handlers, Handler, HandlerFuture, HandlerSpec};
pub use handler_error::{Chain, HandlerError, HandlerPanic, HandlerTimeout};
pub use message::{Header, Message};
pub use policy::{Backoff, Classification, Classify, ErrorMatcher, Ordering, Policy};
