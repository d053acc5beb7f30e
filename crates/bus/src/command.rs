//! Commands: typed requests with a reply and a deadline ([`Command`]), their handlers
//! ([`CommandHandler`]), and the [`CommandServer`] that runs the handlers of one command family.
//!
//! A server processes each command inside one Postgres transaction it opens itself:
//!
//! 1. insert the inbox row (`consumer` = the service, `message_id` = the command id); if the
//!    command was processed before, re-send the stored reply and acknowledge;
//! 2. past the deadline: roll back, answer "timed out", acknowledge;
//! 3. run the handler on the transaction (inside a savepoint), bounded by the deadline;
//!    `Ok` keeps its writes, a rejection rolls them back, a transient error rolls everything
//!    back and leaves the message unacknowledged for redelivery;
//! 4. store the reply (or rejection) on the inbox row; check the deadline again (past it:
//!    roll back, answer "timed out"); commit;
//! 5. send the reply to the caller's reply stream, then acknowledge.
//!
//! A crash anywhere before the commit leaves nothing behind; a crash after it is repaired by
//! redelivery, which finds the inbox row and re-sends the stored reply.

use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::{PgConnection, PgPool};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use uuid::Uuid;

use crate::bus::{Bus, now_unix_ms};
use crate::group::{Committer, Job, Settled};
use crate::handler::{HandlerError, catch_panic};
use crate::inbox::Inbox;
use crate::names::{Keys, check_name};
use crate::query::{ErasedQuery, QueryHandler, TypedQuery};
use crate::wire::{CommandEnvelope, ReplyBody, ReplyEnvelope};
use crate::worker::{Delivery, Disposition, Processor, StreamWorker};
use crate::{BusError, telemetry};

/// What a command does to the serving service's state; every command declares it
/// ([`Command::KIND`]), and the server registers it accordingly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A state change: exactly once, through the inbox. A [`CommandHandler`] runs it in the
    /// server's transaction, with the inbox row and the stored reply; a redelivery or a retry
    /// of the same id gets the stored reply. Registered with [`CommandServer::handle`].
    Change,
    /// A question that changes nothing (a view, a verification, a lookup): a [`QueryHandler`]
    /// answers it without an inbox row and without a transaction of the server's, so it writes
    /// nothing; a redelivery or a retry simply asks again. Registered with
    /// [`CommandServer::answer`].
    Query,
}

/// A command: a request to the service that serves its family, answered with a
/// [`Command::Reply`].
pub trait Command: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The family (the serving service's request stream), e.g. `ledger`.
    const FAMILY: &'static str;
    /// The command's name within its family, e.g. `hold.place`; selects the handler.
    const NAME: &'static str;
    /// Whether it changes state (exactly once, through the inbox) or only asks (no inbox row,
    /// no transaction). There is no default: each command chooses.
    const KIND: Kind;
    /// What a successful command returns.
    type Reply: Serialize + DeserializeOwned + Send + 'static;
}

/// What a handler knows about the command it handles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandMeta {
    /// The command id (the caller's idempotency key).
    pub command_id: Uuid,
    /// The deadline, in milliseconds since the Unix epoch: the handler's work is rolled back
    /// if it has not committed by then.
    pub deadline_unix_ms: u64,
    /// Which delivery this is (1 for the first; more after a consumer failed or died).
    pub delivery: u64,
}

/// Handles one command type. The handler gets the server's open transaction: its writes
/// commit together with the inbox row and the stored reply, or not at all.
///
/// Implement it with an `async fn`:
///
/// ```text
/// impl CommandHandler<PlaceHold> for Holds {
///     async fn handle(&self, tx: &mut PgConnection, cmd: PlaceHold, meta: CommandMeta)
///         -> Result<HoldPlaced, HandlerError> { /* … */ }
/// }
/// ```
pub trait CommandHandler<C: Command>: Send + Sync + 'static {
    /// Executes `command` on `tx`.
    fn handle(
        &self,
        tx: &mut PgConnection,
        command: C,
        meta: CommandMeta,
    ) -> impl Future<Output = Result<C::Reply, HandlerError>> + Send;
}

/// A [`CommandHandler`] made from a function; see [`command_handler_fn`].
pub struct CommandHandlerFn<C, F> {
    f: F,
    _command: PhantomData<fn() -> C>,
}

impl<C, F> std::fmt::Debug for CommandHandlerFn<C, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandHandlerFn").finish_non_exhaustive()
    }
}

