//! [`SharedCache`]: poll state of pending grants held by one of several instances sharing a
//! database (PostgreSQL), a cache beside the others.
//!
//! Held polls are not part of compare-and-swap (the database version is). An entry answers
//! only after a database compare-and-swap admitted it and until any instance announces a
//! change to its grant; a per-shard invalidation counter (the epoch), read before the
//! database and checked at admission, keeps an admission from resurrecting a grant decided
//! meanwhile, and while the instance does not hear the others (deaf) nothing answers.
//! Instances tell each other their polls' pace in batches ([`SharedCache::merge_remote`]),
//! so that `slow_down` holds whichever instance a device polls.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};

use devicegate_core::grant::{DeviceGrant, PollPace};
use devicegate_core::{SecretHash, Timestamp};

use super::{Dirty, Entry, NEVER, SHARDS, Shards, Unwritten, lock, shard_of};
use crate::{HeldPoll, PollBy};

/// One of several instances sharing a database: entries are a cache, and the database
/// version alone decides compare-and-swap.
#[derive(Debug)]
pub(crate) struct SharedCache {
    entries: Shards,
    /// Per shard, how many times an entry of it was made unanswerable: an admission checks
    /// that none was since it read the database.
    invalidations: [AtomicU64; SHARDS],
    /// Not hearing the other instances (no `LISTEN`, or it went silent): nothing answers or
    /// is admitted, since a change elsewhere would go unnoticed. Deaf until first told it
    /// listens.
    deaf: AtomicBool,
}

impl Default for SharedCache {
    fn default() -> SharedCache {
        SharedCache {
            entries: Shards::default(),
            invalidations: Default::default(),
            deaf: true.into(),
        }
    }
}

fn merged(a: PollPace, b: PollPace) -> PollPace {
    PollPace {
        interval_secs: a.interval_secs.max(b.interval_secs),
        last_poll_at: a.last_poll_at.max(b.last_poll_at),
    }
}

impl Entry {
    /// Takes the later poll and the longer interval of the two.
    fn merge_pace(&mut self, other: PollPace) {
        let mine = self.pace();
        self.set_pace(merged(mine, other));
    }
}

impl SharedCache {
    /// Whether this instance hears the others' announcements. Either way, every entry stops
    /// answering until admitted again (announcements may have been missed).
    pub fn set_listening(&self, listening: bool) {
        if !listening {
            self.deaf.store(true, Relaxed);
        }
        self.invalidate_all();
        if listening {
            self.deaf.store(false, Relaxed);
        }
    }

    /// Answers a poll by `client_id` of `tenant` from memory, recording it; `None` when the
    /// grant is not held here, not admitted, or is another client's, or when this instance
    /// is deaf (the caller decides from the database).
    pub fn poll(&self, by: PollBy<'_>, now: Timestamp) -> Option<HeldPoll> {
        self.entries
            .poll(by, now, |e| e.answerable && !self.deaf.load(Relaxed))
    }

    /// Overlays a grant read from the database with the pace held here: the latest poll and
    /// longest interval any instance told of. The version stays the database's.
    pub fn overlay(&self, g: &mut DeviceGrant) {
        let shard = self.entries.shard(&g.device_code_hash);
        let Some(e) = shard.get(&g.device_code_hash) else {
            return;
        };
        let pace = merged(g.pace(), e.pace());
        (g.interval_secs, g.last_poll_at) = (pace.interval_secs, pace.last_poll_at);
    }

    /// How many invalidations `hash`'s shard has seen; read before the database, handed to
    /// [`SharedCache::admit`].
    pub fn epoch(&self, hash: &SecretHash) -> u64 {
        let _shard = self.entries.shard(hash);
        self.invalidations[shard_of(hash)].load(Relaxed)
    }

    /// After a compare-and-swap in the database proved `g` pending at version `stored`, lets
    /// its entry answer polls, unless an invalidation arrived since `epoch` (it might be of a
    /// change made after that compare-and-swap). `polled`: that compare-and-swap recorded a
    /// poll, which the other instances are then told of.
    pub fn admit(&self, g: &DeviceGrant, stored: i64, epoch: u64, polled: bool) {
        let i = shard_of(&g.device_code_hash);
        let mut shard = lock(&self.entries.shards[i]);
        // Invalidations count under the shard lock, so this compare is exact.
        if self.invalidations[i].load(Relaxed) != epoch || self.deaf.load(Relaxed) {
            return;
        }
        let mut e = self.entries.entry_for(g, stored);
        if let Some(old) = shard.get(&g.device_code_hash) {
            e.merge_pace(old.pace());
            e.dirty = old.dirty;
        }
        if polled {
            e.dirty = e.dirty.max(Dirty::Polled);
        }
        shard.insert(g.device_code_hash, e);
    }

    /// `hash`'s grant changed somewhere; its entry keeps the pace but no longer answers until
    /// admitted again.
    pub fn invalidate(&self, hash: &SecretHash) {
        let i = shard_of(hash);
        let mut shard = lock(&self.entries.shards[i]);
        self.invalidations[i].fetch_add(1, Relaxed);
        if let Some(e) = shard.get_mut(hash) {
            e.answerable = false;
        }
    }

