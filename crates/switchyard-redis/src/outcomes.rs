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
        mut pubsub: redis::aio::PubSub,
        patterns: &[String],
    ) -> redis::RedisResult<Arc<Self>> {
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
            // The connection is gone: callers learn it from their dropped senders. Marked dead
            // under the lock, so that no caller registers after the clear and waits in vain.
            if let Some(listener) = weak.upgrade() {
                let mut callers = listener.lock();
                listener.alive.store(false, Ordering::SeqCst);
                callers.clear();
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

    /// Registers a caller of `channel`: the registration completes when the channel is
    /// announced, and fails if the connection is lost first (or already was). Dropping it
    /// unregisters the caller.
    pub(crate) fn register(self: &Arc<Self>, channel: &str) -> Registration {
        let (announce, announced) = oneshot::channel();
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        let mut callers = self.lock();
        // A dead listener's map was cleared for good: drop the sender, so the caller learns.
        if self.is_alive() {
            callers
                .entry(channel.to_owned())
                .or_default()
                .push((key, announce));
        }
        Registration {
            listener: self.clone(),
            channel: channel.to_owned(),
            key,
            announced,
        }
    }

    /// Removes a caller that stopped waiting.
    fn leave(&self, channel: &str, key: u64) {
        let mut callers = self.lock();
        if let Some(list) = callers.get_mut(channel) {
            list.retain(|(k, _)| *k != key);
            if list.is_empty() {
                callers.remove(channel);
            }
        }
    }
}

/// One caller's wait for a channel (see [`Listener::register`]).
#[derive(Debug)]
pub(crate) struct Registration {
    listener: Arc<Listener>,
    channel: String,
    key: u64,
    announced: oneshot::Receiver<()>,
}

impl Registration {
    /// Waits for the announcement: `Err` if the connection was lost first.
    pub(crate) async fn announced(&mut self) -> Result<(), oneshot::error::RecvError> {
        (&mut self.announced).await
    }
}

impl Drop for Registration {
    /// A caller that gives up (timeout, cancelled future) leaves no entry behind.
    fn drop(&mut self) {
        self.listener.leave(&self.channel, self.key);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use switchyard_testkit::redis_server::RedisServer;

    use super::*;

    #[tokio::test]
    async fn registrations_are_announced_leave_when_dropped_and_fail_once_dead() {
        let server = RedisServer::start().unwrap();
        let client = redis::Client::open(server.url()).unwrap();
        let listener = Listener::start(
            client.get_async_pubsub().await.unwrap(),
            &["t:*".to_owned()],
        )
        .await
        .unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();

        // Given up callers leave no entry behind.
        let a = listener.register("t:a");
        let b = listener.register("t:a");
        drop(a);
        assert_eq!(listener.lock().get("t:a").map(Vec::len), Some(1));
        drop(b);
        assert!(listener.lock().is_empty());

        // An announcement reaches the callers of its channel.
        let mut c = listener.register("t:c");
        let _: i64 = redis::cmd("PUBLISH")
            .arg("t:c")
            .arg("1")
            .query_async(&mut conn)
            .await
            .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), c.announced()).await;
        assert!(matches!(got, Ok(Ok(()))), "{got:?}");

        // Once the connection is gone, callers fail at once, even those registering later.
        let mut d = listener.register("t:d");
        assert_eq!(server.kill_pubsub_clients(), Ok(1));
        let got = tokio::time::timeout(Duration::from_secs(10), d.announced()).await;
        assert!(matches!(got, Ok(Err(_))), "{got:?}");
        assert!(!listener.is_alive());
        let mut e = listener.register("t:e");
        let got = tokio::time::timeout(Duration::from_secs(10), e.announced()).await;
        assert!(matches!(got, Ok(Err(_))), "{got:?}");
    }
}
