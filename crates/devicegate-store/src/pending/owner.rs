//! [`OwnerIndex`]: every pending grant's poll state, held by the store that owns the database
//! (SQLite).
//!
//! The database stays the authority on decisions: an entry builds on the grant's stored
//! version (`base`), every committed write of a grant replaces or removes its entry before
//! the writer answers, and a compare-and-swap of a grant compares against `base` plus the
//! polls held here. Poll times reach the database only when they matter beyond this process:
//! a lengthened interval at once, the rest when the store closes.

use devicegate_core::grant::{DeviceGrant, GrantStatus, PollPace};
use devicegate_core::{SecretHash, Timestamp};

use super::{Dirty, Entry, Shard, Shards, Unwritten, lock, shard_of};
use crate::{HeldPoll, PollBy, StoreError};

/// A pending grant as loaded from the database.
pub(crate) struct Loaded {
    pub hash: SecretHash,
    pub row: i64,
    pub version: i64,
    pub tenant: String,
    pub client_id: String,
    pub expires_at: Timestamp,
    pub pace: PollPace,
}

/// The only process writing the database: held polls are part of every grant's version, and
/// every committed write of a grant updates its entry.
#[derive(Debug, Default)]
pub(crate) struct OwnerIndex {
    entries: Shards,
}

impl OwnerIndex {
    fn entry(&self, g: &Loaded) -> Entry {
        let mut e =
            self.entries
                .new_entry(&g.tenant, &g.client_id, g.version, g.expires_at, g.pace);
        e.row = g.row;
        e
    }

    /// Answers a poll by `client_id` of `tenant` from memory, recording it; `None` when the
    /// grant is not held here or is another client's (the caller decides from the database).
    pub fn poll(&self, by: PollBy<'_>, now: Timestamp) -> Option<HeldPoll> {
        self.entries.poll(by, now, |_| true)
    }

    /// Overlays a grant read from the database with the polls held here, when the entry
    /// builds on the version read. (An entry on an older version is about to be replaced by
    /// the write that made the newer one; a read older than the entry sees no polls and
    /// will lose any compare-and-swap.)
    pub fn overlay(&self, g: &mut DeviceGrant) {
        let shard = self.entries.shard(&g.device_code_hash);
        let Some(e) = shard.get(&g.device_code_hash) else {
            return;
        };
        if e.base == g.version {
            g.version = e.version();
            g.interval_secs = e.interval_secs;
            g.last_poll_at = e.pace().last_poll_at;
        }
    }

    /// For a compare-and-swap of `g`: the stored version it must find, or `Conflict` when
    /// polls held here changed the grant since `g` was read.
    pub fn expected_version(&self, g: &DeviceGrant) -> Result<i64, StoreError> {
        match self
            .entries
            .shard(&g.device_code_hash)
            .get(&g.device_code_hash)
        {
            Some(e) if e.version() != g.version => Err(StoreError::Conflict),
            Some(e) => Ok(e.base),
            None => Ok(g.version),
        }
    }

    /// A poll recorded through the database path (`record_poll`): compare-and-swap against
    /// the entry. `Ok(false)` when there is no entry.
    pub fn record(&self, g: &DeviceGrant) -> Result<bool, StoreError> {
        let mut shard = self.entries.shard(&g.device_code_hash);
        let Some(e) = shard.get_mut(&g.device_code_hash) else {
            return Ok(false);
        };
        if e.version() != g.version {
            return Err(StoreError::Conflict);
        }
        let lengthened = g.interval_secs != e.interval_secs;
        e.set_pace(g.pace());
        e.polls += 1;
        e.dirty = e.dirty.max(if lengthened {
            Dirty::Interval
        } else {
            Dirty::Polled
        });
        Ok(true)
    }

    /// After a committed write that stored `g` at version `stored` (in `row`, when the caller
    /// knows it): holds it while it is pending, forgets it once decided.
    pub fn written(&self, g: &DeviceGrant, stored: i64, row: Option<i64>) {
        let mut shard = self.entries.shard(&g.device_code_hash);
        let row = row.or_else(|| shard.get(&g.device_code_hash).map(|e| e.row));
        match row {
            Some(row) if g.status == GrantStatus::Pending => {
                let mut e = self.entries.entry_for(g, stored);
                e.row = row;
                shard.insert(g.device_code_hash, e);
            }
            // Decided; or not held and its row unknown, when the next poll reads it.
            _ => {
                shard.remove(&g.device_code_hash);
            }
        }
    }

