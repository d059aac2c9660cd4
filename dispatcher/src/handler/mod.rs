//! Handlers: the code that runs for each record, how it is registered, and
//! the error it returns.
//!
//! `#[kafka_handler]` turns an `async fn` into a [`Handler`] and registers
//! a [`HandlerSpec`] for it; [`registered`] lists them. Implement
//! [`Handler`] by hand to add handlers programmatically with
//! [`DispatcherBuilder::handler`](crate::DispatcherBuilder::handler).

mod error;
mod registry;
mod spec;

pub(crate) use error::panic_message;
pub use error::{Chain, HandlerError, HandlerPanic, HandlerTimeout};
pub use registry::registered;
#[doc(hidden)]
pub use registry::Registration;
pub use spec::HandlerSpec;

use crate::message::Message;
use std::future::Future;
use std::pin::Pin;

/// The future of one handler attempt.
pub type HandlerFuture<'a> = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send + 'a>>;

/// A record handler. `#[kafka_handler]` implements it for the function it
/// annotates.
///
/// Each attempt gets its own copy of the record (cloning a [`Message`] is
/// cheap), so the future can own it and outlive the call.
///
/// ```
/// use dispatcher::handler::{Handler, HandlerFuture, HandlerSpec};
/// use dispatcher::Message;
///
/// struct Audit;
/// impl Handler for Audit {
///     fn call(&self, msg: Message) -> HandlerFuture<'static> {
///         Box::pin(async move {
///             println!("{} bytes at offset {}", msg.payload().map_or(0, <[u8]>::len), msg.offset());
///             Ok(())
///         })
///     }
/// }
///
/// static AUDIT: Audit = Audit;
/// let spec = HandlerSpec::new("audit", &["audit-events"], &AUDIT);
/// let builder = dispatcher::Dispatcher::builder().handler(spec);
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Runs one attempt on `msg`.
    fn call(&self, msg: Message) -> HandlerFuture<'static>;
}
