//! What the Kafka client asks of the application: OAUTHBEARER tokens (for
//! Amazon MSK IAM and other token-based logins), and statistics.
//!
//! Set them with
//! [`DispatcherBuilder::oauth_token_provider`](crate::DispatcherBuilder::oauth_token_provider)
//! and
//! [`DispatcherBuilder::on_statistics`](crate::DispatcherBuilder::on_statistics);
//! both reach every client of the dispatcher, the consumers and the
//! dead-letter producer.

use rdkafka::client::{ClientContext, OAuthToken as RdToken};
use rdkafka::config::RDKafkaLogLevel;
use secrecy::{ExposeSecret, SecretString};
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// An OAUTHBEARER token for librdkafka: the token, the principal it names,
/// and when it expires. librdkafka asks for a new one before that.
///
/// ```
/// use dispatcher::client::OAuthToken;
/// use std::time::{Duration, SystemTime};
///
/// let token = OAuthToken::new("eyJhbGciOi...", "billing", SystemTime::now() + Duration::from_secs(900));
/// assert_eq!(format!("{token:?}"), "OAuthToken { principal: \"billing\", token: [redacted], .. }");
/// ```
#[derive(Clone)]
pub struct OAuthToken {
    token: SecretString,
    principal: String,
    expires_at: SystemTime,
}

impl OAuthToken {
    /// A token for `principal`, valid until `expires_at`.
    pub fn new(
        token: impl Into<String>,
        principal: impl Into<String>,
        expires_at: SystemTime,
    ) -> Self {
        OAuthToken {
            token: SecretString::from(token.into()),
            principal: principal.into(),
            expires_at,
        }
    }

    /// The principal the token names.
    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// When the token expires.
    pub fn expires_at(&self) -> SystemTime {
        self.expires_at
    }
}

impl fmt::Debug for OAuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "OAuthToken {{ principal: {:?}, token: [redacted], .. }}",
            self.principal
        )
    }
}

/// The error a token provider returns.
pub type TokenError = Box<dyn StdError + Send + Sync>;

/// Gives librdkafka OAUTHBEARER tokens. It is called with the value of
/// `sasl.oauthbearer.config`, on librdkafka's thread: keep it short (fetch
/// tokens ahead, or block briefly).
pub type TokenProvider = Arc<dyn Fn(Option<&str>) -> Result<OAuthToken, TokenError> + Send + Sync>;

/// Receives librdkafka's statistics, as JSON, every
/// `statistics.interval.ms` (a librdkafka property, off unless set).
pub type StatisticsListener = Arc<dyn Fn(&str) + Send + Sync>;

/// What every client context of a run answers librdkafka with.
#[derive(Clone, Default)]
pub(crate) struct ClientHooks {
    pub(crate) token_provider: Option<TokenProvider>,
    pub(crate) statistics: Vec<StatisticsListener>,
}

impl ClientHooks {
    /// A token for librdkafka, from the provider.
    pub(crate) fn token(&self, config: Option<&str>) -> Result<RdToken, Box<dyn StdError>> {
        let Some(provider) = &self.token_provider else {
            return Err("sasl.mechanism=OAUTHBEARER needs a token: give a provider with Dispatcher::builder().oauth_token_provider(..), or let librdkafka fetch one itself with sasl.oauthbearer.method=oidc (the `oidc` feature)".into());
        };
        let token = provider(config).map_err(|e| -> Box<dyn StdError> {
            format!("the OAUTHBEARER token provider failed: {e}").into()
        })?;
        let lifetime_ms = token
            .expires_at
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Ok(RdToken {
            token: token.token.expose_secret().to_owned(),
            principal_name: token.principal,
            lifetime_ms,
        })
    }

    /// Hands statistics to the listeners.
    pub(crate) fn statistics(&self, json: &[u8]) {
        if self.statistics.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(json);
        for listener in &self.statistics {
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| listener(&text))).is_err() {
                tracing::error!("a statistics listener panicked");
            }
        }
    }
}

/// Sets the level up to which librdkafka logs: warnings, or everything when
/// its `debug` property is set. rdkafka derives the level from the `log`
/// crate, which a `tracing` program leaves unset: librdkafka would then say
/// only errors, and nothing of what `debug` asks for.
pub(crate) fn set_log_level(config: &mut rdkafka::ClientConfig) {
    config.set_log_level(if config.get("debug").is_some() {
        RDKafkaLogLevel::Debug
    } else {
        RDKafkaLogLevel::Warning
    });
}

/// librdkafka's log lines, through `tracing` (target `librdkafka`).
pub(crate) fn log(level: RDKafkaLogLevel, fac: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => {
            tracing::error!(target: "librdkafka", facility = fac, "{message}")
        }
        RDKafkaLogLevel::Warning => {
            tracing::warn!(target: "librdkafka", facility = fac, "{message}")
        }
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", facility = fac, "{message}")
        }
        RDKafkaLogLevel::Debug => {
            tracing::debug!(target: "librdkafka", facility = fac, "{message}")
        }
    }
}

/// The context of the clients besides the consumers: the dead-letter
/// producer and the startup checks.
pub(crate) struct HooksContext {
    pub(crate) hooks: ClientHooks,
    /// The reason of the client's last error (a refused TLS handshake, a
    /// failed SASL login), which a failed request does not carry.
    last_error: std::sync::Mutex<Option<String>>,
}

impl HooksContext {
    pub(crate) fn new(hooks: ClientHooks) -> Self {
        HooksContext {
            hooks,
            last_error: std::sync::Mutex::new(None),
        }
    }

    fn remember(&self, reason: &str) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(reason.to_owned());
        }
    }

    /// The reason of the client's last error, if there was one.
    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }
}

impl rdkafka::consumer::ConsumerContext for HooksContext {}

impl ClientContext for HooksContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        // librdkafka says why a broker connection failed (TLS handshake,
        // SASL login, refused connection) in its FAIL log line; the error
        // a failed request returns carries only the code.
        if fac == "FAIL" && (level as i32) <= RDKafkaLogLevel::Error as i32 {
            self.remember(message);
        }
        log(level, fac, message);
    }

    fn stats_raw(&self, statistics: &[u8]) {
        self.hooks.statistics(statistics);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(error = %error, reason, "Kafka client error");
        // A summary ("1/1 brokers are down") says less than the broker's
        // own FAIL line: keep that one when there is one.
        if self.last_error().is_none() {
            self.remember(reason);
        }
    }

    fn generate_oauth_token(&self, config: Option<&str>) -> Result<RdToken, Box<dyn StdError>> {
        self.hooks.token(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_log_warnings_and_what_debug_asks_for() {
        let mut config = rdkafka::ClientConfig::new();
        // What rdkafka picks when the `log` crate is unset, as under tracing.
        assert!(matches!(config.log_level, RDKafkaLogLevel::Error));
        set_log_level(&mut config);
        assert!(matches!(config.log_level, RDKafkaLogLevel::Warning));
        config.set("debug", "broker");
        set_log_level(&mut config);
        assert!(matches!(config.log_level, RDKafkaLogLevel::Debug));
    }
}
