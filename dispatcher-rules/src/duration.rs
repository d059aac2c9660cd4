//! Durations as people write them in the attribute and in configuration:
//! `"250ms"`, `"2s"`, `"1m"`, `"1h"`.

use std::time::Duration;

/// The forms a duration may take, for error messages.
pub const ACCEPTED: &str =
    "an integer followed by a unit: `ms`, `s`, `m` or `h`, e.g. \"250ms\", \"2s\", \"1m\"";

/// Parses a duration into milliseconds.
pub fn parse_millis(text: &str) -> Result<u64, String> {
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

/// Parses a duration.
pub fn parse(text: &str) -> Result<Duration, String> {
    parse_millis(text).map(Duration::from_millis)
}

/// Writes a duration the way [`parse`] reads it, in the largest unit that
/// keeps it whole: `1m`, `90s`, `250ms`.
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        "0ms".to_owned()
    } else if ms % 3_600_000 == 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms % 60_000 == 0 {
        format!("{}m", ms / 60_000)
    } else if ms % 1_000 == 0 {
        format!("{}s", ms / 1_000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn formats_what_it_parses() {
        for text in ["0ms", "250ms", "1500ms", "2s", "90s", "1m", "3h"] {
            assert_eq!(format(parse(text).expect(text)), text);
        }
    }
}