/// A command handler from a function returning a boxed future:
/// `command_handler_fn(|tx, cmd: PlaceHold, meta| Box::pin(async move { … }))`.
pub fn command_handler_fn<C, F>(f: F) -> CommandHandlerFn<C, F>
where
    C: Command,
    F: for<'c> Fn(
            &'c mut PgConnection,
            C,
            CommandMeta,
        ) -> BoxFuture<'c, Result<C::Reply, HandlerError>>
        + Send
        + Sync
        + 'static,
{
    CommandHandlerFn { f, _command: PhantomData }
}

impl<C, F> CommandHandler<C> for CommandHandlerFn<C, F>
where
    C: Command,
    F: for<'c> Fn(
            &'c mut PgConnection,
            C,
            CommandMeta,
        ) -> BoxFuture<'c, Result<C::Reply, HandlerError>>
        + Send
        + Sync
        + 'static,
{
    fn handle(
        &self,
        tx: &mut PgConnection,
        command: C,
        meta: CommandMeta,
    ) -> impl Future<Output = Result<C::Reply, HandlerError>> + Send {
        (self.f)(tx, command, meta)
    }
}

/// What a type-erased handler call produced.
pub(crate) enum Called {
    Ok(serde_json::Value),
    Failed(HandlerError),
    /// The payload does not decode as the command, or the reply does not encode: retrying
    /// cannot help.
    Unusable(String),
}

pub(crate) trait ErasedHandler: Send + Sync {
    fn name(&self) -> &'static str;
    fn call<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        payload: &'a str,
        meta: CommandMeta,
    ) -> BoxFuture<'a, Called>;
}

struct Typed<C, H> {
    handler: H,
    _command: PhantomData<fn() -> C>,
}

impl<C: Command, H: CommandHandler<C>> ErasedHandler for Typed<C, H> {
    fn name(&self) -> &'static str {
        C::NAME
    }

    fn call<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        payload: &'a str,
        meta: CommandMeta,
    ) -> BoxFuture<'a, Called> {
        Box::pin(async move {
            let command: C = match serde_json::from_str(payload) {
                Ok(command) => command,
                Err(error) => {
                    return Called::Unusable(format!("payload is not a {}: {error}", C::NAME));
                }
            };
            match self.handler.handle(tx, command, meta).await {
                Ok(reply) => match serde_json::to_value(&reply) {
                    Ok(value) => Called::Ok(value),
                    Err(error) => {
                        Called::Unusable(format!("reply to {} does not encode: {error}", C::NAME))
                    }
                },
                Err(error) => Called::Failed(error),
            }
        })
    }
}

/// Serves one command family: a consumer in the family's group (named after the service),
/// with a handler per command name.
pub struct CommandServer {
    bus: Bus,
    pool: PgPool,
    family: String,
    handlers: HashMap<&'static str, Registered>,
}

/// A registered handler: of a state change (alone, or in group commits), or of a query.
#[derive(Clone)]
enum Registered {
    Change(Arc<dyn ErasedHandler>),
    Grouped(Arc<dyn ErasedHandler>),
    Query(Arc<dyn ErasedQuery>),
}

impl Registered {
    fn name(&self) -> &'static str {
        match self {
            Self::Change(handler) | Self::Grouped(handler) => handler.name(),
            Self::Query(handler) => handler.name(),
        }
    }
}

impl std::fmt::Debug for CommandServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<_> = self.handlers.keys().collect();
        names.sort();
        f.debug_struct("CommandServer")
            .field("family", &self.family)
            .field("commands", &names)
            .finish()
    }
}

impl CommandServer {
    /// A server of `family` for the bus's service, using `pool` for its transactions.
    pub fn new(bus: &Bus, pool: PgPool, family: &str) -> Result<Self, BusError> {
        check_name("command family", family)?;
        Ok(Self { bus: bus.clone(), pool, family: family.to_owned(), handlers: HashMap::new() })
    }

    /// Registers the handler of the state change `C` (of this server's family, registered
    /// once; [`Kind::Change`]).
    pub fn handle<C: Command, H: CommandHandler<C>>(self, handler: H) -> Result<Self, BusError> {
        let typed = Typed::<C, H> { handler, _command: PhantomData };
        self.register::<C>(Kind::Change, Registered::Change(Arc::new(typed)))
    }

    /// Registers the handler of the state change `C` to run in group commits ([`Kind::Change`];
    /// see the crate docs): under load, the commands of this kind waiting at the same time share
    /// one transaction, each in a savepoint of its own, and are answered after it commits; alone,
    /// a command goes at once. For handlers that only work on the transaction they are given:
    /// no calls to other services (they run one after another).
    pub fn handle_grouped<C: Command, H: CommandHandler<C>>(
        self,
        handler: H,
    ) -> Result<Self, BusError> {
        let typed = Typed::<C, H> { handler, _command: PhantomData };
        self.register::<C>(Kind::Change, Registered::Grouped(Arc::new(typed)))
    }

