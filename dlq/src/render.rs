//! Bytes and times as text.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Bytes as hex, `0x` first.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 + bytes.len() * 2);
    s.push_str("0x");
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Bytes as UTF-8 text, or hex when they are not UTF-8.
pub(crate) fn text_or_hex(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(t) => t.to_owned(),
        Err(_) => hex(bytes),
    }
}

/// A time as RFC 3339 in UTC with milliseconds.
pub(crate) fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// A time as RFC 3339 in UTC to the second, for tables.
pub(crate) fn time_seconds(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Milliseconds since the epoch as a time.
pub(crate) fn from_millis(ms: i64) -> Option<SystemTime> {
    u64::try_from(ms)
        .ok()
        .map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
}

/// `text` cut to `max` characters, with `…` when cut.
pub(crate) fn cut(text: &str, max: usize) -> String {
    let one_line = text.replace(['\n', '\r'], " ");
    if one_line.chars().count() <= max {
        return one_line;
    }
    let mut s: String = one_line.chars().take(max.saturating_sub(1)).collect();
    s.push('…');
    s
}

/// Valid JSON re-indented by two spaces, its keys in their order and its
/// numbers and strings as written.
fn indent_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len() * 2);
    let mut depth = 0usize;
    let (mut in_string, mut escaped) = (false, false);
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    };
    let mut chars = json.trim().chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                if matches!(chars.peek(), Some('}' | ']')) {
                    out.extend(chars.next());
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// A payload as text for a person: pretty JSON when it is JSON, the text
/// when it is UTF-8, else hex; and what it was.
pub(crate) fn payload(bytes: &[u8]) -> (&'static str, String) {
    let is_json = serde_json::from_slice::<serde_json::Value>(bytes).is_ok();
    match std::str::from_utf8(bytes) {
        Ok(t) if is_json => ("JSON", indent_json(t)),
        Ok(t) => ("text", t.to_owned()),
        Err(_) => ("binary, as hex", hex(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms() {
        assert_eq!(hex(&[0, 0xab]), "0x00ab");
        assert_eq!(text_or_hex(b"k-1"), "k-1");
        assert_eq!(text_or_hex(&[0xff]), "0xff");
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("a\nb", 4), "a b");
        assert_eq!(
            payload(br#"{"a":1}"#),
            ("JSON", "{\n  \"a\": 1\n}".to_owned())
        );
        assert_eq!(payload(b"plain").0, "text");
        assert_eq!(payload(b"42"), ("JSON", "42".to_owned()));
        let nested = br#" {"z": [1, {}, [ ], "a,{\"b\":"], "a" :{"x":1.50}} "#;
        assert_eq!(
            payload(nested).1,
            r#"{
  "z": [
    1,
    {},
    [],
    "a,{\"b\":"
  ],
  "a": {
    "x": 1.50
  }
}"#
        );
        assert_eq!(
            time(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)),
            "2023-11-14T22:13:20.123Z"
        );
    }
}
