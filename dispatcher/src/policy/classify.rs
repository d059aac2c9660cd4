//! Classification of a failed attempt: retry, dead-letter or stop.

use crate::handler::HandlerError;
use std::error::Error as StdError;

/// What happens to a record whose handler attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Classification {
    /// Try again after the backoff, while attempts remain; then dead-letter.
    Retry,
    /// Stop the consumer: the record is not committed and is delivered again
    /// after a restart.
    Fatal,
    /// Send the record to the dead-letter topic and move on.
    DeadLetter,
}

/// A classification rule written as code, for error enums where matching by
/// type is not enough. Named in the attribute as `policy = path::TO_VALUE`.
///
/// ```
/// use dispatcher::handler::HandlerError;
/// use dispatcher::policy::{Classification, Classify};
///
/// #[derive(Debug, thiserror::Error)]
/// enum PaymentError {
///     #[error("gateway busy")]
///     Busy,
///     #[error("card rejected")]
///     Rejected,
/// }
///
/// struct PaymentPolicy;
/// impl Classify for PaymentPolicy {
///     fn classify(&self, error: &HandlerError) -> Option<Classification> {
///         match error.find::<PaymentError>()? {
///             PaymentError::Busy => Some(Classification::Retry),
///             PaymentError::Rejected => Some(Classification::DeadLetter),
///         }
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be used as `policy = ...`",
    label = "does not implement `dispatcher::policy::Classify`",
    note = "`policy` names a const, static or unit struct whose type implements `dispatcher::policy::Classify`"
)]
pub trait Classify: Send + Sync + 'static {
    /// Classifies an error; `None` falls back to the attribute's `fatal` and
    /// `retry` lists and the defaults.
    fn classify(&self, error: &HandlerError) -> Option<Classification>;
}

/// An error type that can be listed in `retry = ...` or `fatal = ...`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be listed in `retry` or `fatal`",
    label = "not an error type the policy can match",
    note = "listed types must implement `std::error::Error + Send + Sync + 'static`"
)]
pub trait ListedError: StdError + Send + Sync + 'static {}

impl<T: StdError + Send + Sync + 'static> ListedError for T {}

/// Matches one error type anywhere in a cause chain. Built by the macro from
/// the types listed in `retry = ...` and `fatal = ...`.
#[derive(Clone, Copy)]
pub struct ErrorMatcher {
    name: &'static str,
    matches: fn(&HandlerError) -> bool,
}

fn is_type<T: StdError + Send + Sync + 'static>(e: &HandlerError) -> bool {
    e.is::<T>()
}

impl ErrorMatcher {
    /// A matcher for `T`, shown as `name` in logs.
    pub const fn of<T: ListedError>(name: &'static str) -> Self {
        ErrorMatcher {
            name,
            matches: is_type::<T>,
        }
    }

    /// The type's name as written in the attribute.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Whether the error's chain contains this type.
    pub fn matches(&self, error: &HandlerError) -> bool {
        (self.matches)(error)
    }
}

impl std::fmt::Debug for ErrorMatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}