    /// Registers the handler of the query `C` (of this server's family, registered once;
    /// [`Kind::Query`]).
    pub fn answer<C: Command, H: QueryHandler<C>>(self, handler: H) -> Result<Self, BusError> {
        let typed = TypedQuery::<C, H>::new(handler);
        self.register::<C>(Kind::Query, Registered::Query(Arc::new(typed)))
    }

    fn register<C: Command>(mut self, kind: Kind, handler: Registered) -> Result<Self, BusError> {
        debug_assert_eq!(kind == Kind::Query, matches!(handler, Registered::Query(_)));
        check_name("command name", C::NAME)?;
        if C::FAMILY != self.family {
            return Err(BusError::Config(format!(
                "command {} belongs to family {}, not {}",
                C::NAME,
                C::FAMILY,
                self.family
            )));
        }
        if C::KIND != kind {
            return Err(BusError::Config(format!(
                "command {} is a {:?}: register it with {}",
                C::NAME,
                C::KIND,
                if C::KIND == Kind::Query { "answer" } else { "handle" }
            )));
        }
        if self.handlers.contains_key(C::NAME) {
            return Err(BusError::Config(format!("command {} has a handler already", C::NAME)));
        }
        self.handlers.insert(C::NAME, handler);
        Ok(self)
    }

    /// Serves until `cancel` fires; in-flight commands finish first. Fails at once if no
    /// handler is registered; Redis and Postgres errors are retried, not returned.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), BusError> {
        if self.handlers.is_empty() {
            return Err(BusError::Config(format!(
                "command server {} has no handlers",
                self.family
            )));
        }
        let group = self.bus.config().service.clone();
        let inbox = Inbox::new(self.bus.schema());
        let grouped = self.handlers.values().any(|h| matches!(h, Registered::Grouped(_)));
        let (jobs, committer) = if grouped {
            let (jobs, receiver) = mpsc::unbounded_channel();
            let committer = Committer {
                pool: self.pool.clone(),
                inbox: inbox.clone(),
                group: group.clone(),
                family: self.family.clone(),
                max_batch: self.bus.tuning().group_commit_max,
                lanes: self.bus.tuning().group_commit_lanes,
            };
            (Some(jobs), Some(committer.run(receiver)))
        } else {
            (None, None)
        };
        let processor = CommandProcessor {
            bus: self.bus.clone(),
            pool: self.pool,
            group,
            inbox,
            reply_prefix: self.bus.keys().reply_stream_start(),
            family: self.family.clone(),
            handlers: self.handlers,
            jobs,
        };
        let worker =
            StreamWorker::new(&self.bus, Keys::command_stream_name(&self.family), processor)
                .run(cancel);
        // The committer lives in this future, so a server killed where it stands takes its
        // batch in progress with it (rolled back), as it would a command alone. It ends when
        // the worker, which holds the only sender, has finished.
        match committer {
            Some(committer) => tokio::join!(worker, committer).0,
            None => worker.await,
        }
    }
}

struct CommandProcessor {
    bus: Bus,
    pool: PgPool,
    family: String,
    group: String,
    inbox: Inbox,
    reply_prefix: String,
    handlers: HashMap<&'static str, Registered>,
    /// The committer's queue, when some handler is grouped.
    jobs: Option<mpsc::UnboundedSender<Job>>,
}

impl Processor for CommandProcessor {
    async fn process(&self, delivery: &Delivery) -> Disposition {
        let envelope = match CommandEnvelope::from_fields(&delivery.fields) {
            Ok(envelope) => envelope,
            Err(error) => return Disposition::DeadLetter(format!("malformed command: {error}")),
        };
        if !envelope.reply_to.starts_with(&self.reply_prefix) {
            // Never write to a key outside the reply streams, whatever a message says.
            return Disposition::DeadLetter(format!(
                "reply_to {:?} is not a reply stream of this deployment",
                envelope.reply_to
            ));
        }
        let Some(handler) = self.handlers.get(envelope.name.as_str()).cloned() else {
            telemetry::command_handled(&self.family, "unknown", "failed");
            return Disposition::DeadLetter(format!(
                "unknown command {:?} in family {}",
                envelope.name, self.family
            ));
        };
        let span = tracing::info_span!(
            "bus.command",
            family = %self.family,
            command = handler.name(),
            command_id = %envelope.id,
            delivery = delivery.count,
            outcome = tracing::field::Empty,
        );
        envelope.trace.set_parent_of(&span);
        let started = std::time::Instant::now();
        let (disposition, outcome) = match &handler {
            Registered::Change(handler) => {
                self.execute(&**handler, &envelope, delivery.count).instrument(span.clone()).await
            }
            Registered::Grouped(handler) => {
                self.grouped(handler, envelope, delivery.count, &span)
                    .instrument(span.clone())
                    .await
            }
            Registered::Query(handler) => {
                self.answer(&**handler, &envelope, delivery.count).instrument(span.clone()).await
            }
        };
        span.record("outcome", outcome);
        telemetry::command_handled(&self.family, handler.name(), outcome);
        if matches!(outcome, "ok" | "rejected") {
            telemetry::command_duration(&self.family, handler.name(), started.elapsed());
        }
        disposition
    }

