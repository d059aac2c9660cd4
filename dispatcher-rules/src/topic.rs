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

/// The retry topic of `topic` for a level with this delay:
/// `<topic>.retry.<delay>`, e.g. `orders.retry.30s`.
pub fn retry_topic(topic: &str, delay_ms: u64) -> String {
    format!(
        "{topic}.retry.{}",
        crate::duration::format(std::time::Duration::from_millis(delay_ms))
    )
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
}