    /// Every grant may have changed (announcements were missed, or grants deleted).
    pub fn invalidate_all(&self) {
        for (i, shard) in self.entries.shards.iter().enumerate() {
            let mut shard = lock(shard);
            self.invalidations[i].fetch_add(1, Relaxed);
            for e in shard.values_mut() {
                e.answerable = false;
            }
        }
    }

    /// Another instance's polls of `hash`; kept even without an entry here, so that this
    /// instance's first poll of the grant, read from the database, paces right.
    pub fn merge_remote(&self, hash: SecretHash, pace: PollPace) {
        let mut shard = self.entries.shard(&hash);
        match shard.get_mut(&hash) {
            Some(e) => e.merge_pace(pace),
            None => {
                let mut e = Entry {
                    row: 0,
                    base: 0,
                    polls: 0,
                    owner: u32::MAX,
                    expires_at: i64::MAX,
                    last_poll_at: NEVER,
                    interval_secs: 0,
                    dirty: Dirty::Clean,
                    answerable: false,
                };
                e.set_pace(pace);
                shard.insert(hash, e);
            }
        }
    }

    /// Forgets entries of grants expired before `before`, and pace learnt from other
    /// instances last polled before it.
    pub fn prune(&self, before: Timestamp) {
        let before = before.as_millis();
        self.entries
            .forget(|e| e.expires_at < before || (e.owner == u32::MAX && e.last_poll_at < before));
    }

    /// The pace of this instance's polls since last taken, to tell the other instances.
    pub fn take_all_dirty(&self) -> Vec<Unwritten> {
        self.entries.take_dirty(Dirty::Polled)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{NOW, at, grant};
    use super::*;
    use devicegate_core::grant::Paced;

    #[test]
    fn shared_entries_answer_only_between_admission_and_invalidation() {
        let index = SharedCache::default();
        index.set_listening(true);
        let g = grant();
        let hash = g.device_code_hash;
        assert_eq!(index.poll(PollBy::new(&hash, &g.tenant, "cli"), NOW), None);
        let epoch = index.epoch(&hash);
        index.admit(&g, g.version, epoch, false);
        assert_eq!(
            index.poll(PollBy::new(&hash, &g.tenant, "cli"), NOW),
            Some(HeldPoll::Paced(Paced::Pending))
        );
        index.invalidate(&hash);
        assert_eq!(
            index.poll(PollBy::new(&hash, &g.tenant, "cli"), at(10_000)),
            None
        );
        // An admission whose database read came before that invalidation is refused: the
        // grant may have been decided after the read.
        index.admit(&g, g.version, epoch, false);
        assert_eq!(
            index.poll(PollBy::new(&hash, &g.tenant, "cli"), at(10_000)),
            None
        );
        index.admit(&g, g.version, index.epoch(&hash), false);
        assert!(
            index
                .poll(PollBy::new(&hash, &g.tenant, "cli"), at(10_000))
                .is_some()
        );
        index.invalidate_all();
        assert_eq!(
            index.poll(PollBy::new(&hash, &g.tenant, "cli"), at(20_000)),
            None
        );
        // Deaf to the other instances: nothing answers or is admitted until listening again.
        index.admit(&g, g.version, index.epoch(&hash), false);
        index.set_listening(false);
        assert_eq!(
            index.poll(PollBy::new(&hash, &g.tenant, "cli"), at(30_000)),
            None
        );
        index.admit(&g, g.version, index.epoch(&hash), false);
        assert_eq!(
            index.poll(PollBy::new(&hash, &g.tenant, "cli"), at(30_000)),
            None
        );
        index.set_listening(true);
        assert_eq!(
            index.poll(PollBy::new(&hash, &g.tenant, "cli"), at(30_000)),
            None
        );
        index.admit(&g, g.version, index.epoch(&hash), false);
        assert!(
            index
                .poll(PollBy::new(&hash, &g.tenant, "cli"), at(30_000))
                .is_some()
        );
    }

    #[test]
    fn shared_entries_keep_the_pace_other_instances_report() {
        let index = SharedCache::default();
        index.set_listening(true);
        let g = grant();
        let hash = g.device_code_hash;
        // Another instance's poll, heard before this instance ever read the grant.
        let remote = PollPace {
            interval_secs: 10,
            last_poll_at: Some(at(1_000)),
        };
        index.merge_remote(hash, remote);
        assert_eq!(
            index.poll(PollBy::new(&hash, &g.tenant, "cli"), at(2_000)),
            None
        );
        let mut read = g.clone();
        index.overlay(&mut read);
        assert_eq!((read.pace(), read.version), (remote, g.version));
        // Admitted with an older pace, the entry keeps the later poll and longer interval.
        index.admit(&g, g.version, index.epoch(&hash), false);
        assert_eq!(
            index.poll(PollBy::new(&hash, &g.tenant, "cli"), at(5_000)),
            Some(HeldPoll::Paced(Paced::SlowDown { interval_secs: 15 }))
        );
        // What this instance recorded is taken once, to be sent to the others. (Compare-and-
        // swap is the database's alone here: a `SharedCache` has no `expected_version`.)
        let sent = index.take_all_dirty();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].pace.last_poll_at, Some(at(5_000)));
        assert!(sent[0].lengthened);
        assert!(index.take_all_dirty().is_empty());
    }
}
