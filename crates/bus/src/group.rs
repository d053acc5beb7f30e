//! Group commit: the state changes registered with
//! [`CommandServer::handle_grouped`](crate::CommandServer::handle_grouped) that are waiting at
//! the same time are applied in one Postgres transaction, and each is answered and
//! acknowledged only after that transaction commits.
//!
//! Each of a server's `group_commit_lanes` committers (lanes) takes the first waiting command at
//! once (a command alone goes without delay), then every other command waiting at that moment,
//! up to `group_commit_max`, and runs them one after another on one transaction, each in a
//! savepoint of its own:
//!
//! 1. `SAVEPOINT`; the inbox row is inserted; a command processed before (in an earlier
//!    transaction or earlier in this one) gets its stored reply;
//! 2. past its deadline the command is rolled back to its savepoint and answered "timed out";
//! 3. the handler runs in the same savepoint, bounded by the deadline: `Ok` keeps its writes
//!    and stores the reply on the inbox row; a rejection rolls the savepoint back (writes and
//!    inbox row) and stores the rejection in a new inbox row;
//! 4. a transient failure or a panic rolls the command's savepoint back (inbox row included),
//!    so the others are untouched; a transient failure is then tried once more alone, a panic
//!    is redelivered as it would be alone.
//!
//! Before the commit every command's deadline is checked again. Whenever the transaction as a
//! whole cannot go on (a handler overran its deadline mid-statement, a savepoint or the commit
//! failed, a deadline passed before the commit), nothing of it is kept or answered from it:
//! the commands still owed an answer each run alone through the single-command path
//! ([`Settled::Alone`]), which finds the inbox row of anything that did commit and replays its
//! stored reply. So the inbox and outbox guarantees are those of a command alone: a command's
//! effects commit once, its answer is sent only after they commit, and a redelivery after a
//! crash is answered from storage.
//!
//! Handlers registered this way must do only database work on the transaction they are given
//! (no calls to other services): they run one after another, and a slow one delays the batch.

use std::sync::Arc;

use sqlx::{PgPool, Postgres, Transaction};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument as _;

use crate::command::{Called, CommandMeta, ErasedHandler, time_left};
use crate::handler::{HandlerError, catch_panic};
use crate::inbox::Inbox;
use crate::telemetry;
use crate::wire::{CommandEnvelope, ReplyBody};
use crate::worker::Disposition;

/// A command handed to the committer.
pub(crate) struct Job {
    pub(crate) handler: Arc<dyn ErasedHandler>,
    pub(crate) envelope: Arc<CommandEnvelope>,
    pub(crate) delivery: u64,
    pub(crate) span: tracing::Span,
    pub(crate) done: oneshot::Sender<Settled>,
}

