//! The one writer thread: every write waiting is taken and committed as one transaction (group
//! commit), each in its own savepoint so that one failure spoils no other.

use crate::ports::StoreError;
use rusqlite::Connection;
use std::sync::mpsc;
use tokio::sync::oneshot;

/// How many waiting writes one transaction may take.
pub(super) const MAX_GROUP: usize = 512;

pub(super) trait Job: Send {
    /// Whether the caller must not hear back before the write is on disk.
    fn durable(&self) -> bool;
    /// Runs inside the group's transaction; false rolls back this job's savepoint.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller once the group's commit is known.
    fn finish(self: Box<Self>, commit: Result<(), String>);
}

pub(super) struct Task<R, F> {
    pub(super) durable: bool,
    pub(super) f: Option<F>,
    pub(super) out: Option<Result<R, StoreError>>,
    pub(super) reply: oneshot::Sender<Result<R, StoreError>>,
}

impl<R: Send, F: FnOnce(&Connection) -> Result<R, StoreError> + Send> Job for Task<R, F> {
    fn durable(&self) -> bool {
        self.durable
    }

    fn run(&mut self, conn: &Connection) -> bool {
        let out = match self.f.take() {
            Some(f) => f(conn),
            None => Err(StoreError::Unavailable("job ran twice".into())),
        };
        let ok = out.is_ok();
        self.out = Some(out);
        ok
    }

    fn finish(self: Box<Self>, commit: Result<(), String>) {
        let result = match (commit, self.out) {
            (Ok(()), Some(out)) => out,
            (Err(e), _) => Err(StoreError::Retryable(format!("commit failed: {e}").into())),
            (Ok(()), None) => Err(StoreError::Unavailable("job never ran".into())),
        };
        let _ = self.reply.send(result);
    }
}

pub(super) fn writer_loop(mut conn: Connection, rx: mpsc::Receiver<Box<dyn Job>>) {
    let mut full = true;
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let want_full = jobs.iter().any(|j| j.durable());
        if want_full != full {
            let pragma = if want_full { "PRAGMA synchronous = FULL" } else { "PRAGMA synchronous = NORMAL" };
            match conn.execute_batch(pragma) {
                Ok(()) => full = want_full,
                Err(e) => tracing::error!(error = %e, "could not set synchronous"),
            }
        }
        let tx = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(e) => {
                let msg = e.to_string();
                jobs.into_iter().for_each(|j| j.finish(Err(msg.clone())));
                continue;
            }
        };
        for job in jobs.iter_mut() {
            // Kept prepared: one savepoint per job is the writer's most frequent statement.
            let run = |sql: &str| tx.prepare_cached(sql).and_then(|mut s| s.execute([])).map(|_| ());
            if run("SAVEPOINT job").is_err() {
                continue;
            }
            let ok = job.run(&tx);
            let end = if ok { run("RELEASE job") } else { run("ROLLBACK TO job").and_then(|()| run("RELEASE job")) };
            if let Err(e) = end {
                tracing::error!(error = %e, "savepoint could not be closed");
            }
        }
        let commit = tx.commit().map_err(|e| e.to_string());
        jobs.into_iter().for_each(|j| j.finish(commit.clone()));
    }
}