    async fn on_dead_letter(&self, delivery: &Delivery, reason: &str) {
        // A caller is waiting: tell it now rather than let it wait for its deadline.
        let Ok(envelope) = CommandEnvelope::from_fields(&delivery.fields) else { return };
        if !envelope.reply_to.starts_with(&self.reply_prefix) {
            return;
        }
        let body = ReplyBody::Failed { message: format!("command dead-lettered: {reason}") };
        if let Err(error) = self.reply(&envelope, body).await {
            tracing::warn!(command_id = %envelope.id, %error, "telling the caller about a dead letter failed");
        }
    }
}

impl CommandProcessor {
    /// A grouped state change: handed to the committer, answered once its batch commits (or
    /// run alone when the batch could not apply it).
    async fn grouped(
        &self,
        handler: &Arc<dyn ErasedHandler>,
        envelope: CommandEnvelope,
        delivery: u64,
        span: &tracing::Span,
    ) -> (Disposition, &'static str) {
        let envelope = Arc::new(envelope);
        let (done, settled) = oneshot::channel();
        let job = Job {
            handler: Arc::clone(handler),
            envelope: Arc::clone(&envelope),
            delivery,
            span: span.clone(),
            done,
        };
        let queued = self.jobs.as_ref().is_some_and(|jobs| jobs.send(job).is_ok());
        let settled = if queued { settled.await.unwrap_or(Settled::Alone) } else { Settled::Alone };
        match settled {
            Settled::Answer(body, outcome) => (self.reply_then_ack(&envelope, body).await, outcome),
            Settled::Disposition(disposition, outcome) => (disposition, outcome),
            Settled::Alone => self.execute(&**handler, &envelope, delivery).await,
        }
    }

    /// A query: no transaction, no inbox row; the handler's answer (or rejection) is sent and
    /// the message acknowledged. Past the deadline it is not asked; a transient failure is
    /// redelivered like a command's.
    async fn answer(
        &self,
        handler: &dyn ErasedQuery,
        envelope: &CommandEnvelope,
        delivery: u64,
    ) -> (Disposition, &'static str) {
        let Some(remaining) = time_left(envelope.deadline_ms) else {
            return (self.reply_then_ack(envelope, ReplyBody::TimedOut).await, "expired");
        };
        let meta = CommandMeta {
            command_id: envelope.id,
            deadline_unix_ms: envelope.deadline_ms,
            delivery,
        };
        let called = tokio::time::timeout(
            remaining,
            catch_panic(handler.call(&self.pool, &envelope.payload, meta)),
        )
        .await;
        let (body, outcome) = match called {
            Err(_elapsed) => {
                return (self.reply_then_ack(envelope, ReplyBody::TimedOut).await, "expired");
            }
            Ok(Err(panic)) => return (Disposition::Retry(panic), "transient"),
            Ok(Ok(Called::Ok(reply))) => (ReplyBody::Ok { reply }, "ok"),
            Ok(Ok(Called::Failed(HandlerError::Rejected { code, message }))) => {
                (ReplyBody::Rejected { code, message }, "rejected")
            }
            Ok(Ok(Called::Failed(HandlerError::Transient(error)))) => {
                return (Disposition::Retry(error), "transient");
            }
            Ok(Ok(Called::Unusable(error))) => return (Disposition::DeadLetter(error), "failed"),
        };
        (self.reply_then_ack(envelope, body).await, outcome)
    }

