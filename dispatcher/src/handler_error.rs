//! The error a handler returned, and how its cause chain is searched.

use crate::extract::DecodeError;
use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

/// The error of one handler attempt, whatever type the handler returned.
///
/// It keeps the original error so the policy can match any type anywhere in
/// the cause chain ([`HandlerError::is`]); the chain also looks inside
/// [`std::io::Error::get_ref`], so an I/O error wrapping a custom error
/// matches both.
pub struct HandlerError {
    inner: anyhow::Error,
    type_name: &'static str,
}

/// The handler did not finish within its `timeout`. Retryable by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandlerTimeout {
    /// The limit that was exceeded.
    pub limit: Duration,
}

impl fmt::Display for HandlerTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "handler did not finish within {:?}", self.limit)
    }
}

impl StdError for HandlerTimeout {}

/// The handler panicked. The panic is caught, the process keeps running, and
/// the record is dead-lettered unless the policy lists `HandlerPanic` as
/// retryable or fatal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerPanic {
    /// The panic message, when it was a string.
    pub message: String,
}

impl fmt::Display for HandlerPanic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "handler panicked: {}", self.message)
    }
}

impl StdError for HandlerPanic {}

impl HandlerError {
    /// Wraps any standard error.
    pub fn new<E: StdError + Send + Sync + 'static>(error: E) -> Self {
        HandlerError {
            inner: anyhow::Error::new(error),
            type_name: std::any::type_name::<E>(),
        }
    }

    /// Wraps an `anyhow::Error`, keeping its chain and downcasts.
    pub fn from_anyhow(error: anyhow::Error) -> Self {
        HandlerError {
            inner: error,
            type_name: "anyhow::Error",
        }
    }

    /// Wraps a boxed error.
    pub fn from_boxed(error: Box<dyn StdError + Send + Sync + 'static>) -> Self {
        HandlerError {
            inner: anyhow::Error::from_boxed(error),
            type_name: "Box<dyn Error + Send + Sync>",
        }
    }

    pub(crate) fn from_panic(payload: Box<dyn std::any::Any + Send>) -> Self {
        let message = if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_owned()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "<non-string panic payload>".to_owned()
        };
        HandlerError::new(HandlerPanic { message })
    }

    /// The Rust type the handler returned as its error, e.g.
    /// `std::io::Error` or `anyhow::Error`.
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }

    /// Every error in the cause chain, outermost first, descending into
    /// `std::io::Error::get_ref()` where an I/O error wraps another error.
    pub fn chain(&self) -> Chain<'_> {
        Chain {
            next: self.inner.chain().next(),
        }
    }

    /// Whether an error of type `T` appears anywhere in the chain.
    pub fn is<T: StdError + 'static>(&self) -> bool {
        self.find::<T>().is_some()
    }

    /// The first error of type `T` in the chain.
    pub fn find<T: StdError + 'static>(&self) -> Option<&T> {
        self.chain().find_map(|e| e.downcast_ref::<T>())
    }

    /// Whether the payload could not be decoded into the handler's argument.
    pub fn is_decode_error(&self) -> bool {
        self.inner
            .chain()
            .next()
            .is_some_and(|e| e.is::<DecodeError>())
    }

    /// The name of the outermost error's type when it is one the runtime
    /// knows, for logs and dead-letter headers.
    pub(crate) fn kind_name(&self) -> &'static str {
        let top = self.inner.chain().next();
        match top {
            Some(e) if e.is::<DecodeError>() => "decode",
            Some(e) if e.is::<HandlerTimeout>() => "timeout",
            Some(e) if e.is::<HandlerPanic>() => "panic",
            Some(e) if e.is::<std::io::Error>() => "io",
            _ => "handler",
        }
    }

    /// The cause chain as one line: `outer: cause: root cause`.
    pub fn chain_message(&self) -> String {
        let mut out = String::new();
        for (i, e) in self.chain().enumerate() {
            if i > 0 {
                out.push_str(": ");
            }
            out.push_str(&e.to_string());
        }
        out
    }
}

/// Iterator over a [`HandlerError`]'s cause chain.
pub struct Chain<'a> {
    next: Option<&'a (dyn StdError + 'static)>,
}

impl<'a> Iterator for Chain<'a> {
    type Item = &'a (dyn StdError + 'static);

    fn next(&mut self) -> Option<Self::Item> {
        let current = self.next?;
        self.next = match current.downcast_ref::<std::io::Error>() {
            Some(io) if io.get_ref().is_some() => {
                io.get_ref().map(|e| e as &(dyn StdError + 'static))
            }
            _ => current.source(),
        };
        Some(current)
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.chain_message())
    }
}

impl<E: StdError + Send + Sync + 'static> From<E> for HandlerError {
    fn from(error: E) -> Self {
        HandlerError::new(error)
    }
}

impl AsRef<dyn StdError + Send + Sync> for HandlerError {
    fn as_ref(&self) -> &(dyn StdError + Send + Sync + 'static) {
        self.inner.as_ref()
    }
}
