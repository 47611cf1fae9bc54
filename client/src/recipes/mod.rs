//! Recipes built on leases, transactions and watches, which people otherwise get wrong: a
//! mutual exclusion [`lock`](crate::Client::lock) and a leader [`election`](crate::Client::election).
//!
//! Both rest on one queue. A contender grants a lease, kept alive in the background, and
//! creates its own key `NAME/<lease id>` under it. Keys are served in the order of their create
//! revisions: a contender's turn comes when no key created before its own is left, and it
//! waits for that by watching the key just ahead of it (not by polling, and without waking
//! every waiter when one leaves). If the contender dies, its lease runs out and its key goes,
//! so the queue moves on without it.
//!
//! The create revision of the holder's key is its **fencing token**: it only grows from one
//! holder to the next. A holder can lose its lease (a long pause, a partition) and, until it
//! notices, still believe it holds the lock; the token lets whatever it writes to refuse it. To
//! paxkv itself, write with a transaction that carries [`Held::held`] as a compare; to another
//! system, send the token and have it refuse any token lower than the highest it has seen.

mod election;
mod lock;
mod queue;

pub use election::{Election, Leadership, Observer};
pub use lock::{LockGuard, LockOptions};
pub use queue::Held;
