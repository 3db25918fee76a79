//! Following the Sentinels' decision as soon as they make it.
//!
//! A failover is not always seen as an error: a primary that is frozen (a long fork, a network
//! partition, `CLIENT PAUSE`) answers nothing until it is back, and then, until the Sentinels
//! demote it (about ten seconds later), it still takes writes — which are thrown away when it
//! becomes a replica of the new primary. So the topology does not wait for an error:
//!
//! * **Announcements.** One task per Sentinel listens to its `+switch-master` channel (a
//!   pub/sub connection each, reopened with a jittered pause when it drops). An announcement
//!   for this master name makes the topology move to the primary the Sentinels name, at once.
//! * **Looks.** [`Topology::check_primary`] asks a Sentinel which primary it names (one cheap
//!   command, at most once per [`CHECK_EVERY`]); the Redis backend does so with every worker
//!   heartbeat, and when durable mode's replicas fall short. A missed announcement is caught
//!   within a heartbeat.
//!
//! Moving replaces every lane; requests still waiting for a reply from the old primary are
//! abandoned (their connection closes, so a frozen server that comes back never runs them),
//! and pub/sub owners see [`Topology::moves`] change and subscribe again.

use std::sync::Weak;
use std::time::Duration;

use futures_util::StreamExt;
use switchyard_core::retry::Retry;
use tokio::sync::watch;

use crate::Topology;

/// Shortest time between two [`Topology::check_primary`] looks of one topology.
pub(crate) const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The parts of a `+switch-master` message: master name and the new primary's `host:port`.
fn switch_of(payload: &str) -> Option<(&str, String)> {
    let mut parts = payload.split(' ');
    let name = parts.next()?;
    let (_old_host, _old_port) = (parts.next()?, parts.next()?);
    let (host, port) = (parts.next()?, parts.next()?);
    Some((name, format!("{host}:{port}")))
}

/// Starts one listener per Sentinel of `topology`; they stop when `stop` is dropped (with the
/// topology) or the topology is gone.
pub(crate) fn listen(topology: Weak<Topology>, sentinels: usize, stop: watch::Receiver<()>) {
    for i in 0..sentinels {
        tokio::spawn(listen_to(topology.clone(), i, stop.clone()));
    }
}

async fn listen_to(topology: Weak<Topology>, i: usize, mut stop: watch::Receiver<()>) {
    let pauses = Retry::new(
        switchyard_core::rng::entropy(),
        Duration::from_millis(100),
        Duration::from_secs(5),
    );
    loop {
        let opened = {
            let Some(t) = topology.upgrade() else { return };
            let Some(sentinels) = t.sentinels() else {
                return;
            };
            let within = t.connect_timeout;
            tokio::select! {
                _ = stop.changed() => return,
                opened = sentinels.announcements(i, within) => opened,
            }
        };
        match opened {
            Ok(mut pubsub) => {
                pauses.reset();
                let mut messages = pubsub.on_message();
                loop {
                    let message = tokio::select! {
                        _ = stop.changed() => return,
                        m = messages.next() => m,
                    };
                    let Some(message) = message else { break };
                    let payload: String = message.get_payload().unwrap_or_default();
                    let Some(t) = topology.upgrade() else { return };
                    if let Some((name, to)) = switch_of(&payload)
                        && Some(name) == t.sentinels().map(|s| s.master_name())
                    {
                        t.follow(&to, "the Sentinels announced a failover").await;
                    }
                }
                tracing::debug!("lost the announcements of a Sentinel; listening again");
            }
            Err(e) => {
                if let Some(t) = topology.upgrade()
                    && let Some(sentinels) = t.sentinels()
                {
                    tracing::debug!(
                        sentinel = sentinels.sentinel(i),
                        "cannot listen to a Sentinel's announcements yet: {e}"
                    );
                }
            }
        }
        let pause = pauses.next();
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_switch_announcement_names_the_master_and_its_new_address() {
        assert_eq!(
            switch_of("jobs 127.0.0.1 7001 127.0.0.1 7002"),
            Some(("jobs", "127.0.0.1:7002".to_owned()))
        );
        assert_eq!(switch_of("jobs 127.0.0.1 7001"), None);
    }
}
