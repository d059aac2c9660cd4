//! Errors of the Kafka client itself, as opposed to a record's: a fatal
//! client error stops the run at once; an error that will not clear by
//! itself (authorization, authentication, a missing topic), or a transient
//! one that keeps repeating, stops it once nothing was consumed for the
//! configured time.
//!
//! librdkafka reports some persistent errors only once, then keeps retrying
//! quietly: a fetch refused for lack of authorization is reported when it
//! starts failing, not at every refusal. So a persistent error needs no
//! repetition; a transient one (a broken connection, a coordinator moving)
//! must keep coming back to count.

use crate::error::{ConsumerError, Error};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use std::time::{Duration, Instant};

/// Watches one consumer's errors.
#[derive(Debug)]
pub(crate) struct ErrorWatch {
    group: String,
    give_up_after: Duration,
    streak: Option<Streak>,
    /// Codes already explained in the log, so a repeating error is
    /// explained once.
    explained: Vec<RDKafkaErrorCode>,
}

/// The same error, repeating with nothing consumed in between.
#[derive(Debug)]
struct Streak {
    code: RDKafkaErrorCode,
    error: KafkaError,
    first: Instant,
    last: Instant,
    count: u32,
}

impl ErrorWatch {
    pub(crate) fn new(group: String, give_up_after: Duration) -> Self {
        ErrorWatch {
            group,
            give_up_after,
            streak: None,
            explained: Vec::new(),
        }
    }

    /// An error the consumer returned. `fatal_detail` tells the code and
    /// reason of librdkafka's fatal error, when it raised one. Returns the
    /// error to stop with when the client cannot go on.
    pub(crate) fn observe(
        &mut self,
        error: KafkaError,
        now: Instant,
        fatal_detail: impl FnOnce() -> Option<(RDKafkaErrorCode, String)>,
    ) -> Option<Error> {
        let code = match &error {
            KafkaError::PartitionEOF(_) => return None,
            KafkaError::MessageConsumptionFatal(code) => {
                // After a fatal error librdkafka neither fetches nor
                // commits: stop like a fatal record.
                let (code, reason) = fatal_detail().unwrap_or((*code, error.to_string()));
                tracing::error!(group = %self.group, code = %kafka_name(code), reason = %reason, fix = advice(code), "fatal Kafka client error: stopping the consumer");
                return Some(Error::Consumer(Box::new(ConsumerError {
                    group: self.group.clone(),
                    code: kafka_name(code),
                    reason,
                    persisted: None,
                    fix: advice(code),
                    source: error,
                })));
            }
            other => other.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail),
        };
        if !self.explained.contains(&code) {
            self.explained.push(code);
            tracing::warn!(group = %self.group, code = %kafka_name(code), error = %error, fix = advice(code), give_up_after = ?self.give_up_after, "Kafka client error; if it keeps repeating with nothing consumed, the consumer stops");
        } else {
            tracing::debug!(group = %self.group, code = %kafka_name(code), error = %error, "Kafka client error again");
        }
        let gap = self.gap();
        match &mut self.streak {
            Some(s) if s.code == code && now.duration_since(s.last) <= gap => {
                s.last = now;
                s.count += 1;
                s.error = error;
            }
            _ => {
                self.streak = Some(Streak {
                    code,
                    error,
                    first: now,
                    last: now,
                    count: 1,
                })
            }
        }
        None
    }

    /// Errors further apart than this do not make a streak.
    fn gap(&self) -> Duration {
        (self.give_up_after / 4).max(Duration::from_secs(5))
    }

    /// Records were consumed: whatever repeated did not stop the consumer.
    pub(crate) fn progressed(&mut self) {
        self.streak = None;
    }

    /// The error to stop with, when nothing was consumed for the whole
    /// `give_up_after` since a persistent error, or since a transient one
    /// that kept repeating.
    pub(crate) fn check(&mut self, now: Instant) -> Option<Error> {
        let s = self.streak.as_ref()?;
        let persistent = persistent(s.code);
        if !persistent && now.duration_since(s.last) > self.gap() {
            self.streak = None;
            return None;
        }
        let persisted = now.duration_since(s.first);
        if (!persistent && s.count < 2) || persisted < self.give_up_after {
            return None;
        }
        let s = self.streak.take()?;
        tracing::error!(group = %self.group, code = %kafka_name(s.code), error = %s.error, times = s.count, persisted = ?persisted, fix = advice(s.code), "a Kafka client error kept repeating with nothing consumed: stopping the consumer");
        Some(Error::Consumer(Box::new(ConsumerError {
            group: self.group.clone(),
            code: kafka_name(s.code),
            reason: s.error.to_string(),
            persisted: Some(persisted),
            fix: advice(s.code),
            source: s.error,
        })))
    }
}

