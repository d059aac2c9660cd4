//! Stall reports of a partition's worker: how long its oldest unfinished
//! record has held up its commits, and readiness while it does.

use super::{Running, Worker};
use crate::message::KeyDisplay;

impl Worker {
    /// Measures how long the oldest unfinished record has held up the
    /// partition's commits, and reports a stall (or its end).
    pub(super) fn check_stall(&mut self, running: &Running) {
        let now = std::time::Instant::now();
        // Set every time, so that the server keeps them (see metrics.rs).
        self.cx.gauges.in_flight.increment(0.0);
        self.cx
            .gauges
            .stalled
            .set(if self.stalled { 1.0 } else { 0.0 });
        let Some(offset) = self.tracker.oldest_unfinished() else {
            self.head = None;
            self.cx.gauges.oldest_age.set(0.0);
            self.recover("it holds no unfinished record");
            return;
        };
        // A retry topic's record waiting to be due is not stalled.
        if self
            .ready
            .front()
            .is_some_and(|m| m.offset() == offset && self.not_due_for(m).is_some())
        {
            self.head = Some((offset, now));
            self.cx.gauges.oldest_age.set(0.0);
            self.recover("its oldest record waits to be due");
            return;
        }
        let since = match self.head {
            Some((o, since)) if o == offset => since,
            _ => {
                if self.stalled {
                    self.recover("its oldest unfinished record finished");
                }
                self.head = Some((offset, now));
                now
            }
        };
        let age = now.duration_since(since);
        self.cx.gauges.oldest_age.set(age.as_secs_f64());
        if age < self.cx.stall_timeout {
            return;
        }
        if !self.stalled {
            self.stalled = true;
            self.cx.gauges.stalled.set(1.0);
            let (key, state) = match running.iter().find(|r| r.offset == offset) {
                Some(r) => (r.key.as_deref(), "its handler is running or waiting to retry"),
                None => match self.ready.iter().find(|m| m.offset() == offset) {
                    Some(m) => (m.key(), "it waits for an in-flight slot (max_in_flight or the handler's concurrency)"),
                    None if self.halted => (None, "a fatal error stopped the partition"),
                    None => (None, "it waits behind another record"),
                },
            };
            tracing::warn!(
                topic = &*self.topic,
                partition = self.partition,
                offset,
                key = %KeyDisplay(key),
                handler = &*self.cx.executor.name,
                age = ?age,
                stall_timeout = ?self.cx.stall_timeout,
                "partition stalled: its oldest unfinished record holds up its commits ({state}); readiness is off until it moves"
            );
        }
        self.cx
            .health
            .stalled(&self.cx.executor.group, &self.topic, self.partition, age);
    }

    /// Ends a stall, if one was reported.
    pub(super) fn recover(&mut self, why: &str) {
        if self.stalled {
            self.stalled = false;
            self.cx.gauges.stalled.set(0.0);
            self.cx
                .health
                .recovered(&self.cx.executor.group, &self.topic, self.partition);
            tracing::info!(
                topic = &*self.topic,
                partition = self.partition,
                handler = &*self.cx.executor.name,
                "partition no longer stalled: {why}"
            );
        }
    }
}
