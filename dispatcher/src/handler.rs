//! Handlers and their registration.

use crate::{HandlerError, Message, Policy};
use std::future::Future;
use std::pin::Pin;

/// The future of one handler attempt.
pub type HandlerFuture<'a> = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send + 'a>>;

/// A record handler. `#[kafka_handler]` implements it for the function it
/// annotates; implement it by hand to register handlers programmatically
/// with [`DispatcherBuilder::handler`](crate::DispatcherBuilder::handler).
///
/// Each attempt gets its own copy of the record (cloning a [`Message`] is
/// cheap), so the future can own it and outlive the call.
pub trait Handler: Send + Sync + 'static {
    /// Runs one attempt on `msg`.
    fn call(&self, msg: Message) -> HandlerFuture<'static>;
}

/// A registered handler: the function, the topics it consumes, its policy,
/// and where it was written (for error messages).
#[derive(Clone, Copy)]
pub struct HandlerSpec {
    /// The handler function's name.
    pub name: &'static str,
    /// The module it was declared in.
    pub module_path: &'static str,
    /// The source file it was declared in.
    pub file: &'static str,
    /// The line of its attribute.
    pub line: u32,
    /// The topics it consumes.
    pub topics: &'static [&'static str],
    /// A consumer group overriding the configured one.
    pub group: Option<&'static str>,
    /// Its error policy, ordering and limits.
    pub policy: Policy,
    /// The code to run.
    pub handler: &'static dyn Handler,
}

impl HandlerSpec {
    /// `module::name`, as used in logs and dead-letter headers.
    pub fn qualified_name(&self) -> String {
        format!("{}::{}", self.module_path, self.name)
    }

    /// `file:line`, where the handler was declared.
    pub fn location(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

impl std::fmt::Debug for HandlerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerSpec")
            .field("name", &self.qualified_name())
            .field("location", &self.location())
            .field("topics", &self.topics)
            .field("group", &self.group)
            .field("policy", &self.policy)
            .finish()
    }
}

/// A handler submitted by `#[kafka_handler]`; collected at startup.
#[doc(hidden)]
pub struct Registration(pub HandlerSpec);

inventory::collect!(Registration);

/// Every handler declared with `#[kafka_handler]` in the program.
pub fn registered_handlers() -> Vec<HandlerSpec> {
    let mut all: Vec<HandlerSpec> = inventory::iter::<Registration>
        .into_iter()
        .map(|r| r.0)
        .collect();
    all.sort_by(|a, b| (a.file, a.line).cmp(&(b.file, b.line)));
    all
}
