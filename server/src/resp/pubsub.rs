//! Pub/sub. Keyspace notifications (`__keyspace@0__:<key>` with the event, and
//! `__keyevent@0__:<event>` with the key) come from the watch feed: only committed changes,
//! expiry included, in log order, on every node alike. The event names the kind of change
//! (`set`, `hset`, `del`, `expired`, `expire`, `persist`), not the command that made it.
//! PUBLISH reaches the subscribers connected to the same node only: messages are not
//! replicated (as in a Redis without cluster bus). Like Redis, delivery is at most once: a
//! subscriber that falls behind loses messages.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use paxkv_core::kv::redis::glob::glob_match;
use paxkv_proto::client::{EventKind, ValueType, WatchEvent};
use paxkv_proto::resp::{Protocol, Reply};
use tokio::sync::mpsc;

use super::connection::Conn;
use crate::watch::{Batch, Feed};

/// What one connection listens to.
struct Interest {
    channels: BTreeSet<Vec<u8>>,
    patterns: BTreeSet<Vec<u8>>,
    protocol: Protocol,
}

struct Subscriber {
    interest: Mutex<Interest>,
    pushes: mpsc::Sender<(Reply, Protocol)>,
}

impl Subscriber {
    /// Delivers `message` on `channel` if this subscriber listens; how many times it did.
    fn deliver(&self, channel: &[u8], message: &[u8]) -> usize {
        let interest = self
            .interest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let protocol = interest.protocol;
        let mut delivered = 0;
        let mut push = |reply: Reply| {
            // A subscriber that does not read loses what does not fit (at most once).
            if self.pushes.try_send((reply, protocol)).is_ok() {
                delivered += 1;
            }
        };
        if interest.channels.contains(channel) {
            push(Reply::Push(vec![
                Reply::bulk("message"),
                Reply::bulk(channel),
                Reply::bulk(message),
            ]));
        }
        for pattern in &interest.patterns {
            if glob_match(pattern, channel) {
                push(Reply::Push(vec![
                    Reply::bulk("pmessage"),
                    Reply::bulk(pattern.clone()),
                    Reply::bulk(channel),
                    Reply::bulk(message),
                ]));
            }
        }
        delivered
    }
}

/// Every subscribed connection of this node, for PUBLISH.
#[derive(Default)]
pub(super) struct Channels {
    subscribers: Mutex<BTreeMap<u64, Arc<Subscriber>>>,
}

impl Channels {
    /// Delivers to this node's subscribers; how many received it.
    pub(super) fn publish(&self, channel: &[u8], message: &[u8]) -> usize {
        let subscribers: Vec<Arc<Subscriber>> = self
            .subscribers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        subscribers
            .iter()
            .map(|subscriber| subscriber.deliver(channel, message))
            .sum()
    }
}

/// A connection's subscriptions.
pub(super) struct Subscriptions {
    subscriber: Arc<Subscriber>,
    /// The task that turns the feed into keyspace notifications, while any subscription is on.
    keyspace: Option<tokio::task::AbortHandle>,
}

impl Subscriptions {
    pub(super) fn new(pushes: mpsc::Sender<(Reply, Protocol)>) -> Subscriptions {
        Subscriptions {
            subscriber: Arc::new(Subscriber {
                interest: Mutex::new(Interest {
                    channels: BTreeSet::new(),
                    patterns: BTreeSet::new(),
                    protocol: Protocol::Resp2,
                }),
                pushes,
            }),
            keyspace: None,
        }
    }

    pub(super) fn channel_count(&self) -> usize {
        self.subscriber
            .interest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .channels
            .len()
    }

    pub(super) fn pattern_count(&self) -> usize {
        self.subscriber
            .interest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .patterns
            .len()
    }

    fn count(&self) -> usize {
        let interest = self
            .subscriber
            .interest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        interest.channels.len() + interest.patterns.len()
    }

    /// True while the connection listens to anything.
    pub(super) fn active(&self) -> bool {
        self.count() > 0
    }

    /// Stops listening (RESET, or the connection ends).
    pub(super) fn clear(&mut self) {
        let mut interest = self
            .subscriber
            .interest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        interest.channels.clear();
        interest.patterns.clear();
        drop(interest);
        self.stop();
    }

    pub(super) fn stop(&mut self) {
        if let Some(task) = self.keyspace.take() {
            task.abort();
        }
    }
}

