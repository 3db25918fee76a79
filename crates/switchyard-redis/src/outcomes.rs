//! One subscription for every caller awaiting an outcome or a due time.
//!
//! A finished task that someone awaits is announced on `sy:{ns}:done:<id>` (see
//! `lua/await.lua`); a delayed task that became the first of its queue on `sy:{ns}:due`.
//! Rather than a connection per waiting caller, a backend keeps one pub/sub connection
//! subscribed to the patterns `sy:{ns}:done:*` and `sy:{ns}:due` and a table of callers by
//! channel; a reader task hands each announcement to the callers of its channel. A thousand
//! concurrent waits therefore cost one connection, and no subscribe round trip each.
//!
//! If the connection is lost, every registered caller is told (its receiver fails) and calls
//! again on a new listener, checking the task's state before it waits: nothing announced in
//! between is missed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use futures_util::StreamExt;
use tokio::sync::oneshot;

/// Callers waiting per channel: `(registration, announce)`.
type Callers = HashMap<String, Vec<(u64, oneshot::Sender<()>)>>;

/// A live pattern subscription and the callers it serves.
#[derive(Debug)]
pub(crate) struct Listener {
    callers: Mutex<Callers>,
    next: AtomicU64,
    alive: AtomicBool,
    /// Dropped with the listener: tells the reader task to stop.
    _stop: oneshot::Sender<()>,
}

impl Listener {
    /// Subscribes to `patterns` on a new connection and starts the reader task.
    pub(crate) async fn start(
        client: &redis::Client,
        patterns: &[String],
    ) -> redis::RedisResult<Arc<Self>> {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.psubscribe(patterns).await?;
        let (_sink, mut stream) = pubsub.split();
        let (stop, mut stopped) = oneshot::channel();
        let listener = Arc::new(Listener {
            callers: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            alive: AtomicBool::new(true),
            _stop: stop,
        });
        let weak: Weak<Listener> = Arc::downgrade(&listener);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    message = stream.next() => {
                        let Some(message) = message else { break };
                        let Some(listener) = weak.upgrade() else { return };
                        let callers = listener.lock().remove(message.get_channel_name());
                        for (_, announce) in callers.into_iter().flatten() {
                            let _ = announce.send(());
                        }
                    }
                }
            }
            // The connection is gone: callers learn it from their dropped senders.
            if let Some(listener) = weak.upgrade() {
                listener.alive.store(false, Ordering::SeqCst);
                listener.lock().clear();
            }
        });
        Ok(listener)
    }

    fn lock(&self) -> MutexGuard<'_, Callers> {
        // Each critical section is a single map operation, so a poisoned map is consistent.
        self.callers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether its connection still works.
    pub(crate) fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    /// Registers a caller of `channel`: the receiver completes when the channel is announced,
    /// and fails if the connection is lost first. Call [`Listener::leave`] when giving up.
    pub(crate) fn register(&self, channel: &str) -> (u64, oneshot::Receiver<()>) {
        let (announce, announced) = oneshot::channel();
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock()
            .entry(channel.to_owned())
            .or_default()
            .push((key, announce));
        (key, announced)
    }

    /// Removes a caller that stopped waiting.
    pub(crate) fn leave(&self, channel: &str, key: u64) {
        let mut callers = self.lock();
        if let Some(list) = callers.get_mut(channel) {
            list.retain(|(k, _)| *k != key);
            if list.is_empty() {
                callers.remove(channel);
            }
        }
    }
}
