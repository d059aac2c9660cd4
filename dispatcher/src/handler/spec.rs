//! A handler's registration: what it consumes and how.

use super::Handler;
use crate::error::{Error, Result};
use crate::policy::Policy;
use crate::state::StateKey;
use dispatcher_rules::topic;

/// A registered handler: the code to run, the topics it consumes, its
/// policy, and where it was written (for error messages).
///
/// `#[kafka_handler]` builds one for each function; build one by hand with
/// [`HandlerSpec::new`] for handlers added with
/// [`DispatcherBuilder::handler`](crate::DispatcherBuilder::handler). The
/// runtime checks a spec at startup with the same rules, and the same
/// words, as the attribute does at compile time.
#[derive(Clone, Copy)]
#[non_exhaustive]
pub struct HandlerSpec {
    /// The handler's name (the function's name for `#[kafka_handler]`).
    pub name: &'static str,
    /// The module it was declared in.
    pub module_path: &'static str,
    /// The source file it was declared in.
    pub file: &'static str,
    /// The line of its declaration.
    pub line: u32,
    /// The topics it consumes.
    pub topics: &'static [&'static str],
    /// A consumer group overriding the configured one.
    pub group: Option<&'static str>,
    /// Its error policy, ordering and limits.
    pub policy: Policy,
    /// The code to run.
    pub handler: &'static dyn Handler,
    /// The [`State`](crate::extract::State) types its arguments ask for,
    /// checked at startup.
    pub states: &'static [StateKey],
}

