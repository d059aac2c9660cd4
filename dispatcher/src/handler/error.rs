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
    inner: Inner,
    type_name: &'static str,
}

enum Inner {
    Anyhow(anyhow::Error),
    Boxed(Box<dyn StdError + Send + Sync + 'static>),
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

/// The message of a caught panic, when it was a string.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_owned()
    }
}

impl HandlerError {
    /// Wraps any standard error.
    pub fn new<E: StdError + Send + Sync + 'static>(error: E) -> Self {
        HandlerError {
            inner: Inner::Anyhow(anyhow::Error::new(error)),
            type_name: crate::type_name::error(std::any::type_name::<E>()),
        }
    }

    /// Wraps an `anyhow::Error`, keeping its chain and downcasts.
    pub fn from_anyhow(error: anyhow::Error) -> Self {
        HandlerError {
            inner: Inner::Anyhow(error),
            type_name: "anyhow::Error",
        }
    }

    /// Wraps a boxed error.
    pub fn from_boxed(error: Box<dyn StdError + Send + Sync + 'static>) -> Self {
        HandlerError {
            inner: Inner::Boxed(error),
            type_name: "Box<dyn Error + Send + Sync>",
        }
    }

    pub(crate) fn from_panic(payload: Box<dyn std::any::Any + Send>) -> Self {
        HandlerError::new(HandlerPanic {
            message: panic_message(&*payload),
        })
    }

    /// The Rust type the handler returned as its error, e.g.
    /// `std::io::Error` or `anyhow::Error`.
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }

    /// Every error in the cause chain, outermost first, descending into
    /// `std::io::Error::get_ref()` where an I/O error wraps another error.
    pub fn chain(&self) -> Chain<'_> {
        let mut roots = Vec::with_capacity(2);
        match &self.inner {
            Inner::Anyhow(a) => {
                // anyhow can wrap errors (boxed ones, contexts) whose wrapper
                // hides the original from a plain source() walk; its own
                // downcast still finds an I/O error, so walk from there too.
                if let Some(io) = a.downcast_ref::<std::io::Error>() {
                    roots.push(io as &(dyn StdError + 'static));
                }
                if let Some(top) = a.chain().next() {
                    roots.push(top);
                }
            }
            Inner::Boxed(b) => roots.push(&**b as &(dyn StdError + 'static)),
        }
        Chain { next: None, roots }
    }

    fn top(&self) -> Option<&(dyn StdError + 'static)> {
        match &self.inner {
            Inner::Anyhow(a) => a.chain().next(),
            Inner::Boxed(b) => Some(&**b as &(dyn StdError + 'static)),
        }
    }

    /// Whether an error of type `T` appears anywhere in the chain.
    pub fn is<T: StdError + Send + Sync + 'static>(&self) -> bool {
        self.find::<T>().is_some()
    }

    /// The first error of type `T` in the chain.
    pub fn find<T: StdError + Send + Sync + 'static>(&self) -> Option<&T> {
        if let Inner::Anyhow(a) = &self.inner {
            if let Some(t) = a.downcast_ref::<T>() {
                return Some(t);
            }
        }
        self.chain().find_map(|e| e.downcast_ref::<T>())
    }

    /// Whether the payload could not be decoded into the handler's argument.
    pub fn is_decode_error(&self) -> bool {
        self.top().is_some_and(|e| e.is::<DecodeError>())
    }

    /// The name of the outermost error's type when it is one the runtime
    /// knows, for logs and dead-letter headers.
    pub(crate) fn kind_name(&self) -> &'static str {
        let top = self.top();
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
        let display = Chain {
            next: self.top(),
            roots: Vec::new(),
        };
        let mut previous = String::new();
        for e in display {
            let text = e.to_string();
            // An I/O error displays the error it wraps; say it once.
            if text == previous {
                continue;
            }
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
            previous = text;
        }
        out
    }
}

/// Iterator over a [`HandlerError`]'s cause chain.
pub struct Chain<'a> {
    next: Option<&'a (dyn StdError + 'static)>,
    roots: Vec<&'a (dyn StdError + 'static)>,
}

impl<'a> Iterator for Chain<'a> {
    type Item = &'a (dyn StdError + 'static);

    fn next(&mut self) -> Option<Self::Item> {
        let current = match self.next {
            Some(c) => c,
            None => self.roots.pop()?,
        };
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
        match &self.inner {
            Inner::Anyhow(a) => fmt::Display::fmt(a, f),
            Inner::Boxed(b) => fmt::Display::fmt(b, f),
        }
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
        match &self.inner {
            Inner::Anyhow(a) => a.as_ref(),
            Inner::Boxed(b) => &**b,
        }
    }
}