/// What became of a job.
#[derive(Debug)]
pub(crate) enum Settled {
    /// Committed (or needing no commit): send this answer, then acknowledge.
    Answer(ReplyBody, &'static str),
    /// Not answered: retry later or dead-letter.
    Disposition(Disposition, &'static str),
    /// Not applied by the batch: run it alone.
    Alone,
}

/// The committer of one server's grouped commands.
pub(crate) struct Committer {
    pub(crate) pool: PgPool,
    pub(crate) inbox: Inbox,
    pub(crate) group: String,
    pub(crate) family: String,
    pub(crate) max_batch: usize,
    /// Batches applied at once.
    pub(crate) lanes: usize,
}

/// How one job went inside the batch.
enum Step {
    /// Final whatever becomes of the transaction: nothing of it was written.
    Final(Settled),
    /// Written in the transaction (inbox row, reply, the handler's effects): answered with this
    /// once the transaction commits.
    Pending(ReplyBody, &'static str),
    /// Read from the transaction (a reply stored earlier in it, maybe): answered with this once
    /// the transaction commits.
    Replayed(ReplyBody),
}

/// Why the transaction cannot go on.
enum Abort {
    /// The job overran its deadline inside the handler.
    Expired,
    /// A database error outside any handler.
    Database(sqlx::Error),
}

impl Committer {
    /// Applies the jobs it receives until every sender is gone.
    pub(crate) async fn run(self, jobs: mpsc::UnboundedReceiver<Job>) {
        let jobs = tokio::sync::Mutex::new(jobs);
        let lanes = (0..self.lanes.max(1)).map(|_| self.lane(&jobs));
        futures::future::join_all(lanes).await;
    }

    /// One lane: takes the first job waiting and every other one waiting with it, applies
    /// them, answers them, and again. While one lane applies its batch, another can take the
    /// next.
    async fn lane(&self, jobs: &tokio::sync::Mutex<mpsc::UnboundedReceiver<Job>>) {
        let mut batch = Vec::with_capacity(self.max_batch);
        loop {
            {
                let mut jobs = jobs.lock().await;
                let Some(first) = jobs.recv().await else { return };
                batch.push(first);
                while batch.len() < self.max_batch {
                    match jobs.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
            }
            telemetry::group_commit_size(&self.family, batch.len());
            let settled = self.apply(&batch).await;
            for (job, settled) in batch.drain(..).zip(settled) {
                // A caller that went away (its task aborted) needs no answer.
                let _ = job.done.send(settled);
            }
        }
    }

    /// Runs `jobs` in one transaction; one outcome per job, in order.
    async fn apply(&self, jobs: &[Job]) -> Vec<Settled> {
        let mut tx = match self.pool.begin().await {
            Ok(tx) => tx,
            Err(error) => {
                tracing::warn!(family = %self.family, %error, "group commit could not begin; each command runs alone");
                return jobs.iter().map(|_| Settled::Alone).collect();
            }
        };
        let mut steps = Vec::with_capacity(jobs.len());
        for (index, job) in jobs.iter().enumerate() {
            match self.step(&mut tx, job).instrument(job.span.clone()).await {
                Ok(step) => steps.push(step),
                Err(Abort::Expired) => return abandon(jobs.len(), steps, Some(index)),
                Err(Abort::Database(error)) => {
                    tracing::warn!(family = %self.family, %error, "a group commit failed; each command runs alone");
                    return abandon(jobs.len(), steps, None);
                }
            }
        }
        let written = steps.iter().any(|step| !matches!(step, Step::Final(_)));
        if written {
            let late = jobs.iter().zip(&steps).any(|(job, step)| {
                matches!(step, Step::Pending(..)) && time_left(job.envelope.deadline_ms).is_none()
            });
            if late {
                drop(tx);
                return abandon(jobs.len(), steps, None);
            }
            if let Err(error) = tx.commit().await {
                // If it did commit, each command alone finds its inbox row and replays.
                tracing::warn!(family = %self.family, %error, "a group commit failed; each command runs alone");
                return abandon(jobs.len(), steps, None);
            }
        } else {
            drop(tx);
        }
        steps
            .into_iter()
            .map(|step| match step {
                Step::Final(settled) => settled,
                Step::Pending(body, outcome) => Settled::Answer(body, outcome),
                Step::Replayed(body) => Settled::Answer(body, "replayed"),
            })
            .collect()
    }

    /// Steps 1 to 4 of the module docs for one job.
    async fn step(&self, tx: &mut Transaction<'_, Postgres>, job: &Job) -> Result<Step, Abort> {
        let envelope = &*job.envelope;
        let mut command = sqlx::Connection::begin(&mut **tx).await.map_err(Abort::Database)?;
        let fresh = self
            .inbox
            .claim(&mut command, &self.group, envelope.id)
            .await
            .map_err(Abort::Database)?;
        if !fresh {
            let stored = self
                .inbox
                .reply(&mut command, &self.group, envelope.id)
                .await
                .map_err(Abort::Database)?;
            command.rollback().await.map_err(Abort::Database)?;
            let body = stored
                .and_then(|value| serde_json::from_value::<ReplyBody>(value).ok())
                .unwrap_or_else(|| ReplyBody::Failed {
                    message: "the command id was processed before, with no stored reply".to_owned(),
                });
            return Ok(Step::Replayed(body));
        }
        // As alone: a command processed before is answered as then, whatever its deadline.
        let Some(remaining) = time_left(envelope.deadline_ms) else {
            command.rollback().await.map_err(Abort::Database)?;
            return Ok(Step::Final(Settled::Answer(ReplyBody::TimedOut, "expired")));
        };
        let meta = CommandMeta {
            command_id: envelope.id,
            deadline_unix_ms: envelope.deadline_ms,
            delivery: job.delivery,
        };
        // The handler runs in the command's savepoint, with the inbox row: on success both
        // stay (two statements fewer than a nested savepoint would cost); a refusal rolls both
        // back and stores the refusal in a new inbox row.
        let called = tokio::time::timeout(
            remaining,
            catch_panic(job.handler.call(&mut command, &envelope.payload, meta)),
        )
        .await;
        let Ok(called) = called else {
            // Cut off mid-statement, perhaps: this connection's transaction cannot go on.
            return Err(Abort::Expired);
        };
        let failed = |disposition, outcome| Step::Final(Settled::Disposition(disposition, outcome));
        let (body, outcome) = match called {
            Err(panic) => {
                command.rollback().await.map_err(Abort::Database)?;
                return Ok(failed(Disposition::Retry(panic), "transient"));
            }
            Ok(Called::Ok(reply)) => (ReplyBody::Ok { reply }, "ok"),
            Ok(Called::Failed(HandlerError::Rejected { code, message })) => {
                command.rollback().await.map_err(Abort::Database)?;
                let body = ReplyBody::Rejected { code, message };
                let Ok(stored) = serde_json::to_value(&body) else {
                    return Ok(failed(
                        Disposition::DeadLetter("the refusal does not encode".to_owned()),
                        "failed",
                    ));
                };
                let fresh = self
                    .inbox
                    .claim_with_reply(tx, &self.group, envelope.id, &stored)
                    .await
                    .map_err(Abort::Database)?;
                if !fresh {
                    // A duplicate ran meanwhile elsewhere: alone, its stored reply is replayed.
                    return Ok(Step::Final(Settled::Alone));
                }
                return Ok(Step::Pending(body, "rejected"));
            }
            Ok(Called::Failed(HandlerError::Transient(_))) => {
                // A deadlock with another transaction, say: once more, alone.
                command.rollback().await.map_err(Abort::Database)?;
                return Ok(Step::Final(Settled::Alone));
            }
            Ok(Called::Unusable(error)) => {
                command.rollback().await.map_err(Abort::Database)?;
                return Ok(failed(Disposition::DeadLetter(error), "failed"));
            }
        };
        let stored = match serde_json::to_value(&body) {
            Ok(stored) => stored,
            Err(error) => {
                command.rollback().await.map_err(Abort::Database)?;
                return Ok(failed(
                    Disposition::DeadLetter(format!("reply does not encode: {error}")),
                    "failed",
                ));
            }
        };
        self.inbox
            .store_reply(&mut command, &self.group, envelope.id, &stored)
            .await
            .map_err(Abort::Database)?;
        command.commit().await.map_err(Abort::Database)?;
        Ok(Step::Pending(body, outcome))
    }
}

/// The outcomes of `count` jobs when the transaction is dropped after `steps` (one per job
/// before the one that failed): what was final stays so; everything written or read in the
/// transaction, and every job not reached, runs alone; the job that overran its deadline
/// (`expired`) is answered "timed out", its writes gone with the transaction.
fn abandon(count: usize, steps: Vec<Step>, expired: Option<usize>) -> Vec<Settled> {
    let mut steps = steps.into_iter();
    (0..count)
        .map(|index| {
            let step = steps.next();
            if Some(index) == expired {
                return Settled::Answer(ReplyBody::TimedOut, "expired");
            }
            match step {
                Some(Step::Final(settled)) => settled,
                _ => Settled::Alone,
            }
        })
        .collect()
}
