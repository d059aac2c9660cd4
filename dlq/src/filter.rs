//! Which dead letters a command takes.

use crate::cli::Filters;
use crate::render;
use crate::scan::Record;
use dispatcher::dead_letter::DeadLetterInfo;
use std::time::SystemTime;

/// Whether `name` is `wanted`, or ends with `::wanted` (a path given by
/// its last segments).
fn path_matches(name: &str, wanted: &str) -> bool {
    let wanted = wanted.trim();
    name == wanted
        || name
            .strip_suffix(wanted)
            .is_some_and(|head| head.ends_with("::"))
}

/// When a dead letter last failed: its `dlt.last.failure`, else its
/// `dlt.first.failure`, else the time it was written.
pub fn failure_time(record: &Record, info: &DeadLetterInfo) -> Option<SystemTime> {
    info.last_failure
        .or(info.first_failure)
        .or_else(|| record.timestamp.and_then(render::from_millis))
}

impl Filters {
    /// Whether the dead letter passes every filter given.
    pub fn matches(&self, record: &Record, info: &DeadLetterInfo) -> bool {
        if let Some(h) = &self.handler {
            if !path_matches(&info.handler, h) {
                return false;
            }
        }
        if let Some(t) = &self.error_type {
            if !path_matches(&info.error_type, t) {
                return false;
            }
        }
        if let Some(r) = &self.reason {
            if info.reason != r.trim() {
                return false;
            }
        }
        if let Some(k) = &self.key {
            if record.key.as_deref() != Some(k.as_bytes()) {
                return false;
            }
        }
        if self.since.is_some() || self.until.is_some() {
            let Some(at) = failure_time(record, info) else {
                return false;
            };
            if self.since.is_some_and(|since| at < since) {
                return false;
            }
            if self.until.is_some_and(|until| at >= until) {
                return false;
            }
        }
        true
    }

    /// The filters given, as on the command line (empty when none).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(h) = &self.handler {
            parts.push(format!("--handler {h}"));
        }
        if let Some(t) = &self.error_type {
            parts.push(format!("--error-type {t}"));
        }
        if let Some(r) = &self.reason {
            parts.push(format!("--reason {r}"));
        }
        if let Some(s) = self.since {
            parts.push(format!("--since {}", render::time(s)));
        }
        if let Some(u) = self.until {
            parts.push(format!("--until {}", render::time(u)));
        }
        if let Some(k) = &self.key {
            parts.push(format!("--key {k}"));
        }
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_whole_or_by_last_segments() {
        assert!(path_matches("billing::on_order", "billing::on_order"));
        assert!(path_matches("billing::on_order", "on_order"));
        assert!(path_matches("app::billing::on_order", "billing::on_order"));
        assert!(!path_matches("billing::on_order", "order"));
        assert!(!path_matches("billing::on_order2", "on_order"));
    }
}
