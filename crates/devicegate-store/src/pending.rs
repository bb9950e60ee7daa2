//! Every pending grant's poll state, held in memory by the store that owns the database, so
//! that a pending poll (nearly all of a device flow's traffic) reads and writes no database.
//!
//! An entry holds what RFC 8628 §3.5 needs to answer a poll of a pending grant: whose grant
//! it is, when it expires, and its [`PollPace`]. The database stays the authority on
//! decisions: an entry builds on the grant's stored version (`base`), every committed write of
//! a grant replaces or removes its entry before the writer answers, and a compare-and-swap of
//! a grant compares against `base` plus the polls held here. Poll times reach the database
//! only when they matter beyond this process: a lengthened interval at once, the rest when
//! the store closes.
//!
//! On PostgreSQL, with several instances, each instance's index is a cache beside the others
//! ([`Mode::Shared`]): held polls are not part of compare-and-swap (the database version is),
//! an entry answers only after a database compare-and-swap admitted it and until any
//! instance's `NOTIFY` of a change to its grant, and instances tell each other their polls'
//! pace in batches, so that `slow_down` holds whichever instance a device polls.
//!
//! About 120 bytes per pending grant (a 32-byte key, a 48-byte entry, the hash table's
//! slack), sharded 16 ways so that polls on different cores rarely meet on a lock.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Mutex, MutexGuard, RwLock};

use devicegate_core::grant::{DeviceGrant, GrantStatus, Paced, PollPace};
use devicegate_core::{SecretHash, Timestamp};

use crate::{HeldPoll, StoreError};

const SHARDS: usize = 16;
/// `last_poll_at` of a grant never polled.
const NEVER: i64 = i64::MIN;

/// Whose word an index is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Mode {
    /// The only process writing the database (SQLite): held polls are part of every grant's
    /// version, and every committed write of a grant updates its entry.
    #[default]
    Owner,
    /// One of several instances sharing a database (PostgreSQL): entries are a cache, and
    /// the database version alone decides compare-and-swap.
    Shared,
}

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
    /// learnt from other instances, or whose grant changed, do not.
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

    /// Takes the later poll and the longer interval of the two.
    fn merge_pace(&mut self, other: PollPace) {
        let mine = self.pace();
        self.set_pace(merged(mine, other));
    }
}

