//! Liveness and readiness: what `/health/ready` answers, from what the
//! groups and partitions report.

use crate::engine::stop::Stop;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// What readiness depends on, shared by every part of a run.
#[derive(Debug)]
pub(crate) struct Health {
    stop: Arc<Stop>,
    inner: Mutex<Inner>,
    ready: metrics::Gauge,
}

#[derive(Debug, Default)]
struct Inner {
    /// Groups that have not received their first assignment yet.
    joining: BTreeSet<String>,
    /// Stalled partitions (group, topic, partition) and how long their
    /// oldest record has waited.
    stalled: BTreeMap<(Arc<str>, Arc<str>, i32), Duration>,
}

/// What `/health/ready` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Readiness {
    pub(crate) ready: bool,
    /// Why not, one line per reason; `ready` when ready.
    pub(crate) detail: String,
}

impl Health {
    /// Health of a run whose groups are `groups`, none joined yet.
    pub(crate) fn new(stop: Arc<Stop>, groups: impl IntoIterator<Item = String>) -> Self {
        Health {
            stop,
            inner: Mutex::new(Inner {
                joining: groups.into_iter().collect(),
                stalled: BTreeMap::new(),
            }),
            ready: metrics::gauge!(super::metrics::READY),
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `group` received an assignment (possibly empty): it joined.
    pub(crate) fn joined(&self, group: &str) {
        if self.inner().joining.remove(group) {
            self.refresh();
        }
    }

    /// A partition stalled (or stalls still, for `age`).
    pub(crate) fn stalled(
        &self,
        group: &Arc<str>,
        topic: &Arc<str>,
        partition: i32,
        age: Duration,
    ) {
        self.inner()
            .stalled
            .insert((group.clone(), topic.clone(), partition), age);
        self.refresh();
    }

    /// A partition is no longer stalled (it moved, or was revoked).
    pub(crate) fn recovered(&self, group: &Arc<str>, topic: &Arc<str>, partition: i32) {
        if self
            .inner()
            .stalled
            .remove(&(group.clone(), topic.clone(), partition))
            .is_some()
        {
            self.refresh();
        }
    }

    /// Sets the readiness gauge.
    pub(crate) fn refresh(&self) {
        self.ready
            .set(if self.readiness().ready { 1.0 } else { 0.0 });
    }

    /// Whether the dispatcher is ready for traffic, and why not.
    pub(crate) fn readiness(&self) -> Readiness {
        let mut reasons = Vec::new();
        if self.stop.has_error() {
            reasons.push("stopped by a fatal error (see the log)".to_owned());
        } else if self.stop.is_stopping() {
            reasons.push("shutting down: draining in-flight records".to_owned());
        }
        let inner = self.inner();
        for group in &inner.joining {
            reasons.push(format!("consumer group {group:?} has not joined yet"));
        }
        for ((group, topic, partition), age) in &inner.stalled {
            reasons.push(format!(
                "partition {topic}[{partition}] stalled (group {group:?}): its oldest unfinished record has waited {:.1}s",
                age.as_secs_f64()
            ));
        }
        drop(inner);
        if reasons.is_empty() {
            Readiness {
                ready: true,
                detail: "ready".to_owned(),
            }
        } else {
            Readiness {
                ready: false,
                detail: reasons.join("\n"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_util::sync::CancellationToken;

    #[test]
    fn ready_once_every_group_joined_and_not_while_stalled_stopping_or_fatal() {
        let token = CancellationToken::new();
        let stop = Arc::new(Stop::new(token.clone()));
        let health = Health::new(stop.clone(), ["a".to_owned(), "b".to_owned()]);
        assert!(!health.readiness().ready);
        health.joined("a");
        let r = health.readiness();
        assert!(
            !r.ready && r.detail.contains("\"b\" has not joined"),
            "{r:?}"
        );
        health.joined("b");
        assert!(health.readiness().ready);
        let (group, topic): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("orders"));
        health.stalled(&group, &topic, 3, Duration::from_secs(61));
        let r = health.readiness();
        assert!(!r.ready && r.detail.contains("orders[3] stalled"), "{r:?}");
        // Another group's worker of the same partition does not end it.
        health.recovered(&Arc::from("b"), &topic, 3);
        assert!(!health.readiness().ready);
        health.recovered(&group, &topic, 3);
        assert!(health.readiness().ready);
        token.cancel();
        assert!(health.readiness().detail.contains("shutting down"));
        let stop = Arc::new(Stop::new(CancellationToken::new()));
        let health = Health::new(stop.clone(), []);
        stop.fatal(crate::Error::runtime("boom"));
        let r = health.readiness();
        assert!(!r.ready && r.detail.contains("fatal"), "{r:?}");
    }
}
