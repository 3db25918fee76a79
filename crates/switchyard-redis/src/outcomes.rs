//! One subscription for every caller awaiting an outcome or a due time.
//!
//! A finished task that someone awaits is announced on `sy:{ns}:done:<id>` (see
//! `lua/await.lua`); a delayed task that became the first of its queue on `sy:{ns}:due`.
//! Rather than a connection per waiting caller, a backend keeps one pub/sub connection and a
//! table of callers by channel; a reader task hands each announcement to the callers of its
//! channel. A thousand concurrent waits therefore cost one connection.
//!
//! The connection subscribes to **exact channels**, not patterns: `sy:{ns}:due` for its whole
//! life, and `sy:{ns}:done:<id>` while someone awaits task `<id>`. (An ACL user limited to the
//! namespace's channels, `&sy:{ns}*`, may not `PSUBSCRIBE sy:{ns}:done:*`: Redis accepts a
//! pattern subscription only if it equals an allowed pattern. And a pattern wide enough to be
//! allowed, `sy:{ns}*`, would bring every worker's wake-ups to every listener.) A caller
//! registers before it checks the task's state, and [`Listener::register`] returns once the
//! server confirmed the `SUBSCRIBE`, so an announcement after the check is not missed. When
//! the last caller of a channel leaves, an unsubscriber task sends `UNSUBSCRIBE` — unless a
//! caller came back meanwhile: it checks under the same lock that every `SUBSCRIBE` holds.
//!
//! If the connection is lost, every registered caller is told (its receiver fails) and calls
//! again on a new listener, checking the task's state before it waits: nothing announced in
//! between is missed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use futures_util::StreamExt;
use redis::aio::PubSubSink;
use tokio::sync::{mpsc, oneshot};

/// How long a `SUBSCRIBE` may take before the connection is taken for dead.
const SUBSCRIBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The error of a pub/sub command that did not answer within [`SUBSCRIBE_TIMEOUT`].
pub(crate) fn timed_out(what: &str) -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::Io,
        "timed out",
        format!("no {what} reply within {SUBSCRIBE_TIMEOUT:?}"),
    ))
}

/// Runs a pub/sub command under [`SUBSCRIBE_TIMEOUT`] (redis-rs gives pub/sub connections no
/// reply timeout of their own).
pub(crate) async fn bounded<T>(
    what: &str,
    command: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> redis::RedisResult<T> {
    tokio::time::timeout(SUBSCRIBE_TIMEOUT, command)
        .await
        .unwrap_or_else(|_| Err(timed_out(what)))
}

/// Callers waiting per channel: `(registration, announce)`.
type Callers = HashMap<String, Vec<(u64, oneshot::Sender<()>)>>;

/// A live subscription and the callers it serves.
pub(crate) struct Listener {
    callers: Mutex<Callers>,
    next: AtomicU64,
    alive: AtomicBool,
    /// Channels subscribed for the listener's whole life.
    fixed: Vec<String>,
    /// Sends `SUBSCRIBE` / `UNSUBSCRIBE`; held across each, so that they are ordered.
    sink: tokio::sync::Mutex<PubSubSink>,
    /// Channels whose last caller left, for the unsubscriber task.
    left: mpsc::UnboundedSender<String>,
    /// Dropped with the listener: tells the reader task to stop.
    _stop: oneshot::Sender<()>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("fixed", &self.fixed)
            .field("alive", &self.is_alive())
            .finish_non_exhaustive()
    }
}

