//! Configuration values that must never be shown: passwords, client
//! secrets, private keys.

use secrecy::{ExposeSecret, SecretString};
use std::fmt;

/// What is shown instead of a secret value.
pub(crate) const REDACTED: &str = "[redacted]";

/// Whether a librdkafka property carries a secret: `sasl.password`,
/// `ssl.key.password`, `ssl.keystore.password`,
/// `sasl.oauthbearer.client.secret`, private keys given inline
/// (`ssl.key.pem`), `sasl.oauthbearer.config` (which may hold credentials),
/// and anything else whose name says password, secret or passphrase.
pub(crate) fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "passphrase",
        "private.key",
        "credential",
    ]
    .iter()
    .any(|word| key.contains(word))
        || key.ends_with("key.pem")
        || key == "sasl.oauthbearer.config"
}

/// A librdkafka property value, kept secret when its key says so.
#[derive(Clone)]
pub(crate) enum PropertyValue {
    Plain(String),
    Secret(SecretString),
}

impl PropertyValue {
    pub(crate) fn new(key: &str, value: String) -> Self {
        if is_secret(key) {
            PropertyValue::Secret(SecretString::from(value))
        } else {
            PropertyValue::Plain(value)
        }
    }

    /// The value itself, for the client configuration only.
    pub(crate) fn expose(&self) -> &str {
        match self {
            PropertyValue::Plain(v) => v,
            PropertyValue::Secret(s) => s.expose_secret(),
        }
    }

    /// The value as it may be shown: itself, or [`REDACTED`].
    pub(crate) fn shown(&self) -> &str {
        match self {
            PropertyValue::Plain(v) => v,
            PropertyValue::Secret(_) => REDACTED,
        }
    }
}

impl fmt::Debug for PropertyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.shown())
    }
}

/// `value`, or [`REDACTED`] when `key` is secret: for error messages.
pub(crate) fn shown<'a>(key: &str, value: &'a str) -> &'a str {
    if is_secret(key) {
        REDACTED
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_bearing_properties_are_recognised() {
        for key in [
            "sasl.password",
            "ssl.key.password",
            "ssl.keystore.password",
            "sasl.oauthbearer.client.secret",
            "ssl.key.pem",
            "sasl.oauthbearer.config",
            "sasl.oauthbearer.assertion.private.key.passphrase",
        ] {
            assert!(is_secret(key), "{key}");
        }
        for key in ["sasl.username", "security.protocol", "ssl.ca.location"] {
            assert!(!is_secret(key), "{key}");
        }
        let v = PropertyValue::new("sasl.password", "hunter2".into());
        assert_eq!(format!("{v:?}"), "\"[redacted]\"");
        assert_eq!(v.expose(), "hunter2");
    }
}
