//! Caps on records in flight: the run's global cap and each handler's own,
//! and the slots one partition worker takes from them.
//!
//! Unlike `tokio::sync::Semaphore`, releasing a slot takes no lock: one
//! atomic operation per record on the fast path, and waiters are woken only
//! when the cap was reached.

use futures::future::BoxFuture;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

/// At most `cap` slots in use at once.
#[derive(Debug)]
pub(crate) struct Limit {
    used: AtomicUsize,
    cap: usize,
    released: Notify,
}

impl Limit {
    pub(crate) fn new(cap: usize) -> Self {
        Limit {
            used: AtomicUsize::new(0),
            cap: cap.max(1),
            released: Notify::new(),
        }
    }

    /// Takes a slot if one is free.
    pub(crate) fn try_acquire(&self) -> bool {
        self.try_acquire_up_to(1) == 1
    }

    /// Takes up to `n` free slots at once; returns how many.
    pub(crate) fn try_acquire_up_to(&self, n: usize) -> usize {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let take = n.min(self.cap.saturating_sub(used));
            if take == 0 {
                return 0;
            }
            match self.used.compare_exchange_weak(
                used,
                used + take,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return take,
                Err(now) => used = now,
            }
        }
    }

    /// How many slots a worker may keep for itself between records: a few
    /// when the cap is large, none when it is small.
    pub(crate) fn batch(&self) -> usize {
        (self.cap / 256).clamp(1, 32)
    }

    /// Waits for a slot and takes it.
    pub(crate) async fn acquire(&self) {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            // Register before checking, so a release in between wakes us.
            released.as_mut().enable();
            if self.try_acquire() {
                return;
            }
            released.await;
        }
    }

    /// Gives back `n` slots.
    pub(crate) fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        let before = self.used.fetch_sub(n, Ordering::Release);
        debug_assert!(before >= n, "released more slots than taken");
        if before >= self.cap {
            self.released.notify_waiters();
        }
    }

    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

/// The slots of one partition worker: one per record it runs, from its
/// handler's cap first and then from the global cap. In that order: a
/// worker waiting for its handler's cap must not sit on a global slot that
/// other handlers could use. Global slots are taken a few at a time and
/// kept spare between records, so the shared counter is not touched per
/// record; the spare ones go back whenever the worker waits.
pub(crate) struct Slots {
    global: Arc<Limit>,
    handler: Option<Arc<Limit>>,
    spare: usize,
}

/// Gives a slot back when dropped, unless disarmed.
struct SlotGuard(Option<Arc<Limit>>);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        if let Some(l) = self.0.take() {
            l.release(1);
        }
    }
}

impl Slots {
    pub(crate) fn new(global: Arc<Limit>, handler: Option<Arc<Limit>>) -> Self {
        Slots {
            global,
            handler,
            spare: 0,
        }
    }

    /// Takes a slot for one record if both caps have room.
    pub(crate) fn try_take(&mut self) -> bool {
        if let Some(h) = &self.handler {
            if !h.try_acquire() {
                return false;
            }
        }
        if self.spare == 0 {
            match self.global.try_acquire_up_to(self.global.batch()) {
                0 => {
                    if let Some(h) = &self.handler {
                        h.release(1);
                    }
                    return false;
                }
                n => self.spare = n,
            }
        }
        self.spare -= 1;
        true
    }

    /// Waits for a slot: the handler's first, then a global one. Dropping
    /// the future gives back what it took.
    pub(crate) fn wait(&self) -> BoxFuture<'static, ()> {
        let global = self.global.clone();
        let handler = self.handler.clone();
        Box::pin(async move {
            let mut guard = SlotGuard(None);
            if let Some(h) = handler {
                h.acquire().await;
                guard.0 = Some(h);
            }
            global.acquire().await;
            guard.0 = None;
        })
    }

    /// Gives back the slots of `n` records.
    pub(crate) fn give_back(&mut self, n: usize) {
        self.spare += n;
        let keep = self.global.batch();
        if self.spare > keep {
            self.global.release(self.spare - keep);
            self.spare = keep;
        }
        if let Some(h) = &self.handler {
            h.release(n);
        }
    }

    /// Gives every spare global slot back, before waiting.
    pub(crate) fn give_back_spare(&mut self) {
        self.global.release(std::mem::take(&mut self.spare));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn takes_what_is_free_up_to_the_request() {
        let l = Limit::new(5);
        assert_eq!(l.try_acquire_up_to(3), 3);
        assert_eq!(l.try_acquire_up_to(3), 2);
        assert_eq!(l.try_acquire_up_to(3), 0);
        l.release(5);
        assert_eq!(Limit::new(100_000).batch(), 32);
        assert_eq!(Limit::new(100).batch(), 1);
    }

    #[test]
    fn never_hands_out_more_than_the_cap() {
        let l = Limit::new(2);
        assert!(l.try_acquire());
        assert!(l.try_acquire());
        assert!(!l.try_acquire());
        l.release(1);
        assert!(l.try_acquire());
        l.release(2);
        assert_eq!(l.used(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiters_are_woken_by_releases() {
        let l = Arc::new(Limit::new(1));
        assert!(l.try_acquire());
        let waiting = {
            let l = l.clone();
            tokio::spawn(async move { l.acquire().await })
        };
        tokio::task::yield_now().await;
        l.release(1);
        tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("woken")
            .expect("task");
        assert_eq!(l.used(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_users_stay_under_the_cap() {
        let l = Arc::new(Limit::new(3));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (l, peak) = (l.clone(), peak.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..200 {
                    l.acquire().await;
                    peak.fetch_max(l.used(), Ordering::Relaxed);
                    tokio::task::yield_now().await;
                    l.release(1);
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        assert!(peak.load(Ordering::Relaxed) <= 3);
        assert_eq!(l.used(), 0);
    }
}
