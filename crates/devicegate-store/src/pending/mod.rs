//! Pending grants' poll state held in memory, so that a pending poll (nearly all of a device
//! flow's traffic) reads and writes no database.
//!
//! An entry holds what RFC 8628 §3.5 needs to answer a poll of a pending grant: whose grant
//! it is, when it expires, and its [`PollPace`]. Two kinds of store keep such entries, with
//! different rules, so each has its own type over the machinery in this file ([`Shards`]:
//! 16 shards of entries keyed by device-code hash, and the table of grant owners):
//! - [`OwnerIndex`] (`owner.rs`, SQLite): the only process writing the database. Its word is
//!   part of every grant's version: an entry builds on the stored version, held polls count
//!   in every compare-and-swap, and every committed write of a grant replaces or removes its
//!   entry.
//! - [`SharedCache`] (`shared.rs`, PostgreSQL): one of several instances sharing a database,
//!   a cache beside the others. The database version alone decides compare-and-swap; an
//!   entry answers only between a database compare-and-swap that admitted it and the next
//!   announcement of a change to its grant, and instances tell each other their polls' pace.
//!
//! About 120 bytes per pending grant (a 32-byte key, a 48-byte entry, the hash table's
//! slack), sharded 16 ways so that polls on different cores rarely meet on a lock.

mod owner;
mod shared;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Mutex, MutexGuard, RwLock};

use devicegate_core::grant::{DeviceGrant, Paced, PollPace};
use devicegate_core::{SecretHash, Timestamp};

use crate::{HeldPoll, PollBy};

pub(crate) use owner::{Loaded, OwnerIndex};
pub(crate) use shared::SharedCache;

const SHARDS: usize = 16;
/// `last_poll_at` of a grant never polled.
const NEVER: i64 = i64::MIN;

/// The poll state of one pending grant.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The grant's row in the database (SQLite's rowid; unused on PostgreSQL).
    row: i64,
    /// The stored version this entry builds on.
    base: i64,
    /// Polls recorded since; readers see version `base + polls`.
    polls: u32,
    /// Index into the owner table: the grant's tenant and client.
    owner: u32,
    expires_at: i64,
    last_poll_at: i64,
    interval_secs: u32,
    dirty: Dirty,
    /// May answer polls (owner and expiry known and current). Entries that only carry pace
    /// learnt from other instances, or whose grant changed, do not. Always set in an
    /// [`OwnerIndex`].
    answerable: bool,
}

/// What an entry holds that the database does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Dirty {
    Clean,
    /// A newer poll time: written when the store closes.
    Polled,
    /// A longer interval after `slow_down`: written at the next flush.
    Interval,
}

impl Entry {
    fn pace(&self) -> PollPace {
        PollPace {
            interval_secs: self.interval_secs,
            last_poll_at: (self.last_poll_at != NEVER)
                .then(|| Timestamp::from_millis(self.last_poll_at)),
        }
    }

    fn set_pace(&mut self, pace: PollPace) {
        self.interval_secs = pace.interval_secs;
        self.last_poll_at = pace.last_poll_at.map_or(NEVER, Timestamp::as_millis);
    }

    fn version(&self) -> i64 {
        self.base + i64::from(self.polls)
    }

    /// Answers a poll at `now` of the grant this entry holds, recording it (RFC 8628 §3.5,
    /// with core's [`PollPace`] rule).
    fn poll(&mut self, now: Timestamp) -> HeldPoll {
        if now.as_millis() >= self.expires_at {
            return HeldPoll::Expired;
        }
        let mut pace = self.pace();
        let paced = pace.poll(now);
        self.set_pace(pace);
        self.polls += 1;
        self.dirty = self.dirty.max(match paced {
            Paced::Pending => Dirty::Polled,
            Paced::SlowDown { .. } => Dirty::Interval,
        });
        HeldPoll::Paced(paced)
    }
}

/// Keys are SHA-256 outputs of server-generated secrets: their first bytes are already a
/// uniform hash, and nobody outside chooses which keys get inserted.
#[derive(Default)]
struct FirstBytes(u64);

impl Hasher for FirstBytes {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // The derived `Hash` of `[u8; 32]` writes the bytes in one call (after a length,
        // which is the same for every key).
        if let Some(head) = bytes.get(..8) {
            self.0 = u64::from_le_bytes(head.try_into().unwrap_or_default());
        }
    }
}

impl std::fmt::Debug for FirstBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FirstBytes")
    }
}

