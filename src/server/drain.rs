//! The server's drain signal, delivered to each connection on its own channel: a connection
//! polls a one-shot receiver (no lock, no shared waiter list) on every wake-up, and only
//! registering and leaving take the registry's lock, once per connection.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::oneshot;

#[derive(Default)]
pub(super) struct Drain {
    draining: AtomicBool,
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, oneshot::Sender<()>>>,
}

/// One connection's place in the registry; leaving it (dropping this) unregisters.
pub(super) struct Subscription<'a> {
    drain: &'a Drain,
    id: u64,
    /// Resolves (`Ok` or `Err`, either way) when the server drains.
    pub signal: oneshot::Receiver<()>,
}

impl Drop for Subscription<'_> {
    fn drop(&mut self) {
        if let Ok(mut waiting) = self.drain.waiting.lock() {
            waiting.remove(&self.id);
        }
    }
}

impl Drain {
    pub(super) fn subscribe(&self) -> Subscription<'_> {
        let (tx, signal) = oneshot::channel();
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut waiting) = self.waiting.lock() {
            if self.draining.load(Ordering::Acquire) {
                let _ = tx.send(());
            } else {
                waiting.insert(id, tx);
            }
        }
        Subscription {
            drain: self,
            id,
            signal,
        }
    }

    /// Tells every connection, present and future, to finish.
    pub(super) fn start(&self) {
        if let Ok(mut waiting) = self.waiting.lock() {
            self.draining.store(true, Ordering::Release);
            for (_, tx) in waiting.drain() {
                let _ = tx.send(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_subscriber_hears_the_drain_and_late_ones_at_once() {
        let drain = Drain::default();
        let a = drain.subscribe();
        let b = drain.subscribe();
        drop(b);
        assert_eq!(drain.waiting.lock().unwrap().len(), 1);
        drain.start();
        let mut a = a;
        (&mut a.signal).await.unwrap();
        let mut late = drain.subscribe();
        (&mut late.signal).await.unwrap();
    }
}