    /// A poll recorded through the database path for a grant not held (read at stored
    /// version `stored`, in `row`): held from now on, the poll counted in its version.
    /// `Conflict` if another poll got it held first.
    pub fn adopt(&self, g: &DeviceGrant, stored: i64, row: i64) -> Result<(), StoreError> {
        let mut shard = self.entries.shard(&g.device_code_hash);
        if shard.contains_key(&g.device_code_hash) {
            return Err(StoreError::Conflict);
        }
        let mut e = self.entries.entry_for(g, stored);
        (e.row, e.polls, e.dirty) = (row, 1, Dirty::Polled);
        shard.insert(g.device_code_hash, e);
        Ok(())
    }

    /// Replaces the whole index with `loaded` (every pending grant in the database), keeping
    /// the polls held for grants whose stored version has not changed.
    pub fn reload(&self, loaded: Vec<Loaded>) {
        let mut fresh: [Shard; super::SHARDS] = Default::default();
        for g in &loaded {
            fresh[shard_of(&g.hash)].insert(g.hash, self.entry(g));
        }
        for (shard, mut new) in self.entries.shards.iter().zip(fresh) {
            let mut shard = lock(shard);
            for (hash, e) in new.iter_mut() {
                if let Some(old) = shard.get(hash)
                    && old.base == e.base
                {
                    // The polls held here, at the row the database has now.
                    *e = Entry { row: e.row, ..*old };
                }
            }
            *shard = new;
        }
    }

    /// Grants that expired before `before` were deleted.
    pub fn forget_expired(&self, before: Timestamp) {
        self.entries.forget(|e| e.expires_at < before.as_millis());
    }

    /// A client's grants (every client of the tenant when `client_id` is `None`) were deleted.
    pub fn forget_owner(&self, tenant: &str, client_id: Option<&str>) {
        let owners: Vec<u32> = {
            let owners = self
                .entries
                .owners
                .read()
                .unwrap_or_else(|p| p.into_inner());
            (0..owners.len() as u32)
                .filter(|&i| {
                    let (t, c) = &owners[i as usize];
                    &**t == tenant && client_id.is_none_or(|id| &**c == id)
                })
                .collect()
        };
        self.entries.forget(|e| owners.contains(&e.owner));
    }

    /// Lengthened intervals to write now.
    pub fn take_lengthened(&self) -> Vec<Unwritten> {
        self.entries.take_dirty(Dirty::Interval)
    }

    /// Everything to write before the process goes away.
    pub fn take_all_dirty(&self) -> Vec<Unwritten> {
        self.entries.take_dirty(Dirty::Polled)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{NOW, at, grant};
    use super::*;
    use devicegate_core::grant::{Paced, PollDecision};

    #[test]
    fn owner_entries_count_polls_in_the_version() {
        let index = OwnerIndex::default();
        let g = grant();
        index.written(&g, g.version, Some(7));
        assert!(
            index
                .poll(PollBy::new(&g.device_code_hash, &g.tenant, "cli"), NOW)
                .is_some()
        );
        assert_eq!(index.expected_version(&g), Err(StoreError::Conflict));
        let mut read = g.clone();
        index.overlay(&mut read);
        assert_eq!(read.version, g.version + 1);
        assert_eq!(index.expected_version(&read), Ok(g.version));
        let unwritten = index.take_all_dirty();
        assert_eq!((unwritten[0].row, unwritten[0].lengthened), (7, false));
        index.written(
            &read.approve("ann", NOW, None, None, NOW).unwrap(),
            g.version + 1,
            None,
        );
        assert_eq!(index.len(), 0);
    }

    #[test]
    fn owner_adopts_a_grant_polled_through_the_database_once() {
        let index = OwnerIndex::default();
        let g = grant();
        let PollDecision::Pending { next } = g.on_poll("cli", NOW) else {
            panic!()
        };
        index.adopt(&next, g.version, 3).unwrap();
        // A second poll made from the same read lost: it must read again and slow down.
        assert_eq!(index.adopt(&next, g.version, 3), Err(StoreError::Conflict));
        assert_eq!(index.expected_version(&g), Err(StoreError::Conflict));
        let mut read = g.clone();
        index.overlay(&mut read);
        assert_eq!(
            (read.version, read.last_poll_at),
            (g.version + 1, Some(NOW))
        );
        assert!(matches!(
            index.poll(PollBy::new(&g.device_code_hash, &g.tenant, "cli"), at(1)),
            Some(HeldPoll::Paced(Paced::SlowDown { .. }))
        ));
    }
}
