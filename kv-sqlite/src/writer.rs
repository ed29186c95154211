//! The writer thread: group commit, and the reclamation of expired rows.
//!
//! Callers queue requests on a channel and await a oneshot answer. The thread takes every
//! request waiting (up to [`MAX_BATCH`]), runs them in one `BEGIN IMMEDIATE` transaction, each
//! inside its own `SAVEPOINT` (a request that fails is rolled back alone, and the others go
//! on), commits, and only then answers each caller. So concurrent writes share one commit and
//! one sync of the WAL, and an acknowledged write is committed.
//!
//! A caller that stops waiting (its future dropped) before the thread reaches its request is
//! skipped: nothing of it is written. Once the thread has applied it, it is committed whole with
//! the others. Either way the connection is only ever touched by this thread, between
//! transactions that always end in `COMMIT` or `ROLLBACK`, so no cancellation can leave it in a
//! transaction.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use kvkit_core::{Clock, Error, Result};
use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::errors::sqlite_error;
use crate::reader::ReadJob;
use crate::writes::{Failure, RECLAIM_BATCH, Txn, reclaim};

/// The most requests one transaction holds.
const MAX_BATCH: usize = 512;

/// The longest the writer waits for more requests before it commits the ones it has.
const MAX_LINGER: Duration = Duration::from_millis(2);

/// The size of the last batch and how long its commit took.
#[derive(Debug, Default)]
struct Gathered {
    size: usize,
    commit: Duration,
}