impl HandlerSpec {
    /// A handler called `name` consuming `topics` with the default
    /// [`Policy`] and the configured consumer group.
    pub const fn new(
        name: &'static str,
        topics: &'static [&'static str],
        handler: &'static dyn Handler,
    ) -> Self {
        HandlerSpec {
            name,
            module_path: "",
            file: "",
            line: 0,
            topics,
            group: None,
            policy: Policy::DEFAULT,
            handler,
            states: &[],
        }
    }

    /// Declares the [`State`](crate::extract::State) types the handler
    /// takes, so that startup fails, naming the handler and the type, when
    /// one was not provided.
    #[must_use]
    pub const fn with_states(mut self, states: &'static [StateKey]) -> Self {
        self.states = states;
        self
    }

    /// Sets the policy.
    #[must_use]
    pub const fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Sets a consumer group of its own.
    #[must_use]
    pub const fn with_group(mut self, group: &'static str) -> Self {
        self.group = Some(group);
        self
    }

    /// Records where the handler was declared, for error messages:
    /// `.declared_at(module_path!(), file!(), line!())`.
    #[must_use]
    pub const fn declared_at(
        mut self,
        module_path: &'static str,
        file: &'static str,
        line: u32,
    ) -> Self {
        self.module_path = module_path;
        self.file = file;
        self.line = line;
        self
    }

    /// `module::name`, as used in logs and dead-letter headers.
    pub fn qualified_name(&self) -> String {
        if self.module_path.is_empty() {
            self.name.to_owned()
        } else {
            format!("{}::{}", self.module_path, self.name)
        }
    }

    /// `file:line`, where the handler was declared, or "registered by hand"
    /// when nobody said.
    pub fn location(&self) -> String {
        if self.file.is_empty() {
            "a HandlerSpec built without declared_at".to_owned()
        } else {
            format!("{}:{}", self.file, self.line)
        }
    }

    /// Where each of `topic`'s dead letters go: the configured topic, or
    /// `<topic>.DLT`.
    pub fn dead_letter_topic(&self, topic: &str) -> String {
        match self.policy.dead_letter_topic() {
            Some(t) => t.to_owned(),
            None => topic::dead_letter_topic(topic),
        }
    }

    /// The retry topic of level `level` (1 for the first) of `topic` read
    /// by consumer group `group`: `<topic>.<group>.retry.<delay>` unless
    /// the policy names it otherwise, e.g. `orders.billing.retry.30s`;
    /// `None` past the last level or without retry topics.
    pub fn retry_topic(&self, group: &str, topic: &str, level: usize) -> Option<String> {
        let delay = self.policy.retry_topics().get(level.checked_sub(1)?)?;
        Some(topic::retry_topic(
            self.policy.retry_topic_name(),
            topic,
            group,
            level,
            u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        ))
    }

    /// Every topic the handler reads in consumer group `group`, with its
    /// retry level and the handler topic it serves: its own topics (level
    /// 0), then their retry topics.
    pub fn read_topics(&self, group: &str) -> Vec<(String, usize, &'static str)> {
        let mut all: Vec<(String, usize, &'static str)> = self
            .topics
            .iter()
            .map(|t| ((*t).to_owned(), 0, *t))
            .collect();
        for t in self.topics {
            for level in 1..=self.policy.retry_topics().len() {
                if let Some(r) = self.retry_topic(group, t, level) {
                    all.push((r, level, *t));
                }
            }
        }
        all
    }

    /// Checks the names of the handler's retry topics in consumer group
    /// `group`.
    pub(crate) fn check_retry_topics(&self, group: &str) -> Result<()> {
        if self.policy.retry_topics().is_empty() {
            return Ok(());
        }
        topic::check_retry_topic_name(self.policy.retry_topic_name(), self.topics, Some(group))
            .map_err(|e| self.invalid(format!("retry_topic_name: {e}")))
    }

    /// The error for this handler, declared invalid for `reason`.
    pub(crate) fn invalid(&self, reason: impl Into<String>) -> Error {
        Error::InvalidHandler {
            handler: self.qualified_name(),
            location: self.location(),
            reason: reason.into(),
        }
    }

    /// Checks the spec with the attribute's rules: topic names, dead-letter
    /// topics (a long topic can push `<topic>.DLT` over Kafka's limit), and
    /// policy values. The macro checks what it can see at compile time;
    /// this catches hand-built specs.
    pub(crate) fn check(&self) -> Result<()> {
        let invalid = |reason: String| self.invalid(reason);
        if self.topics.is_empty() {
            return Err(invalid("a handler needs at least one topic".to_owned()));
        }
        for t in self.topics {
            let checked = match self.policy.dead_letter_topic() {
                Some(_) => topic::check(t),
                None => topic::check_with_dead_letter(t),
            };
            checked.map_err(|e| invalid(format!("topic: {e}")))?;
        }
        if let Some(t) = self.policy.dead_letter_topic() {
            topic::check(t).map_err(|e| invalid(format!("dead_letter_topic: {e}")))?;
        }
        self.policy.check().map_err(invalid)
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
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::HandlerFuture;
    use crate::message::Message;

    struct Nothing;
    impl Handler for Nothing {
        fn call(&self, _: Message) -> HandlerFuture<'static> {
            Box::pin(async { Ok(()) })
        }
    }

    fn spec(topics: &'static [&'static str]) -> HandlerSpec {
        HandlerSpec::new("h", topics, &Nothing).declared_at("app", "src/app.rs", 7)
    }

    #[test]
    fn topics_follow_kafkas_rules_in_the_attributes_words() {
        assert!(spec(&["orders", "a.b_c-9"]).check().is_ok());
        for bad in [&[][..], &[""], &["^orders-.*"], &["with space"], &[".."]] {
            let msg = spec(bad).check().expect_err("invalid").to_string();
            assert!(msg.contains("handler app::h (src/app.rs:7)"), "{msg}");
        }
        let msg = spec(&["with space"])
            .check()
            .expect_err("invalid")
            .to_string();
        assert!(
            msg.contains(
                "invalid character ' ' in topic name `with space`: Kafka allows only ASCII letters"
            ),
            "the attribute's words: {msg}"
        );
    }

    #[test]
    fn a_long_topic_cannot_push_its_dead_letter_topic_over_the_limit() {
        let long: &'static str = Box::leak("t".repeat(247).into_boxed_str());
        let topics: &'static [&'static str] = Box::leak(vec![long].into_boxed_slice());
        let msg = spec(topics).check().expect_err("too long").to_string();
        assert!(msg.contains("dead_letter_topic"), "{msg}");
        // With a dead-letter topic of its own, the long topic is fine.
        let own = spec(topics).with_policy(Policy::DEFAULT.with_dead_letter_topic("dlq"));
        assert!(own.check().is_ok());
    }

    #[test]
    fn policy_values_the_attribute_rejects_are_rejected_not_clamped() {
        let zero = spec(&["t"]).with_policy(Policy::DEFAULT.with_max_attempts(0));
        let msg = zero.check().expect_err("zero attempts").to_string();
        assert!(
            msg.contains("`max_attempts` must be an integer of at least 1"),
            "{msg}"
        );
        let zero = spec(&["t"]).with_policy(Policy::DEFAULT.with_concurrency(0));
        assert!(zero.check().is_err());
    }
}