impl Listener {
    /// Subscribes to the `fixed` channels on `pubsub` and starts the reader and unsubscriber
    /// tasks. The listener dies (its callers are told) when its connection is lost or when
    /// `moves` changes: the primary moved, and the connection is on the old one.
    pub(crate) async fn start(
        mut pubsub: redis::aio::PubSub,
        fixed: &[String],
        mut moves: tokio::sync::watch::Receiver<u64>,
    ) -> redis::RedisResult<Arc<Self>> {
        bounded("SUBSCRIBE", pubsub.subscribe(fixed)).await?;
        let (sink, mut stream) = pubsub.split();
        let (stop, mut stopped) = oneshot::channel();
        let (left, mut left_rx) = mpsc::unbounded_channel::<String>();
        let listener = Arc::new(Listener {
            callers: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            alive: AtomicBool::new(true),
            fixed: fixed.to_vec(),
            sink: tokio::sync::Mutex::new(sink),
            left,
            _stop: stop,
        });
        let weak: Weak<Listener> = Arc::downgrade(&listener);
        tokio::spawn(async move {
            // Whether a move can still come (its sender, the topology's, is alive).
            let mut watching = true;
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    moved = moves.changed(), if watching => match moved {
                        Ok(()) => break,
                        Err(_) => watching = false,
                    },
                    message = stream.next() => {
                        let Some(message) = message else { break };
                        let Some(listener) = weak.upgrade() else { return };
                        let channel = message.get_channel_name();
                        let callers = listener.lock().remove(channel);
                        if callers.is_some() && !listener.is_fixed(channel) {
                            // Its callers are answered: nobody listens to it any more.
                            let _ = listener.left.send(channel.to_owned());
                        }
                        for (_, announce) in callers.into_iter().flatten() {
                            let _ = announce.send(());
                        }
                    }
                }
            }
            // The connection is gone or on the old primary: callers learn it from their
            // dropped senders.
            if let Some(listener) = weak.upgrade() {
                listener.kill();
            }
        });
        let weak: Weak<Listener> = Arc::downgrade(&listener);
        tokio::spawn(async move {
            // Ends when the listener (and with it the sender) is dropped.
            while let Some(channel) = left_rx.recv().await {
                let Some(listener) = weak.upgrade() else {
                    return;
                };
                let mut sink = listener.sink.lock().await;
                if listener.lock().contains_key(&channel) {
                    continue; // a caller came back: keep it
                }
                if let Err(e) = bounded("UNSUBSCRIBE", sink.unsubscribe(&channel)).await {
                    tracing::debug!("cannot unsubscribe {channel}: {e}");
                    listener.kill();
                    return;
                }
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

    /// Takes the listener for dead: every caller is told (its sender dropped), and later ones
    /// at once. Marked under the callers' lock, so that no caller registers after the clear and
    /// waits in vain.
    fn kill(&self) {
        let mut callers = self.lock();
        self.alive.store(false, Ordering::SeqCst);
        callers.clear();
    }

    fn is_fixed(&self, channel: &str) -> bool {
        self.fixed.iter().any(|c| c == channel)
    }

    /// Whether its connection still works.
    pub(crate) fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    /// Registers a caller of `channel` and, unless it is a fixed channel, subscribes to it
    /// (returning once the server confirmed). The registration completes when the channel is
    /// announced, and fails if the connection is lost first (or already was). Dropping it
    /// unregisters the caller. A failed or unanswered `SUBSCRIBE` kills the listener.
    pub(crate) async fn register(
        self: &Arc<Self>,
        channel: &str,
    ) -> redis::RedisResult<Registration> {
        let (announce, announced) = oneshot::channel();
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        {
            let mut callers = self.lock();
            // A dead listener's map was cleared for good: drop the sender, so the caller learns.
            if self.is_alive() {
                callers
                    .entry(channel.to_owned())
                    .or_default()
                    .push((key, announce));
            }
        }
        // Made first, so that an error below unregisters the caller when it is dropped.
        let registration = Registration {
            listener: self.clone(),
            channel: channel.to_owned(),
            key,
            announced,
        };
        if self.is_alive() && !self.is_fixed(channel) {
            // Every caller subscribes (a repeated SUBSCRIBE is harmless): one that relied on
            // another caller's SUBSCRIBE still in flight could miss an announcement.
            let subscribe = async {
                let mut sink = self.sink.lock().await;
                sink.subscribe(channel).await?;
                // Answered by an earlier subscription (and unsubscribed) while this one was on
                // its way: nobody listens to the channel now, so it must not stay subscribed.
                if !self.lock().contains_key(channel) {
                    let _ = self.left.send(channel.to_owned());
                }
                Ok(())
            };
            if let Err(e) = bounded("SUBSCRIBE", subscribe).await {
                self.kill();
                return Err(e);
            }
        }
        Ok(registration)
    }

    /// Removes a caller that stopped waiting; the last one of a channel unsubscribes it.
    fn leave(&self, channel: &str, key: u64) {
        let mut callers = self.lock();
        if let Some(list) = callers.get_mut(channel) {
            list.retain(|(k, _)| *k != key);
            if list.is_empty() {
                callers.remove(channel);
                if !self.is_fixed(channel) {
                    let _ = self.left.send(channel.to_owned());
                }
            }
        }
    }

    /// How many channels have callers now (for tests).
    #[cfg(test)]
    fn channels(&self) -> usize {
        self.lock().len()
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

    /// The channels the server has subscribers for, sorted.
    async fn subscribed(conn: &mut redis::aio::MultiplexedConnection) -> Vec<String> {
        let mut channels: Vec<String> = redis::cmd("PUBSUB")
            .arg("CHANNELS")
            .query_async(conn)
            .await
            .unwrap();
        channels.sort();
        channels
    }

    #[tokio::test]
    async fn registrations_are_announced_leave_when_dropped_and_fail_once_dead() {
        let server = RedisServer::start().unwrap();
        let client = redis::Client::open(server.url()).unwrap();
        let listener = Listener::start(
            client.get_async_pubsub().await.unwrap(),
            &["t:due".to_owned()],
            tokio::sync::watch::channel(0).1,
        )
        .await
        .unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        assert_eq!(subscribed(&mut conn).await, ["t:due"]);

        // A registration subscribes its channel before it returns; given up callers leave no
        // entry behind, and the last one's channel is unsubscribed.
        let a = listener.register("t:a").await.unwrap();
        let b = listener.register("t:a").await.unwrap();
        assert_eq!(subscribed(&mut conn).await, ["t:a", "t:due"]);
        drop(a);
        assert_eq!(listener.lock().get("t:a").map(Vec::len), Some(1));
        drop(b);
        assert_eq!(listener.channels(), 0);
        let started = std::time::Instant::now();
        while subscribed(&mut conn).await != ["t:due"] {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "t:a stays subscribed"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        // An announcement reaches the callers of its channel, fixed or not.
        let mut c = listener.register("t:c").await.unwrap();
        let mut due = listener.register("t:due").await.unwrap();
        for channel in ["t:c", "t:due"] {
            let _: i64 = redis::cmd("PUBLISH")
                .arg(channel)
                .arg("1")
                .query_async(&mut conn)
                .await
                .unwrap();
        }
        let got = tokio::time::timeout(Duration::from_secs(10), c.announced()).await;
        assert!(matches!(got, Ok(Ok(()))), "{got:?}");
        let got = tokio::time::timeout(Duration::from_secs(10), due.announced()).await;
        assert!(matches!(got, Ok(Ok(()))), "{got:?}");
        // Answered channels are unsubscribed; the fixed one stays.
        let started = std::time::Instant::now();
        while subscribed(&mut conn).await != ["t:due"] {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "t:c stays subscribed"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        // Once the connection is gone, callers fail at once, even those registering later.
        let mut d = listener.register("t:d").await.unwrap();
        assert_eq!(server.kill_pubsub_clients(), Ok(1));
        let got = tokio::time::timeout(Duration::from_secs(10), d.announced()).await;
        assert!(matches!(got, Ok(Err(_))), "{got:?}");
        assert!(!listener.is_alive());
        // A dead listener sends no SUBSCRIBE: the registration fails when awaited.
        let mut e = listener.register("t:e").await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), e.announced()).await;
        assert!(matches!(got, Ok(Err(_))), "{got:?}");
    }
}
