//! Kafka's rules for topic names, checked at compile time.

/// The longest topic name Kafka accepts.
const MAX_LEN: usize = 249;

/// Checks `name` against Kafka's topic rules: 1 to 249 characters from
/// `[a-zA-Z0-9._-]`, and neither `.` nor `..`. The error says which rule
/// failed.
pub(crate) fn validate(name: &str) -> Result<(), String> {
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

#[cfg(test)]
mod tests {
    use super::validate;

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
            assert_eq!(validate(ok), Ok(()), "{ok}");
        }
        assert_eq!(validate(&"x".repeat(249)), Ok(()));
    }

    #[test]
    fn rejects_what_kafka_rejects() {
        for bad in ["", ".", "..", "has space", "slash/es", "ümlaut", "colon:"] {
            assert!(validate(bad).is_err(), "{bad:?} should be rejected");
        }
        let long = validate(&"x".repeat(250)).expect_err("too long");
        assert!(long.contains("at most 249"), "{long}");
        let chars = validate("a b").expect_err("space");
        assert!(chars.contains("' '"), "{chars}");
    }
}