    /// Steps 1 to 5 of the module docs; returns the disposition and the outcome label.
    async fn execute(
        &self,
        handler: &dyn ErasedHandler,
        envelope: &CommandEnvelope,
        delivery: u64,
    ) -> (Disposition, &'static str) {
        let retry = |what: &str, error: &dyn std::fmt::Display| {
            (Disposition::Retry(format!("{what}: {error}")), "transient")
        };
        let mut tx = match self.pool.begin().await {
            Ok(tx) => tx,
            Err(error) => return retry("postgres", &error),
        };
        match self.inbox.claim(&mut tx, &self.group, envelope.id).await {
            Ok(true) => {}
            Ok(false) => {
                // Processed before (a redelivery, or the caller retrying the id): answer as then.
                let stored = match self.inbox.reply(&mut tx, &self.group, envelope.id).await {
                    Ok(stored) => stored,
                    Err(error) => return retry("reading the stored reply", &error),
                };
                drop(tx);
                let body = stored
                    .and_then(|value| serde_json::from_value::<ReplyBody>(value).ok())
                    .unwrap_or_else(|| ReplyBody::Failed {
                        message: "the command id was processed before, with no stored reply"
                            .to_owned(),
                    });
                return (self.reply_then_ack(envelope, body).await, "replayed");
            }
            Err(error) => return retry("inserting the inbox row", &error),
        }
        let Some(remaining) = time_left(envelope.deadline_ms) else {
            drop(tx);
            return (self.reply_then_ack(envelope, ReplyBody::TimedOut).await, "expired");
        };
        let mut savepoint = match sqlx::Connection::begin(&mut *tx).await {
            Ok(savepoint) => savepoint,
            Err(error) => return retry("postgres", &error),
        };
        let meta = CommandMeta {
            command_id: envelope.id,
            deadline_unix_ms: envelope.deadline_ms,
            delivery,
        };
        // Bounded by the deadline: past it the caller has given up and the work would be
        // rolled back anyway.
        let called = tokio::time::timeout(
            remaining,
            catch_panic(handler.call(&mut savepoint, &envelope.payload, meta)),
        )
        .await;
        let (body, outcome) = match called {
            Err(_elapsed) => {
                drop(savepoint);
                drop(tx);
                return (self.reply_then_ack(envelope, ReplyBody::TimedOut).await, "expired");
            }
            Ok(Err(panic)) => return (Disposition::Retry(panic), "transient"),
            Ok(Ok(Called::Ok(reply))) => {
                if let Err(error) = savepoint.commit().await {
                    return retry("postgres", &error);
                }
                (ReplyBody::Ok { reply }, "ok")
            }
            Ok(Ok(Called::Failed(HandlerError::Rejected { code, message }))) => {
                if let Err(error) = savepoint.rollback().await {
                    return retry("postgres", &error);
                }
                (ReplyBody::Rejected { code, message }, "rejected")
            }
            Ok(Ok(Called::Failed(HandlerError::Transient(error)))) => {
                return (Disposition::Retry(error), "transient");
            }
            Ok(Ok(Called::Unusable(error))) => return (Disposition::DeadLetter(error), "failed"),
        };
        let stored = match serde_json::to_value(&body) {
            Ok(stored) => stored,
            Err(error) => {
                return (
                    Disposition::DeadLetter(format!("reply does not encode: {error}")),
                    "failed",
                );
            }
        };
        if let Err(error) = self.inbox.store_reply(&mut tx, &self.group, envelope.id, &stored).await
        {
            return retry("storing the reply", &error);
        }
        if time_left(envelope.deadline_ms).is_none() {
            drop(tx);
            return (self.reply_then_ack(envelope, ReplyBody::TimedOut).await, "expired");
        }
        if let Err(error) = tx.commit().await {
            // If the commit did happen, the redelivery finds the inbox row and replays.
            return retry("commit", &error);
        }
        (self.reply_then_ack(envelope, body).await, outcome)
    }

    /// Sends the reply; the message may be acknowledged only once the caller's answer is out.
    async fn reply_then_ack(&self, envelope: &CommandEnvelope, body: ReplyBody) -> Disposition {
        match self.reply(envelope, body).await {
            Ok(()) => Disposition::Done,
            Err(error) => Disposition::Retry(format!("sending the reply: {error}")),
        }
    }

    async fn reply(&self, envelope: &CommandEnvelope, body: ReplyBody) -> Result<(), BusError> {
        self.bus
            .send_reply(&envelope.reply_to, &ReplyEnvelope { command_id: envelope.id, body })
            .await
    }
}

/// The time until `deadline_ms`, or `None` if it has passed.
pub(crate) fn time_left(deadline_ms: u64) -> Option<Duration> {
    let now = now_unix_ms();
    (deadline_ms > now).then(|| Duration::from_millis(deadline_ms.saturating_sub(now)))
}
