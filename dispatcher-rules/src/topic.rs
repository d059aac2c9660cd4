//! Kafka's rules for topic names.

/// The longest topic name Kafka accepts.
pub const MAX_LEN: usize = 249;

/// The suffix of a handler's default dead-letter topic: `orders` sends its
/// dead letters to `orders.DLT`.
pub const DEAD_LETTER_SUFFIX: &str = ".DLT";

/// Checks `name` against Kafka's topic rules: 1 to 249 characters from
/// `[a-zA-Z0-9._-]`, and neither `.` nor `..`. The error says which rule
/// failed.
pub fn check(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a topic name cannot be empty".to_owned());
    }
    if name == "." || name == ".." {
        return Err(format!("`{name}` is not a valid topic name"));
    }
    let len = name.chars().count();
    if len > MAX_LEN {
        return Err(format!(
            "a topic name has at most {MAX_LEN} characters; this one has {len}"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "invalid character {bad:?} in topic name `{name}`: Kafka allows only ASCII letters, digits, `.`, `_` and `-`"
        ));
    }
    Ok(())
}

/// The default dead-letter topic of `topic`.
pub fn dead_letter_topic(topic: &str) -> String {
    format!("{topic}{DEAD_LETTER_SUFFIX}")
}

/// How retry topics are named unless a handler says otherwise:
/// `orders.billing.retry.30s` for group `billing`. The group keeps two
/// groups that read one topic from handling each other's retries.
pub const DEFAULT_RETRY_TOPIC_NAME: &str = "{topic}.{group}.retry.{delay}";

/// The retry topic of `topic` read by `group` at `level` (1 for the
/// first), whose delay is `delay_ms`, named by `pattern`: `{topic}`,
/// `{group}`, `{level}` and `{delay}` (as written in the attribute, e.g.
/// `30s`) are replaced.
pub fn retry_topic(pattern: &str, topic: &str, group: &str, level: usize, delay_ms: u64) -> String {
    pattern
        .replace("{topic}", topic)
        .replace("{group}", group)
        .replace("{level}", &level.to_string())
        .replace(
            "{delay}",
            &crate::duration::format(std::time::Duration::from_millis(delay_ms)),
        )
}

/// Checks a retry-topic name pattern: only `{topic}`, `{group}`, `{level}`
/// and `{delay}` placeholders, `{level}` or `{delay}` so that levels
/// differ, `{topic}` when the handler reads several topics, and valid
/// topic names for `topics` read by `group` (a sample group when it is not
/// known yet).
pub fn check_retry_topic_name(
    pattern: &str,
    topics: &[&str],
    group: Option<&str>,
) -> Result<(), String> {
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("unclosed `{{` in retry topic name {pattern:?}"))?;
        let name = &rest[open + 1..open + close];
        if !matches!(name, "topic" | "group" | "level" | "delay") {
            return Err(format!(
                "unknown placeholder `{{{name}}}` in retry topic name {pattern:?}: use {{topic}}, {{group}}, {{level}} and {{delay}}"
            ));
        }
        rest = &rest[open + close + 1..];
    }
    if !pattern.contains("{level}") && !pattern.contains("{delay}") {
        return Err(format!(
            "retry topic name {pattern:?} is the same at every level: put `{{level}}` or `{{delay}}` in it"
        ));
    }
    if topics.len() > 1 && !pattern.contains("{topic}") {
        return Err(format!(
            "retry topic name {pattern:?} is the same for every topic of the handler: put `{{topic}}` in it"
        ));
    }
    for t in topics {
        check(&retry_topic(pattern, t, group.unwrap_or("group"), 1, 3_600_000)).map_err(|e| {
            let hint = if pattern.contains("{group}") && group.is_some() {
                " (the consumer group's name is part of it: choose a retry_topic_name without {group})"
            } else {
                ""
            };
            format!("retry topic name {pattern:?} gives an invalid topic for {t:?}: {e}{hint}")
        })?;
    }
    Ok(())
}

/// Checks a topic and the default dead-letter topic derived from it, for a
/// handler that sets no `dead_letter_topic` of its own.
pub fn check_with_dead_letter(topic: &str) -> Result<(), String> {
    check(topic)?;
    check(&dead_letter_topic(topic)).map_err(|e| {
        format!("its dead-letter topic `{topic}{DEAD_LETTER_SUFFIX}` is invalid ({e}); shorten the topic or set `dead_letter_topic`")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kafka_names() {
        for ok in [
            "orders",
            "orders.DLT",
            "a",
            "a-b_c.d",
            "__consumer_offsets",
            "...",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
        assert_eq!(check(&"x".repeat(249)), Ok(()));
    }

    #[test]
    fn rejects_what_kafka_rejects() {
        for bad in [
            "",
            ".",
            "..",
            "has space",
            "slash/es",
            "ümlaut",
            "colon:",
            "^orders-.*",
        ] {
            assert!(check(bad).is_err(), "{bad:?} should be rejected");
        }
        let long = check(&"x".repeat(250)).expect_err("too long");
        assert!(long.contains("at most 249"), "{long}");
        let chars = check("a b").expect_err("space");
        assert!(chars.contains("' '"), "{chars}");
    }

    #[test]
    fn a_long_topic_cannot_push_its_dead_letter_topic_over_the_limit() {
        let long = "t".repeat(247);
        assert_eq!(check(&long), Ok(()));
        let err = check_with_dead_letter(&long).expect_err("dead-letter topic too long");
        assert!(err.contains("dead_letter_topic"), "{err}");
    }

    #[test]
    fn retry_topic_names_follow_their_pattern_and_bad_patterns_say_why() {
        assert_eq!(
            retry_topic(DEFAULT_RETRY_TOPIC_NAME, "orders", "billing", 2, 30_000),
            "orders.billing.retry.30s"
        );
        assert_eq!(
            retry_topic("{topic}-retry-{level}", "orders", "billing", 2, 30_000),
            "orders-retry-2"
        );
        let check = check_retry_topic_name;
        assert!(check("{topic}-retry-{level}", &["a", "b"], None).is_ok());
        assert!(check("orders-retry-{level}", &["orders"], None).is_ok());
        let same = check("orders-retry", &["orders"], None).expect_err("one name");
        assert!(same.contains("every level"), "{same}");
        let shared = check("retry-{level}", &["a", "b"], None).expect_err("shared");
        assert!(shared.contains("{topic}"), "{shared}");
        let unknown = check("{topic}.{attempt}", &["a"], None).expect_err("unknown");
        assert!(unknown.contains("{attempt}"), "{unknown}");
        let invalid = check("{topic} retry {level}", &["a"], None).expect_err("space");
        assert!(invalid.contains("invalid"), "{invalid}");
        let group = check(DEFAULT_RETRY_TOPIC_NAME, &["a"], Some("my group")).expect_err("a space");
        assert!(group.contains("without {group}"), "{group}");
    }
}