fn merged(a: PollPace, b: PollPace) -> PollPace {
    PollPace {
        interval_secs: a.interval_secs.max(b.interval_secs),
        last_poll_at: a.last_poll_at.max(b.last_poll_at),
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

#[derive(Debug, Default)]
pub(crate) struct PendingIndex {
    mode: Mode,
    shards: [Mutex<Shard>; SHARDS],
    /// Per shard, how many times an entry of it was made unanswerable: an admission checks
    /// that none was since it read the database.
    invalidations: [std::sync::atomic::AtomicU64; SHARDS],
    /// `Shared`: not hearing the other instances (no `LISTEN`, or it went silent): nothing
    /// answers or is admitted, since a change elsewhere would go unnoticed.
    deaf: std::sync::atomic::AtomicBool,
    /// `(tenant, client_id)` by owner index; a handful of rows, never shrunk.
    owners: RwLock<Vec<(Box<str>, Box<str>)>>,
}

impl std::fmt::Debug for FirstBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FirstBytes")
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn shard_of(hash: &SecretHash) -> usize {
    usize::from(hash.as_bytes()[31]) % SHARDS
}

impl PendingIndex {
    pub fn new(mode: Mode) -> PendingIndex {
        PendingIndex {
            mode,
            deaf: (mode == Mode::Shared).into(),
            ..PendingIndex::default()
        }
    }

    /// `Shared`: whether this instance hears the others' announcements. Either way, every
    /// entry stops answering until admitted again (announcements may have been missed).
    pub fn set_listening(&self, listening: bool) {
        if !listening {
            self.deaf.store(true, Relaxed);
        }
        self.invalidate_all();
        if listening {
            self.deaf.store(false, Relaxed);
        }
    }

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

    fn entry(&self, g: &Loaded) -> Entry {
        let mut e = self.new_entry(&g.tenant, &g.client_id, g.version, g.expires_at, g.pace);
        e.row = g.row;
        e
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

    /// Answers a poll by `client_id` of `tenant` from memory, recording it; `None` when the
    /// grant is not held here or is another client's (the caller decides from the database).
    pub fn poll(
        &self,
        hash: &SecretHash,
        tenant: &str,
        client_id: &str,
        now: Timestamp,
    ) -> Option<HeldPoll> {
        let mut shard = self.shard(hash);
        let e = shard.get_mut(hash)?;
        if !e.answerable || self.deaf.load(Relaxed) || !self.is_owner(e.owner, tenant, client_id) {
            return None;
        }
        if now.as_millis() >= e.expires_at {
            return Some(HeldPoll::Expired);
        }
        let mut pace = e.pace();
        let paced = pace.poll(now);
        e.set_pace(pace);
        e.polls += 1;
        e.dirty = e.dirty.max(match paced {
            Paced::Pending => Dirty::Polled,
            Paced::SlowDown { .. } => Dirty::Interval,
        });
        Some(HeldPoll::Paced(paced))
    }

    /// Overlays a grant read from the database with the polls held here, when the entry
    /// builds on the version read. (An entry on an older version is about to be replaced by
    /// the write that made the newer one; a read older than the entry sees no polls and
    /// will lose any compare-and-swap.)
    pub fn overlay(&self, g: &mut DeviceGrant) {
        let shard = self.shard(&g.device_code_hash);
        let Some(e) = shard.get(&g.device_code_hash) else {
            return;
        };
        if self.mode == Mode::Shared {
            // Pace only: the latest poll and longest interval any instance told of.
            let pace = merged(g.pace(), e.pace());
            (g.interval_secs, g.last_poll_at) = (pace.interval_secs, pace.last_poll_at);
            return;
        }
        if e.base == g.version {
            g.version = e.version();
            g.interval_secs = e.interval_secs;
            g.last_poll_at = e.pace().last_poll_at;
        }
    }

    /// For a compare-and-swap of `g`: the stored version it must find, or `Conflict` when
    /// polls held here changed the grant since `g` was read.
    pub fn expected_version(&self, g: &DeviceGrant) -> Result<i64, StoreError> {
        if self.mode == Mode::Shared {
            return Ok(g.version);
        }
        match self.shard(&g.device_code_hash).get(&g.device_code_hash) {
            Some(e) if e.version() != g.version => Err(StoreError::Conflict),
            Some(e) => Ok(e.base),
            None => Ok(g.version),
        }
    }

    /// A poll recorded through the database path (`record_poll`): compare-and-swap against
    /// the entry. `Ok(false)` when there is no entry.
    pub fn record(&self, g: &DeviceGrant) -> Result<bool, StoreError> {
        let mut shard = self.shard(&g.device_code_hash);
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

    /// `Owner`: after a committed write that stored `g` at version `stored` (in `row`, when
    /// the caller knows it): holds it while it is pending, forgets it once decided.
    pub fn written(&self, g: &DeviceGrant, stored: i64, row: Option<i64>) {
        let mut shard = self.shard(&g.device_code_hash);
        let row = row.or_else(|| shard.get(&g.device_code_hash).map(|e| e.row));
        match row {
            Some(row) if g.status == GrantStatus::Pending => {
                let mut e = self.entry_for(g, stored);
                e.row = row;
                shard.insert(g.device_code_hash, e);
            }
            // Decided; or not held and its row unknown, when the next poll reads it.
            _ => {
                shard.remove(&g.device_code_hash);
            }
        }
    }

    /// `Owner`: a poll recorded through the database path for a grant not held (read at
    /// stored version `stored`, in `row`): held from now on, the poll counted in its version.
    /// `Conflict` if another poll got it held first.
    pub fn adopt(&self, g: &DeviceGrant, stored: i64, row: i64) -> Result<(), StoreError> {
        let mut shard = self.shard(&g.device_code_hash);
        if shard.contains_key(&g.device_code_hash) {
            return Err(StoreError::Conflict);
        }
        let mut e = self.entry_for(g, stored);
        (e.row, e.polls, e.dirty) = (row, 1, Dirty::Polled);
        shard.insert(g.device_code_hash, e);
        Ok(())
    }

    /// `Shared`: how many invalidations `hash`'s shard has seen; read before the database,
    /// handed to [`PendingIndex::admit`].
    pub fn epoch(&self, hash: &SecretHash) -> u64 {
        let _shard = self.shard(hash);
        self.invalidations[shard_of(hash)].load(Relaxed)
    }

    /// `Shared`: after a compare-and-swap in the database proved `g` pending at version
    /// `stored`, lets its entry answer polls, unless an invalidation arrived since `epoch`
    /// (it might be of a change made after that compare-and-swap). `polled`: that
    /// compare-and-swap recorded a poll, which the other instances are then told of.
    pub fn admit(&self, g: &DeviceGrant, stored: i64, epoch: u64, polled: bool) {
        let i = shard_of(&g.device_code_hash);
        let mut shard = lock(&self.shards[i]);
        // Invalidations count under the shard lock, so this compare is exact.
        if self.invalidations[i].load(Relaxed) != epoch || self.deaf.load(Relaxed) {
            return;
        }
        let mut e = self.entry_for(g, stored);
        if let Some(old) = shard.get(&g.device_code_hash) {
            e.merge_pace(old.pace());
            e.dirty = old.dirty;
        }
        if polled {
            e.dirty = e.dirty.max(Dirty::Polled);
        }
        shard.insert(g.device_code_hash, e);
    }

    /// `Shared`: `hash`'s grant changed somewhere; its entry keeps the pace but no longer
    /// answers until admitted again.
    pub fn invalidate(&self, hash: &SecretHash) {
        let i = shard_of(hash);
        let mut shard = lock(&self.shards[i]);
        self.invalidations[i].fetch_add(1, Relaxed);
        if let Some(e) = shard.get_mut(hash) {
            e.answerable = false;
        }
    }

    /// `Shared`: every grant may have changed (announcements were missed, or grants deleted).
    pub fn invalidate_all(&self) {
        for (i, shard) in self.shards.iter().enumerate() {
            let mut shard = lock(shard);
            self.invalidations[i].fetch_add(1, Relaxed);
            for e in shard.values_mut() {
                e.answerable = false;
            }
        }
    }

    /// `Shared`: another instance's polls of `hash`; kept even without an entry here, so
    /// that this instance's first poll of the grant, read from the database, paces right.
    pub fn merge_remote(&self, hash: SecretHash, pace: PollPace) {
        let mut shard = self.shard(&hash);
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

    /// `Shared`: forgets entries of grants expired before `before`, and pace learnt from
    /// other instances last polled before it.
    pub fn prune(&self, before: Timestamp) {
        let before = before.as_millis();
        self.forget(|e| e.expires_at < before || (e.owner == u32::MAX && e.last_poll_at < before));
    }

    /// Replaces the whole index with `loaded` (every pending grant in the database), keeping
    /// the polls held for grants whose stored version has not changed.
    pub fn reload(&self, loaded: Vec<Loaded>) {
        let mut fresh: [Shard; SHARDS] = Default::default();
        for g in &loaded {
            fresh[shard_of(&g.hash)].insert(g.hash, self.entry(g));
        }
        for (shard, mut new) in self.shards.iter().zip(fresh) {
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

    /// Drops entries that satisfy `gone` (their grants were deleted).
    fn forget(&self, gone: impl Fn(&Entry) -> bool) {
        for shard in &self.shards {
            lock(shard).retain(|_, e| !gone(e));
        }
    }

    /// Grants that expired before `before` were deleted.
    pub fn forget_expired(&self, before: Timestamp) {
        self.forget(|e| e.expires_at < before.as_millis());
    }

    /// A client's grants (every client of the tenant when `client_id` is `None`) were deleted.
    pub fn forget_owner(&self, tenant: &str, client_id: Option<&str>) {
        let owners: Vec<u32> = {
            let owners = self.owners.read().unwrap_or_else(|p| p.into_inner());
            (0..owners.len() as u32)
                .filter(|&i| {
                    let (t, c) = &owners[i as usize];
                    &**t == tenant && client_id.is_none_or(|id| &**c == id)
                })
                .collect()
        };
        self.forget(|e| owners.contains(&e.owner));
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

    /// Lengthened intervals to write now.
    pub fn take_lengthened(&self) -> Vec<Unwritten> {
        self.take_dirty(Dirty::Interval)
    }

    /// Everything to write before the process goes away.
    pub fn take_all_dirty(&self) -> Vec<Unwritten> {
        self.take_dirty(Dirty::Polled)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use devicegate_core::grant::PollDecision;

    const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);

    fn grant() -> DeviceGrant {
        DeviceGrant::example_pending("cli", NOW)
    }

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(NOW.as_millis() + ms)
    }

    #[test]
    fn shared_entries_answer_only_between_admission_and_invalidation() {
        let index = PendingIndex::new(Mode::Shared);
        index.set_listening(true);
        let g = grant();
        let hash = g.device_code_hash;
        assert_eq!(index.poll(&hash, &g.tenant, "cli", NOW), None);
        let epoch = index.epoch(&hash);
        index.admit(&g, g.version, epoch, false);
        assert_eq!(
            index.poll(&hash, &g.tenant, "cli", NOW),
            Some(HeldPoll::Paced(Paced::Pending))
        );
        index.invalidate(&hash);
        assert_eq!(index.poll(&hash, &g.tenant, "cli", at(10_000)), None);
        // An admission whose database read came before that invalidation is refused: the
        // grant may have been decided after the read.
        index.admit(&g, g.version, epoch, false);
        assert_eq!(index.poll(&hash, &g.tenant, "cli", at(10_000)), None);
        index.admit(&g, g.version, index.epoch(&hash), false);
        assert!(index.poll(&hash, &g.tenant, "cli", at(10_000)).is_some());
        index.invalidate_all();
        assert_eq!(index.poll(&hash, &g.tenant, "cli", at(20_000)), None);
        // Deaf to the other instances: nothing answers or is admitted until listening again.
        index.admit(&g, g.version, index.epoch(&hash), false);
        index.set_listening(false);
        assert_eq!(index.poll(&hash, &g.tenant, "cli", at(30_000)), None);
        index.admit(&g, g.version, index.epoch(&hash), false);
        assert_eq!(index.poll(&hash, &g.tenant, "cli", at(30_000)), None);
        index.set_listening(true);
        assert_eq!(index.poll(&hash, &g.tenant, "cli", at(30_000)), None);
        index.admit(&g, g.version, index.epoch(&hash), false);
        assert!(index.poll(&hash, &g.tenant, "cli", at(30_000)).is_some());
    }

    #[test]
    fn shared_entries_keep_the_pace_other_instances_report() {
        let index = PendingIndex::new(Mode::Shared);
        index.set_listening(true);
        let g = grant();
        let hash = g.device_code_hash;
        // Another instance's poll, heard before this instance ever read the grant.
        let remote = PollPace {
            interval_secs: 10,
            last_poll_at: Some(at(1_000)),
        };
        index.merge_remote(hash, remote);
        assert_eq!(index.poll(&hash, &g.tenant, "cli", at(2_000)), None);
        let mut read = g.clone();
        index.overlay(&mut read);
        assert_eq!((read.pace(), read.version), (remote, g.version));
        // Admitted with an older pace, the entry keeps the later poll and longer interval.
        index.admit(&g, g.version, index.epoch(&hash), false);
        assert_eq!(
            index.poll(&hash, &g.tenant, "cli", at(5_000)),
            Some(HeldPoll::Paced(Paced::SlowDown { interval_secs: 15 }))
        );
        // What this instance recorded is taken once, to be sent to the others.
        let sent = index.take_all_dirty();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].pace.last_poll_at, Some(at(5_000)));
        assert!(sent[0].lengthened);
        assert!(index.take_all_dirty().is_empty());
        // Compare-and-swap is the database's alone here.
        assert_eq!(index.expected_version(&g), Ok(g.version));
    }

    #[test]
    fn owner_entries_count_polls_in_the_version() {
        let index = PendingIndex::new(Mode::Owner);
        let g = grant();
        index.written(&g, g.version, Some(7));
        assert!(
            index
                .poll(&g.device_code_hash, &g.tenant, "cli", NOW)
                .is_some()
        );
        assert_eq!(index.expected_version(&g), Err(StoreError::Conflict));
        let mut read = g.clone();
        index.overlay(&mut read);
        assert_eq!(read.version, g.version + 1);
        assert_eq!(index.expected_version(&read), Ok(g.version));
        let unwritten = index.take_all_dirty();
        assert_eq!((unwritten[0].row, unwritten[0].lengthened), (7, false));
        index.written(&read.approve("ann", NOW, NOW).unwrap(), g.version + 1, None);
        assert_eq!(index.len(), 0);
    }

    #[test]
    fn owner_adopts_a_grant_polled_through_the_database_once() {
        let index = PendingIndex::new(Mode::Owner);
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
            index.poll(&g.device_code_hash, &g.tenant, "cli", at(1)),
            Some(HeldPoll::Paced(Paced::SlowDown { .. }))
        ));
    }
}
