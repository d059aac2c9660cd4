//! Handler arguments: how a record becomes the values a handler asks for.

use crate::message::Message;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use std::fmt;

pub use crate::publish::{PublishError, Publisher};
pub use crate::state::{State, StateKey};

/// A value a handler can take as an argument, built from the record.
///
/// Implemented for the record itself ([`Message`], `&Message`), for the
/// payload as bytes or text (`&[u8]`, `Vec<u8>`, [`Bytes`], `&str`,
/// `String`), for [`Json<T>`], for [`State<T>`] (a value the application
/// gave the builder), and for `Option<T>` of any payload form, which
/// is `None` for a tombstone (a record with a null payload).
///
/// An extraction that fails is a [`DecodeError`]: retrying cannot fix it, so
/// the record goes to the dead-letter topic.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a `#[kafka_handler]` argument",
    label = "not built from a Kafka record",
    note = "handler arguments implement `dispatcher::extract::FromMessage`: `Message`, `&Message`, `Json<T>`, `&[u8]`, `Vec<u8>`, `bytes::Bytes`, `&str`, `String`, `State<T>`, or `Option<_>` of a payload form"
)]
pub trait FromMessage<'a>: Sized {
    /// Builds the argument from the record.
    fn from_message(msg: &'a Message) -> Result<Self, DecodeError>;
}

/// A payload that could not be turned into the type a handler asked for.
///
/// Its message names the expected type as a user writes it (`Json<Order>`);
/// the parser's own error, when there is one, is its [`source`], so a cause
/// chain shows each cause once.
///
/// [`source`]: std::error::Error::source
#[derive(Debug)]
pub struct DecodeError {
    expected: String,
    reason: Option<String>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl DecodeError {
    /// A decode failure with a reason and no underlying error. `expected`
    /// is the type the handler asked for; module paths are dropped from it
    /// (`my_app::Order` is shown as `Order`).
    pub fn new(expected: &str, reason: impl Into<String>) -> Self {
        DecodeError {
            expected: crate::type_name::short(expected),
            reason: Some(reason.into()),
            source: None,
        }
    }

    /// A decode failure caused by `source`.
    pub fn with_source(
        expected: &str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        DecodeError {
            expected: crate::type_name::short(expected),
            reason: None,
            source: Some(Box::new(source)),
        }
    }

    /// What the handler expected, e.g. `Json<Order>`.
    pub fn expected(&self) -> &str {
        &self.expected
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "payload is not a valid {}", self.expected)?;
        match &self.reason {
            Some(reason) => write!(f, ": {reason}"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

fn payload<'a>(msg: &'a Message, expected: &'static str) -> Result<&'a Bytes, DecodeError> {
    msg.payload_bytes().ok_or_else(|| {
        DecodeError::new(
            expected,
            "the record has no payload (tombstone); take an Option<_> to accept tombstones",
        )
    })
}

impl<'a> FromMessage<'a> for &'a Message {
    fn from_message(msg: &'a Message) -> Result<Self, DecodeError> {
        Ok(msg)
    }
}

impl<'a> FromMessage<'a> for Message {
    fn from_message(msg: &'a Message) -> Result<Self, DecodeError> {
        Ok(msg.clone())
    }
}

impl<'a> FromMessage<'a> for &'a [u8] {
    fn from_message(msg: &'a Message) -> Result<Self, DecodeError> {
        payload(msg, "byte payload").map(|b| &b[..])
    }
}

impl<'a> FromMessage<'a> for Vec<u8> {
    fn from_message(msg: &'a Message) -> Result<Self, DecodeError> {
        payload(msg, "byte payload").map(|b| b.to_vec())
    }
}

impl<'a> FromMessage<'a> for Bytes {
    fn from_message(msg: &'a Message) -> Result<Self, DecodeError> {
        payload(msg, "byte payload").cloned()
    }
}

impl<'a> FromMessage<'a> for &'a str {
    fn from_message(msg: &'a Message) -> Result<Self, DecodeError> {
        let bytes = payload(msg, "UTF-8 text")?;
        std::str::from_utf8(bytes).map_err(|e| DecodeError::with_source("UTF-8 text", e))
    }
}

impl<'a> FromMessage<'a> for String {
    fn from_message(msg: &'a Message) -> Result<Self, DecodeError> {
        <&str>::from_message(msg).map(str::to_owned)
    }
}

impl<'a, T: FromMessage<'a>> FromMessage<'a> for Option<T> {
    fn from_message(msg: &'a Message) -> Result<Self, DecodeError> {
        if msg.payload().is_none() {
            Ok(None)
        } else {
            T::from_message(msg).map(Some)
        }
    }
}

/// A payload decoded from JSON with serde.
///
/// ```
/// use dispatcher::{kafka_handler, Json};
///
/// #[derive(serde::Deserialize)]
/// struct Order { id: u64 }
///
/// #[kafka_handler(topic = "orders")]
/// async fn on_order(order: Json<Order>) -> Result<(), std::io::Error> {
///     println!("order {}", order.id);
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Json<T>(pub T);

impl<T> Json<T> {
    /// Unwraps the decoded value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Json<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> std::ops::DerefMut for Json<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<'a, T: DeserializeOwned> FromMessage<'a> for Json<T> {
    fn from_message(msg: &'a Message) -> Result<Self, DecodeError> {
        let expected = std::any::type_name::<Json<T>>();
        let bytes = payload(msg, expected)?;
        serde_json::from_slice(bytes)
            .map(Json)
            .map_err(|e| DecodeError::with_source(expected, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Order {
        id: u64,
    }

    #[test]
    fn json_decodes_and_reports_bad_payloads() {
        let ok = Message::new("t", 0, 0).with_payload(r#"{"id":7}"#);
        assert_eq!(
            Json::<Order>::from_message(&ok).expect("valid").0,
            Order { id: 7 }
        );
        let bad = Message::new("t", 0, 1).with_payload("not json");
        let err = Json::<Order>::from_message(&bad).expect_err("invalid");
        // The type as a user writes it, and the parser's words only in the
        // source, so a cause chain says them once.
        assert_eq!(err.to_string(), "payload is not a valid Json<Order>");
        let source = std::error::Error::source(&err).expect("the parser's error");
        assert_eq!(source.to_string(), "expected ident at line 1 column 2");
    }

    #[test]
    fn tombstones_need_an_option() {
        let tomb = Message::new("t", 0, 0);
        assert!(<&[u8]>::from_message(&tomb).is_err());
        assert_eq!(
            Option::<String>::from_message(&tomb).expect("tombstone"),
            None
        );
        let text = Message::new("t", 0, 0).with_payload("hi");
        assert_eq!(
            Option::<String>::from_message(&text).expect("text"),
            Some("hi".into())
        );
        let bin = Message::new("t", 0, 0).with_payload(vec![0xff, 0xfe]);
        assert!(String::from_message(&bin).is_err());
    }
}