/// Kafka's name for an error code: `FencedInstanceId` as
/// `FENCED_INSTANCE_ID`.
pub(crate) fn kafka_name(code: RDKafkaErrorCode) -> String {
    let camel: Vec<char> = format!("{code:?}").chars().collect();
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, &c) in camel.iter().enumerate() {
        let prev = i.checked_sub(1).map(|p| camel[p]);
        let next = camel.get(i + 1);
        let word_starts = c.is_ascii_uppercase()
            && prev.is_some_and(|p| {
                p.is_ascii_lowercase()
                    || p.is_ascii_digit()
                    || (p.is_ascii_uppercase() && next.is_some_and(char::is_ascii_lowercase))
            });
        if word_starts {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// Errors that do not clear without someone changing something: the
/// credentials, the ACLs, the TLS setup, the topic.
fn persistent(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::TopicAuthorizationFailed
            | C::GroupAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::SaslAuthenticationFailed
            | C::Authentication
            | C::SSL
            | C::UnknownTopicOrPartition
            | C::UnknownTopic
            | C::UnknownPartition
    )
}

/// What an operator should check for an error, when we can say.
pub(crate) fn advice(code: RDKafkaErrorCode) -> &'static str {
    use RDKafkaErrorCode as C;
    match code {
        C::FencedInstanceId => "another consumer uses the same group.instance.id: give each instance its own (for example the pod name), or remove group.instance.id",
        C::TopicAuthorizationFailed => "the consumer's principal may not read the topic: grant it READ (and DESCRIBE) on the topic",
        C::GroupAuthorizationFailed => "the consumer's principal may not join the group: grant it READ on the consumer group",
        C::ClusterAuthorizationFailed => "the consumer's principal lacks a cluster permission: check the ACLs",
        C::SaslAuthenticationFailed | C::Authentication => "the brokers refused the credentials: check sasl.mechanism, sasl.username and sasl.password",
        C::SSL => "the TLS handshake failed: check ssl.ca.location and the client certificate",
        C::UnknownTopicOrPartition | C::UnknownTopic | C::UnknownPartition => "the topic does not exist (or was deleted): create it, or fix the handler's topic",
        C::AllBrokersDown | C::BrokerTransportFailure | C::Resolve => "the brokers cannot be reached: check KAFKA_BROKERS, DNS and the network",
        C::UnsupportedVersion | C::UnsupportedForMessageFormat => "the brokers do not support what the client asked for: check the broker version",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch() -> ErrorWatch {
        ErrorWatch::new("g".into(), Duration::from_secs(60))
    }

    #[test]
    fn a_fatal_client_error_stops_at_once_with_its_cause_and_fix() {
        let mut w = watch();
        let stop = w
            .observe(
                KafkaError::MessageConsumptionFatal(RDKafkaErrorCode::Fatal),
                Instant::now(),
                || {
                    Some((
                        RDKafkaErrorCode::FencedInstanceId,
                        "Fatal consumer error: Broker: Static consumer fenced".into(),
                    ))
                },
            )
            .expect("stops");
        let text = stop.to_string();
        assert!(
            text.contains("FENCED_INSTANCE_ID") && text.contains("group.instance.id"),
            "{text}"
        );
    }

    #[test]
    fn a_persistent_error_reported_once_stops_after_the_whole_time_without_progress() {
        let mut w = watch();
        let t0 = Instant::now();
        let denied = KafkaError::MessageConsumption(RDKafkaErrorCode::TopicAuthorizationFailed);
        assert!(w.observe(denied, t0, || None).is_none());
        assert!(w.check(t0 + Duration::from_secs(59)).is_none());
        let stop = w.check(t0 + Duration::from_secs(60)).expect("stops");
        assert!(stop.to_string().contains("grant it READ"), "{stop}");
    }

    #[test]
    fn a_repeating_error_stops_only_after_the_whole_time_without_progress() {
        let mut w = watch();
        let t0 = Instant::now();
        let err = || KafkaError::MessageConsumption(RDKafkaErrorCode::CoordinatorLoadInProgress);
        let mut now = t0;
        while now < t0 + Duration::from_secs(59) {
            assert!(w.observe(err(), now, || None).is_none());
            assert!(w.check(now).is_none(), "not yet at {:?}", now - t0);
            now += Duration::from_secs(1);
        }
        // Records arrive: the streak ends.
        w.progressed();
        assert!(w.check(t0 + Duration::from_secs(61)).is_none());
        // Again, for a minute and more.
        let t1 = t0 + Duration::from_secs(100);
        let mut now = t1;
        while now <= t1 + Duration::from_secs(61) {
            w.observe(err(), now, || None);
            now += Duration::from_secs(1);
        }
        let stop = w.check(now).expect("stops");
        let text = stop.to_string();
        assert!(
            text.contains("COORDINATOR_LOAD_IN_PROGRESS") && text.contains("kept failing"),
            "{text}"
        );
    }

    #[test]
    fn errors_far_apart_are_not_a_streak() {
        let mut w = watch();
        let t0 = Instant::now();
        let err = || KafkaError::MessageConsumption(RDKafkaErrorCode::BrokerTransportFailure);
        for i in 0..10 {
            let now = t0 + Duration::from_secs(600 * i);
            w.observe(err(), now, || None);
            assert!(w.check(now + Duration::from_secs(59)).is_none());
        }
    }

    #[test]
    fn names_are_kafkas() {
        assert_eq!(
            kafka_name(RDKafkaErrorCode::FencedInstanceId),
            "FENCED_INSTANCE_ID"
        );
        assert_eq!(kafka_name(RDKafkaErrorCode::SSL), "SSL");
        assert_eq!(
            kafka_name(RDKafkaErrorCode::MessageSizeTooLarge),
            "MESSAGE_SIZE_TOO_LARGE"
        );
    }
}
