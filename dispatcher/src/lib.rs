#![doc = include_str!("../../README.md")]

mod builder;
mod engine;
mod producer;
mod publish;
mod run;
mod state;
mod topics;
mod type_name;

pub mod broker;
pub mod client;
pub mod config;
pub mod dead_letter;
pub mod error;
pub mod event;
pub mod extract;
pub mod handler;
#[cfg(feature = "logging")]
pub mod logging;
pub mod message;
pub mod policy;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use builder::DispatcherBuilder;
pub use dispatcher_macros::kafka_handler;
pub use error::{Error, Result};
pub use extract::Json;
pub use message::Message;
pub use run::{run, Dispatcher, ShutdownHandle};
