//! Paths used by the code `#[kafka_handler]` generates. Not public API.

pub use crate::extract::{FromMessage, StateKey};
pub use crate::handler::{Handler, HandlerError, HandlerFuture, HandlerSpec, Registration};
pub use crate::message::Message;
pub use crate::policy::{Backoff, Classify, ErrorMatcher, OrderingMode, Policy};
pub use inventory;
pub use std::boxed::Box;
pub use std::result::Result;
pub use std::time::Duration;

/// Turns whatever error type a handler returns into a [`HandlerError`]:
/// `anyhow::Error`, `Box<dyn Error + Send + Sync>`, or any
/// `E: Error + Send + Sync + 'static`. Dispatch happens at compile time by
/// auto-ref: `(&err).dispatcher_error_kind().into_handler_error(err)`.
pub mod kind {
    use crate::handler::HandlerError;
    use std::error::Error as StdError;

    /// Conversion of `anyhow::Error`.
    pub struct AnyhowKind;
    impl AnyhowKind {
        /// Converts.
        pub fn into_handler_error(self, error: anyhow::Error) -> HandlerError {
            HandlerError::from_anyhow(error)
        }
    }
    /// Selects [`AnyhowKind`].
    pub trait AnyhowTag {
        /// Selects the conversion.
        fn dispatcher_error_kind(&self) -> AnyhowKind {
            AnyhowKind
        }
    }
    impl AnyhowTag for anyhow::Error {}

    /// Conversion of `Box<dyn Error + Send + Sync>`.
    pub struct BoxedKind;
    impl BoxedKind {
        /// Converts.
        pub fn into_handler_error(self, error: Box<dyn StdError + Send + Sync>) -> HandlerError {
            HandlerError::from_boxed(error)
        }
    }
    /// Selects [`BoxedKind`].
    pub trait BoxedTag {
        /// Selects the conversion.
        fn dispatcher_error_kind(&self) -> BoxedKind {
            BoxedKind
        }
    }
    impl BoxedTag for Box<dyn StdError + Send + Sync> {}

    /// Conversion of `HandlerError` itself.
    pub struct IdentityKind;
    impl IdentityKind {
        /// Converts.
        pub fn into_handler_error(self, error: HandlerError) -> HandlerError {
            error
        }
    }
    /// Selects [`IdentityKind`].
    pub trait IdentityTag {
        /// Selects the conversion.
        fn dispatcher_error_kind(&self) -> IdentityKind {
            IdentityKind
        }
    }
    impl IdentityTag for HandlerError {}

    /// An error type a handler may return.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot be the error type of a `#[kafka_handler]` function",
        label = "not a supported handler error",
        note = "return `Result<(), E>` where `E` is a `std::error::Error + Send + Sync + 'static`, `anyhow::Error`, `Box<dyn Error + Send + Sync>` or `dispatcher::handler::HandlerError`"
    )]
    pub trait HandlerErrorSource: StdError + Send + Sync + 'static {}
    impl<T: StdError + Send + Sync + 'static> HandlerErrorSource for T {}

    /// Conversion of any standard error.
    pub struct StdKind;
    impl StdKind {
        /// Converts.
        pub fn into_handler_error<E: HandlerErrorSource>(self, error: E) -> HandlerError {
            HandlerError::new(error)
        }
    }

    /// Selects [`StdKind`].
    pub trait StdTag {
        /// Selects the conversion.
        fn dispatcher_error_kind(&self) -> StdKind {
            StdKind
        }
    }
    impl<E> StdTag for &E {}
}
