//! The writer thread: group commit. Every write of the store runs here, on one connection
//! (SQLite allows one writer at a time anyway): the writes waiting are taken together, each
//! in its own savepoint of one transaction, and answered only after that transaction commits.

use rusqlite::Connection;

use super::codec::internal;
use super::{SqliteStore, lock};
use crate::{Result, StoreError};

/// A write, run inside the group transaction: says whether it succeeded, and how to answer
/// once the transaction's fate is known.
pub(super) type Job = Box<dyn FnOnce(&Connection) -> (bool, Reply) + Send>;
pub(super) type Reply = Box<dyn FnOnce(Result<()>) + Send>;

/// Most writes committed together in one transaction.
const MAX_GROUP: usize = 256;

/// The writer thread: group commit. Takes every write waiting, runs each in its own savepoint
/// (a failing one is rolled back alone), commits once, then answers them all. Under load this
/// turns many commits into one; alone, a write commits at once.
pub(super) fn write_forever(conn: Connection, queue: std::sync::mpsc::Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        if let Err(e) = run_cached(&conn, "BEGIN IMMEDIATE") {
            let e = internal(e);
            for job in jobs {
                let (_, reply) = job(&conn);
                reply(Err(e.clone()));
            }
            continue;
        }
        let mut replies = Vec::with_capacity(jobs.len());
        for job in jobs {
            let savepoint = run_cached(&conn, "SAVEPOINT job");
            let (ok, reply) = job(&conn);
            let ended = savepoint.and_then(|()| {
                if !ok {
                    run_cached(&conn, "ROLLBACK TO job")?;
                }
                run_cached(&conn, "RELEASE job")
            });
            replies.push((reply, ended.map_err(internal)));
        }
        // A savepoint that could not be taken, released or rolled back leaves a job's effects
        // uncertain: then nothing of the group is committed, and every job hears why.
        let committed = match replies.iter().find_map(|(_, ended)| ended.clone().err()) {
            Some(e) => Err(e),
            None => run_cached(&conn, "COMMIT").map_err(internal),
        };
        if committed.is_err() {
            let _ = run_cached(&conn, "ROLLBACK");
        }
        for (reply, _) in replies {
            reply(committed.clone());
        }
    }
}

/// A parameterless statement, prepared once per connection.
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

impl SqliteStore {
    /// Runs `f` on the writer thread, inside a savepoint of the current group transaction;
    /// answers after that transaction commits.
    pub(super) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.write_then(f, |_| {}).await
    }

    /// `write`, and once the transaction has committed, `then` with `f`'s result, on the
    /// writer thread before anything else is written or answered: how the pending index
    /// follows the database, whether or not the caller is still waiting.
    pub(super) async fn write_then<T, F, G>(&self, f: F, then: G) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
        G: FnOnce(&T) + Send + 'static,
    {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let out = f(conn);
            let ok = out.is_ok();
            let reply: Reply = Box::new(move |committed| {
                if let (Ok(()), Ok(out)) = (&committed, &out) {
                    then(out);
                }
                let _ = answer.send(committed.and(out));
            });
            (ok, reply)
        });
        lock(&self.inner.writer)
            .send(job)
            .map_err(|_| StoreError::Internal("the SQLite writer thread has stopped".into()))?;
        answered
            .await
            .map_err(|_| StoreError::Internal("the SQLite writer thread has stopped".into()))?
    }
}
