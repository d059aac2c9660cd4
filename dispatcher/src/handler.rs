//! Handlers and their registration.

use crate::{HandlerError, Message, Policy};
use std::future::Future;
use std::pin::Pin;

/// The future of one handler attempt.
pub type HandlerFuture<'a> = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send + 'a>>;

/// A record handler. `#[kafka_handler]` implements it for the function it
/// annotates; implement it by hand to register handlers programmatically
/// with [`DispatcherBuilder::handler`](crate::DispatcherBuilder::handler).
///
/// Each attempt gets its own copy of the record (cloning a [`Message`] is
/// cheap), so the future can own it and outlive the call.
pub trait Handler: Send + Sync + 'static {
    /// Runs one attempt on `msg`.
    fn call(&self, msg: Message) -> HandlerFuture<'static>;
}

/// A registered handler: the function, the topics it consumes, its policy,
/// and where it was written (for error messages).
#[derive(Clone, Copy)]
pub struct HandlerSpec {
    /// The handler function's name.
    pub name: &'static str,
    /// The module it was declared in.
    pub module_path: &'static str,
    /// The source file it was declared in.
    pub file: &'static str,
    /// The line of its attribute.
    pub line: u32,
    /// The topics it consumes.
    pub topics: &'static [&'static str],
    /// A consumer group overriding the configured one.
    pub group: Option<&'static str>,
    /// Its error policy, ordering and limits.
    pub policy: Policy,
    /// The code to run.
    pub handler: &'static dyn Handler,
}

impl HandlerSpec {
    /// `module::name`, as used in logs and dead-letter headers.
    pub fn qualified_name(&self) -> String {
        format!("{}::{}", self.module_path, self.name)
    }

    /// `file:line`, where the handler was declared.
    pub fn location(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }

    /// Checks the handler's topics and their dead-letter topics against
    /// Kafka's naming rules. The macro checks what it can see at compile
    /// time; this catches hand-built specs, and a dead-letter name that a
    /// long topic pushes over Kafka's length limit.
    pub(crate) fn check_topics(&self) -> crate::Result<()> {
        let invalid = |key: &str, name: &str, reason: &str| {
            crate::Error::config(
                key,
                name,
                &format!("handler {} at {}", self.qualified_name(), self.location()),
                reason,
            )
        };
        if self.topics.is_empty() {
            return Err(invalid("topic", "", "a handler needs at least one topic"));
        }
        for topic in self.topics {
            if let Some(reason) = topic_name_problem(topic) {
                return Err(invalid("topic", topic, reason));
            }
            let dead_letters = self.policy.dead_letter_topic_for(topic);
            if let Some(reason) = topic_name_problem(&dead_letters) {
                return Err(invalid("dead_letter_topic", &dead_letters, reason));
            }
        }
        Ok(())
    }
}

/// What makes `name` an invalid Kafka topic name, if anything.
fn topic_name_problem(name: &str) -> Option<&'static str> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > 249 {
        Some("a topic name has 1 to 249 characters; shorten it (a dead-letter topic is `<topic>.DLT` unless `dead_letter_topic` is set)")
    } else if name == "." || name == ".." {
        Some("`.` and `..` are not topic names")
    } else if !name.chars().all(allowed) {
        Some("a topic name has only ASCII letters, digits, `.`, `_` and `-`")
    } else {
        None
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
            .finish()
    }
}

/// A handler submitted by `#[kafka_handler]`; collected at startup.
#[doc(hidden)]
pub struct Registration(pub HandlerSpec);

inventory::collect!(Registration);

/// Every handler declared with `#[kafka_handler]` in the program.
pub fn registered_handlers() -> Vec<HandlerSpec> {
    let mut all: Vec<HandlerSpec> = inventory::iter::<Registration>
        .into_iter()
        .map(|r| r.0)
        .collect();
    all.sort_by(|a, b| (a.file, a.line).cmp(&(b.file, b.line)));
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nothing;
    impl Handler for Nothing {
        fn call(&self, _: Message) -> HandlerFuture<'static> {
            Box::pin(async { Ok(()) })
        }
    }

    fn spec(topics: &'static [&'static str]) -> HandlerSpec {
        HandlerSpec {
            name: "h",
            module_path: "app",
            file: "src/app.rs",
            line: 7,
            topics,
            group: None,
            policy: Policy::DEFAULT,
            handler: &Nothing,
        }
    }

    #[test]
    fn topics_follow_kafkas_rules() {
        assert!(spec(&["orders", "a.b_c-9"]).check_topics().is_ok());
        for bad in [&[][..], &[""], &["^orders-.*"], &["with space"], &[".."]] {
            let err = spec(bad).check_topics().expect_err("invalid");
            let msg = err.to_string();
            assert!(msg.contains("handler app::h at src/app.rs:7"), "{msg}");
        }
    }

    #[test]
    fn a_long_topic_cannot_push_its_dead_letter_topic_over_the_limit() {
        let long: &'static str = Box::leak("t".repeat(247).into_boxed_str());
        let topics: &'static [&'static str] = Box::leak(vec![long].into_boxed_slice());
        let msg = spec(topics)
            .check_topics()
            .expect_err("too long")
            .to_string();
        assert!(msg.contains("dead_letter_topic"), "{msg}");
    }
}
