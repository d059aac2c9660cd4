//! "Did you mean" hints for names that are almost right.

/// The candidate closest to `name`, if one is close enough to be a likely
/// typo (Jaro-Winkler similarity of at least 0.8).
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// `" (did you mean `x`?)"` when a candidate is close, else empty.
pub fn hint<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(name, candidates)
        .map(|c| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let keys = ["topic", "retry", "max_attempts", "dead_letter_topic"];
        assert_eq!(closest("max_attempt", keys), Some("max_attempts"));
        assert_eq!(closest("retyr", keys), Some("retry"));
        assert_eq!(closest("dead_letter", keys), Some("dead_letter_topic"));
        assert_eq!(closest("zzz", keys), None);
        assert_eq!(hint("topc", keys), " (did you mean `topic`?)");
    }
}