/// One caller's write: applied inside the batch's transaction, answered after its commit.
pub(crate) trait WriteJob: Send {
    /// Whether the caller stopped waiting, so the request can be skipped.
    fn abandoned(&self) -> bool;
    /// Runs the request; its result is kept for [`finish`](Self::finish).
    fn apply(&mut self, txn: &mut Txn<'_>) -> Applied;
    /// Answers the caller: with its own result once `committed` is `Ok`, else with the error
    /// that undid the transaction.
    fn finish(self: Box<Self>, committed: std::result::Result<(), rusqlite::Error>);
}

/// How a request went, for the writer to decide what to roll back.
pub(crate) enum Applied {
    /// It succeeded.
    Done,
    /// The contract refused it (a condition, a counter): it wrote nothing.
    Refused,
    /// SQLite failed (a copy of the error the caller gets), perhaps undoing the transaction.
    Failed(rusqlite::Error),
}

/// A write request whose work is `work`, answered on `reply`.
pub(crate) struct Pending<T, F> {
    operation: &'static str,
    busy_timeout: Duration,
    work: Option<F>,
    outcome: Option<std::result::Result<T, Failure>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, F> Pending<T, F> {
    pub(crate) fn new(
        operation: &'static str,
        busy_timeout: Duration,
        work: F,
        reply: oneshot::Sender<Result<T>>,
    ) -> Self {
        Self {
            operation,
            busy_timeout,
            work: Some(work),
            outcome: None,
            reply,
        }
    }

    fn error(&self, failure: Failure) -> Error {
        match failure {
            Failure::Refused(e) => e,
            Failure::Sqlite(e) => sqlite_error(self.operation, self.busy_timeout, e),
        }
    }
}

impl<T, F> WriteJob for Pending<T, F>
where
    T: Send,
    F: FnOnce(&mut Txn<'_>) -> std::result::Result<T, Failure> + Send,
{
    fn abandoned(&self) -> bool {
        self.reply.is_closed()
    }

    fn apply(&mut self, txn: &mut Txn<'_>) -> Applied {
        let Some(work) = self.work.take() else {
            return Applied::Done;
        };
        let outcome = work(txn);
        let applied = match &outcome {
            Ok(_) => Applied::Done,
            Err(Failure::Refused(_)) => Applied::Refused,
            Err(Failure::Sqlite(e)) => Applied::Failed(replicate(e)),
        };
        self.outcome = Some(outcome);
        applied
    }

    fn finish(mut self: Box<Self>, committed: std::result::Result<(), rusqlite::Error>) {
        let answer = match (committed, self.outcome.take()) {
            // A request that failed wrote nothing, whatever happened to the transaction.
            (_, Some(Err(failure))) => Err(self.error(failure)),
            (Ok(()), Some(Ok(value))) => Ok(value),
            (Err(e), _) => Err(self.error(Failure::Sqlite(e))),
            // Never reached: the batch failed before this request.
            (Ok(()), None) => Err(crate::errors::stopped(self.operation)),
        };
        // The caller may have stopped waiting; the write stands all the same.
        let _ = self.reply.send(answer);
    }
}

/// A copy of a SQLite error, for every request of a transaction it undid.
pub(crate) fn replicate(e: &rusqlite::Error) -> rusqlite::Error {
    match e {
        rusqlite::Error::SqliteFailure(code, message) => {
            rusqlite::Error::SqliteFailure(*code, message.clone())
        }
        other => rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(other.to_string()),
        ),
    }
}

/// What the writer thread is sent.
pub(crate) enum Job {
    Write(Box<dyn WriteJob>),
    /// A read, for an in-memory database, whose only connection is the writer's.
    Read(ReadJob),
}

/// The writer thread's settings.
pub(crate) struct Writer {
    pub(crate) conn: Connection,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) reap_interval: Duration,
}

impl Writer {
    /// Serves `jobs` until every sender is gone.
    pub(crate) fn run(self, jobs: &Receiver<Job>) {
        let mut next_reap = Instant::now() + self.reap_interval;
        let mut batch: Vec<Box<dyn WriteJob>> = Vec::new();
        let mut last = Gathered::default();
        loop {
            let wait = next_reap.saturating_duration_since(Instant::now());
            match jobs.recv_timeout(wait) {
                Ok(job) => {
                    self.gather(job, jobs, &last, &mut batch);
                    let (size, started) = (batch.len(), Instant::now());
                    self.commit(&mut batch);
                    last = Gathered {
                        size,
                        commit: started.elapsed(),
                    };
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if Instant::now() >= next_reap {
                let more = self.reap();
                next_reap = Instant::now()
                    + if more {
                        Duration::ZERO
                    } else {
                        self.reap_interval
                    };
            }
        }
    }

    /// Collects the batch that starts with `first`: every request waiting, and, when fewer are
    /// waiting than the last batch held, the ones that come within a quarter of the last commit's
    /// time (at most [`MAX_LINGER`]). The callers answered by the last commit are usually about
    /// to send their next request; waiting for them fills each commit instead of alternating
    /// between a full one and a nearly empty one. A lone caller (a last batch of one) never
    /// waits.
    fn gather(
        &self,
        first: Job,
        jobs: &Receiver<Job>,
        last: &Gathered,
        batch: &mut Vec<Box<dyn WriteJob>>,
    ) {
        let started = Instant::now();
        let linger = (last.commit / 4).min(MAX_LINGER);
        self.take(first, batch);
        while batch.len() < MAX_BATCH {
            if let Ok(job) = jobs.try_recv() {
                self.take(job, batch);
                continue;
            }
            let left = linger.saturating_sub(started.elapsed());
            if batch.len() >= last.size || left.is_zero() {
                break;
            }
            match jobs.recv_timeout(left) {
                Ok(job) => self.take(job, batch),
                Err(_) => break,
            }
        }
    }

    /// Adds a write to the batch; a read first commits the writes before it, so it sees them.
    fn take(&self, job: Job, batch: &mut Vec<Box<dyn WriteJob>>) {
        match job {
            Job::Write(write) => batch.push(write),
            Job::Read(read) => {
                self.commit(batch);
                read(&self.conn);
            }
        }
    }

    /// Runs the batch in one transaction and answers each caller after the commit.
    fn commit(&self, batch: &mut Vec<Box<dyn WriteJob>>) {
        batch.retain(|job| !job.abandoned());
        if batch.is_empty() {
            return;
        }
        let outcome = self.transaction(batch);
        if outcome.is_err() && !self.conn.is_autocommit() {
            // Undoing a transaction that failed; if even that fails, the next transaction
            // rolls it back before it begins.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        for job in batch.drain(..) {
            job.finish(outcome.as_ref().map(|_| ()).map_err(replicate));
        }
    }

    fn transaction(&self, batch: &mut [Box<dyn WriteJob>]) -> rusqlite::Result<()> {
        let conn = &self.conn;
        self.begin()?;
        let first: i64 = conn
            .prepare_cached("SELECT value FROM kv_meta WHERE name = 'next_version'")?
            .query_row([], |row| row.get(0))?;
        let mut txn = Txn {
            conn,
            next_version: first,
        };
        for job in batch.iter_mut() {
            conn.prepare_cached("SAVEPOINT request")?.execute([])?;
            match job.apply(&mut txn) {
                Applied::Done => {
                    conn.prepare_cached("RELEASE request")?.execute([])?;
                }
                // SQLite rolled the whole transaction back (a full disk, an I/O error): nothing
                // of the batch was written, and every request is answered with the error.
                Applied::Failed(e) if conn.is_autocommit() => return Err(e),
                Applied::Failed(_) | Applied::Refused => {
                    conn.prepare_cached("ROLLBACK TO request")?.execute([])?;
                    conn.prepare_cached("RELEASE request")?.execute([])?;
                }
            }
        }
        if txn.next_version != first {
            conn.prepare_cached("UPDATE kv_meta SET value = ?1 WHERE name = 'next_version'")?
                .execute([txn.next_version])?;
        }
        conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(())
    }

    /// Starts a write transaction, first rolling back one a failed rollback left open, so that
    /// no failure leaves the connection stuck inside a transaction.
    fn begin(&self) -> rusqlite::Result<()> {
        if !self.conn.is_autocommit() {
            self.conn.execute_batch("ROLLBACK")?;
        }
        self.conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        Ok(())
    }

    /// Deletes one batch of expired rows in a transaction of its own; returns whether there may
    /// be more. A failure (another process holding the lock past the busy timeout, a full disk)
    /// leaves the rows for the next round: they are invisible to reads meanwhile.
    fn reap(&self) -> bool {
        let now = crate::store::ms(self.clock.now());
        let deleted = (|| {
            self.begin()?;
            let deleted = reclaim(&self.conn, now)?;
            self.conn.prepare_cached("COMMIT")?.execute([])?;
            Ok::<_, rusqlite::Error>(deleted)
        })();
        match deleted {
            Ok(deleted) => deleted == RECLAIM_BATCH,
            Err(_) => {
                if !self.conn.is_autocommit() {
                    let _ = self.conn.execute_batch("ROLLBACK");
                }
                false
            }
        }
    }
}
