//! Durations written as string literals in the attribute: `"250ms"`, `"2s"`,
//! `"1m"`, `"1h"`.

/// The forms a duration may take, for error messages.
pub(crate) const ACCEPTED: &str =
    "an integer followed by a unit: `ms`, `s`, `m` or `h`, e.g. \"250ms\", \"2s\", \"1m\"";

/// Parses a duration literal into milliseconds.
pub(crate) fn parse_millis(text: &str) -> Result<u64, String> {
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let malformed = || format!("malformed duration {text:?}: expected {ACCEPTED}");
    if number.is_empty() {
        return Err(malformed());
    }
    let factor: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(malformed()),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| format!("duration {text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::parse_millis;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse_millis("250ms"), Ok(250));
        assert_eq!(parse_millis("0ms"), Ok(0));
        assert_eq!(parse_millis("2s"), Ok(2_000));
        assert_eq!(parse_millis("1m"), Ok(60_000));
        assert_eq!(parse_millis("3h"), Ok(10_800_000));
    }

    #[test]
    fn rejects_malformed_input() {
        for bad in [
            "", "ms", "10", "1.5s", "-1s", "1 s", "1sec", "1d", " 1s", "1S", "s1",
        ] {
            let err = parse_millis(bad).expect_err(bad);
            assert!(err.contains("malformed duration"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn rejects_overflow() {
        let err = parse_millis("99999999999999999999h").expect_err("overflow");
        assert!(err.contains("too large"), "{err}");
        assert!(parse_millis(&format!("{}h", u64::MAX / 3_600_000 + 1)).is_err());
    }
}