type Shard = HashMap<SecretHash, Entry, BuildHasherDefault<FirstBytes>>;

/// A grant's poll state as the database has it, for writing back.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Unwritten {
    pub hash: SecretHash,
    pub row: i64,
    pub base: i64,
    pub pace: PollPace,
    /// The interval grew (`slow_down`) since the pace was last taken.
    pub lengthened: bool,
}

/// The entries, sharded by device-code hash, and the owners they name: what both kinds of
/// index are made of.
#[derive(Debug, Default)]
struct Shards {
    shards: [Mutex<Shard>; SHARDS],
    /// `(tenant, client_id)` by owner index; a handful of rows, never shrunk.
    owners: RwLock<Vec<(Box<str>, Box<str>)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn shard_of(hash: &SecretHash) -> usize {
    usize::from(hash.as_bytes()[31]) % SHARDS
}

impl Shards {
    fn shard(&self, hash: &SecretHash) -> MutexGuard<'_, Shard> {
        lock(&self.shards[shard_of(hash)])
    }

    fn owner(&self, tenant: &str, client_id: &str) -> u32 {
        let matches = |(t, c): &(Box<str>, Box<str>)| &**t == tenant && &**c == client_id;
        if let Some(i) = self
            .owners
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .position(matches)
        {
            return i as u32;
        }
        let mut owners = self.owners.write().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = owners.iter().position(matches) {
            return i as u32;
        }
        owners.push((tenant.into(), client_id.into()));
        (owners.len() - 1) as u32
    }

    fn is_owner(&self, owner: u32, tenant: &str, client_id: &str) -> bool {
        let owners = self.owners.read().unwrap_or_else(|p| p.into_inner());
        owners
            .get(owner as usize)
            .is_some_and(|(t, c)| &**t == tenant && &**c == client_id)
    }

    /// Answers a poll by `client_id` of `tenant` from memory, recording it, if the grant is
    /// held here, is theirs, and its entry `answers`.
    fn poll(
        &self,
        by: PollBy<'_>,
        now: Timestamp,
        answers: impl FnOnce(&Entry) -> bool,
    ) -> Option<HeldPoll> {
        let mut shard = self.shard(by.hash);
        let e = shard.get_mut(by.hash)?;
        if !answers(e) || !self.is_owner(e.owner, by.tenant, by.client_id) {
            return None;
        }
        Some(e.poll(now))
    }

    /// The entry of grant `g`, stored at version `stored`.
    fn entry_for(&self, g: &DeviceGrant, stored: i64) -> Entry {
        self.new_entry(&g.tenant, &g.client_id, stored, g.expires_at, g.pace())
    }

    fn new_entry(
        &self,
        tenant: &str,
        client_id: &str,
        version: i64,
        expires_at: Timestamp,
        pace: PollPace,
    ) -> Entry {
        let mut e = Entry {
            row: 0,
            base: version,
            polls: 0,
            owner: self.owner(tenant, client_id),
            expires_at: expires_at.as_millis(),
            last_poll_at: NEVER,
            interval_secs: 0,
            dirty: Dirty::Clean,
            answerable: true,
        };
        e.set_pace(pace);
        e
    }

    /// Drops entries that satisfy `gone`.
    fn forget(&self, gone: impl Fn(&Entry) -> bool) {
        for shard in &self.shards {
            lock(shard).retain(|_, e| !gone(e));
        }
    }

    /// Poll state the database lacks: entries marked at least `at_least` dirty (a lengthened
    /// interval only, or every poll time), marked clean as they are taken.
    fn take_dirty(&self, at_least: Dirty) -> Vec<Unwritten> {
        let mut out = Vec::new();
        for shard in &self.shards {
            for (hash, e) in lock(shard).iter_mut() {
                if e.dirty >= at_least {
                    out.push(Unwritten {
                        hash: *hash,
                        row: e.row,
                        base: e.base,
                        pace: e.pace(),
                        lengthened: e.dirty == Dirty::Interval,
                    });
                    e.dirty = Dirty::Clean;
                }
            }
        }
        out
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }
}

#[cfg(test)]
mod test_support {
    use devicegate_core::Timestamp;
    use devicegate_core::grant::DeviceGrant;

    pub const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);

    pub fn grant() -> DeviceGrant {
        DeviceGrant::example_pending("cli", NOW)
    }

    pub fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(NOW.as_millis() + ms)
    }
}