impl Conn {
    /// SUBSCRIBE, PSUBSCRIBE, UNSUBSCRIBE, PUNSUBSCRIBE: one confirmation per name.
    pub(super) async fn subscription(&mut self, command: &str, names: &[Vec<u8>]) {
        let patterns = command.starts_with('p');
        let adding = !command.contains("unsubscribe");
        let subscriber = self.subscriptions.subscriber.clone();
        let mut confirmations = Vec::new();
        {
            let mut interest = subscriber
                .interest
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            interest.protocol = self.protocol;
            let targets: Vec<Vec<u8>> = match (adding, names.is_empty()) {
                (false, true) => {
                    let set = if patterns {
                        &interest.patterns
                    } else {
                        &interest.channels
                    };
                    set.iter().cloned().collect()
                }
                _ => names.to_vec(),
            };
            for name in &targets {
                let set = if patterns {
                    &mut interest.patterns
                } else {
                    &mut interest.channels
                };
                if adding {
                    set.insert(name.clone());
                } else {
                    set.remove(name);
                }
                let count = interest.channels.len() + interest.patterns.len();
                confirmations.push(Reply::Push(vec![
                    Reply::bulk(command.as_bytes()),
                    Reply::bulk(name.clone()),
                    Reply::Integer(count as i64),
                ]));
            }
            if targets.is_empty() {
                // Redis confirms an UNSUBSCRIBE of nothing with a null name.
                confirmations.push(Reply::Push(vec![
                    Reply::bulk(command.as_bytes()),
                    Reply::Null,
                    Reply::Integer(0),
                ]));
            }
        }
        self.register(&subscriber);
        if self.subscriptions.active() && self.subscriptions.keyspace.is_none() {
            let task = tokio::spawn(keyspace(self.shared.feed.clone(), subscriber));
            self.subscriptions.keyspace = Some(task.abort_handle());
        } else if !self.subscriptions.active() {
            self.subscriptions.stop();
        }
        for confirmation in confirmations {
            self.reply(confirmation).await;
        }
    }
}

impl Conn {
    /// Stops every subscription (RESET, or the connection ends).
    pub(super) fn clear_subscriptions(&mut self) {
        self.subscriptions.clear();
        let subscriber = self.subscriptions.subscriber.clone();
        self.register(&subscriber);
    }

    /// Lists the connection among the node's subscribers while it listens to anything.
    fn register(&self, subscriber: &Arc<Subscriber>) {
        let mut channels = self
            .shared
            .channels
            .subscribers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.subscriptions.active() {
            channels.insert(self.id, subscriber.clone());
        } else {
            channels.remove(&self.id);
        }
    }
}

/// The events a change is announced as: a write that also gives the key a new deadline is
/// `set` (or `hset`) then `expire`, as Redis announces SET with EX.
fn event_names(event: &WatchEvent) -> &'static [&'static str] {
    match EventKind::try_from(event.kind) {
        Ok(EventKind::Expire) => &["expired"],
        Ok(EventKind::Delete) => &["del"],
        _ => {
            let Some(kv) = &event.kv else { return &[] };
            let previous_deadline = event.prev_kv.as_ref().map_or(0, |prev| prev.expires_at_ms);
            let new_deadline = kv.expires_at_ms != 0 && kv.expires_at_ms != previous_deadline;
            let hash = kv.value_type() == ValueType::Hash;
            match (kv.mod_revision != event.revision, new_deadline, hash) {
                // A change of the deadline alone keeps the key's revision.
                (true, _, _) if kv.expires_at_ms == 0 => &["persist"],
                (true, _, _) => &["expire"],
                (false, true, true) => &["hset", "expire"],
                (false, true, false) => &["set", "expire"],
                (false, false, true) => &["hset"],
                (false, false, false) => &["set"],
            }
        }
    }
}

/// Turns committed changes into keyspace notifications for one subscriber.
async fn keyspace(feed: Feed, subscriber: Arc<Subscriber>) {
    let mut batches = feed.subscribe();
    loop {
        let batch = match batches.recv().await {
            Ok(batch) => batch,
            // Fell behind: what was missed is lost, as Redis drops what a slow client misses.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        let Batch::Changes { events, .. } = &*batch else {
            continue;
        };
        for event in events {
            let Some(kv) = &event.kv else { continue };
            for name in event_names(event) {
                let mut channel = b"__keyspace@0__:".to_vec();
                channel.extend_from_slice(&kv.key);
                subscriber.deliver(&channel, name.as_bytes());
                let channel = format!("__keyevent@0__:{name}");
                subscriber.deliver(channel.as_bytes(), &kv.key);
            }
        }
    }
}
