//! Events: facts a service publishes through its outbox ([`Event`], see
//! [`publish`](crate::publish)), and the [`EventConsumer`] that applies them in another service.
//!
//! A consumer reads each topic's stream in a consumer group named after the consuming service.
//! Each event is handled inside one Postgres transaction that first inserts the inbox row
//! (`consumer` = the service, `message_id` = the event id): an event id seen before is
//! acknowledged without running the handler, so the relay's at-least-once delivery becomes
//! exactly-once application. The message is acknowledged only after the commit.

use std::collections::BTreeMap;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::{PgConnection, PgPool};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use uuid::Uuid;

use crate::bus::Bus;
use crate::handler::{HandlerError, catch_panic};
use crate::inbox::Inbox;
use crate::names::{Keys, check_name};
use crate::wire::EventEnvelope;
use crate::worker::{Delivery, Disposition, Processor, StreamWorker};
use crate::{BusError, telemetry};

/// An event: a fact about a service's state, published on the stream of its topic.
pub trait Event: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The topic, e.g. `payment.authorized` (1 to 100 characters of `[a-z0-9_.-]`).
    const TOPIC: &'static str;
}

/// What a handler knows about the event it handles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMeta {
    /// The event id (assigned when the event was written to the outbox).
    pub event_id: Uuid,
    /// Which delivery this is (1 for the first).
    pub delivery: u64,
}

/// Handles one event type, on the consumer's open transaction: its writes commit together
/// with the inbox row, or not at all.
pub trait EventHandler<E: Event>: Send + Sync + 'static {
    /// Applies `event` on `tx`.
    fn handle(
        &self,
        tx: &mut PgConnection,
        event: E,
        meta: EventMeta,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// An [`EventHandler`] made from a function; see [`event_handler_fn`].
pub struct EventHandlerFn<E, F> {
    f: F,
    _event: PhantomData<fn() -> E>,
}

impl<E, F> std::fmt::Debug for EventHandlerFn<E, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventHandlerFn").finish_non_exhaustive()
    }
}

/// An event handler from a function returning a boxed future:
/// `event_handler_fn(|tx, event: PaymentAuthorized, meta| Box::pin(async move { … }))`.
pub fn event_handler_fn<E, F>(f: F) -> EventHandlerFn<E, F>
where
    E: Event,
    F: for<'c> Fn(&'c mut PgConnection, E, EventMeta) -> BoxFuture<'c, Result<(), HandlerError>>
        + Send
        + Sync
        + 'static,
{
    EventHandlerFn { f, _event: PhantomData }
}

impl<E, F> EventHandler<E> for EventHandlerFn<E, F>
where
    E: Event,
    F: for<'c> Fn(&'c mut PgConnection, E, EventMeta) -> BoxFuture<'c, Result<(), HandlerError>>
        + Send
        + Sync
        + 'static,
{
    fn handle(
        &self,
        tx: &mut PgConnection,
        event: E,
        meta: EventMeta,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        (self.f)(tx, event, meta)
    }
}

enum Applied {
    Ok,
    Failed(HandlerError),
    Unusable(String),
}

trait ErasedHandler: Send + Sync {
    fn topic(&self) -> &'static str;
    fn call<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        payload: &'a str,
        meta: EventMeta,
    ) -> BoxFuture<'a, Applied>;
}

struct Typed<E, H> {
    handler: H,
    _event: PhantomData<fn() -> E>,
}

impl<E: Event, H: EventHandler<E>> ErasedHandler for Typed<E, H> {
    fn topic(&self) -> &'static str {
        E::TOPIC
    }

    fn call<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        payload: &'a str,
        meta: EventMeta,
    ) -> BoxFuture<'a, Applied> {
        Box::pin(async move {
            let event: E = match serde_json::from_str(payload) {
                Ok(event) => event,
                Err(error) => {
                    return Applied::Unusable(format!("payload is not a {}: {error}", E::TOPIC));
                }
            };
            match self.handler.handle(tx, event, meta).await {
                Ok(()) => Applied::Ok,
                Err(error) => Applied::Failed(error),
            }
        })
    }
}

/// Applies events of one or more topics in the bus's service: per topic, a consumer in the
/// group named after the service, with one handler.
pub struct EventConsumer {
    bus: Bus,
    pool: PgPool,
    handlers: BTreeMap<&'static str, Arc<dyn ErasedHandler>>,
}

impl std::fmt::Debug for EventConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventConsumer")
            .field("topics", &self.handlers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl EventConsumer {
    /// A consumer for the bus's service, using `pool` for its transactions.
    pub fn new(bus: &Bus, pool: PgPool) -> Self {
        Self { bus: bus.clone(), pool, handlers: BTreeMap::new() }
    }

    /// Registers the handler of event `E` (one per topic).
    pub fn on<E: Event, H: EventHandler<E>>(mut self, handler: H) -> Result<Self, BusError> {
        check_name("topic", E::TOPIC)?;
        if self.handlers.contains_key(E::TOPIC) {
            return Err(BusError::Config(format!("topic {} has a handler already", E::TOPIC)));
        }
        self.handlers.insert(E::TOPIC, Arc::new(Typed::<E, H> { handler, _event: PhantomData }));
        Ok(self)
    }

    /// Consumes until `cancel` fires; in-flight events finish first. Fails at once if no
    /// handler is registered; Redis and Postgres errors are retried, not returned.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), BusError> {
        if self.handlers.is_empty() {
            return Err(BusError::Config("event consumer has no handlers".to_owned()));
        }
        // A child token, so a failing worker stops its siblings without touching the caller's.
        let cancel = cancel.child_token();
        let mut workers = JoinSet::new();
        for (topic, handler) in self.handlers {
            let processor = EventProcessor {
                pool: self.pool.clone(),
                group: self.bus.config().service.clone(),
                inbox: Inbox::new(self.bus.schema()),
                topic,
                handler,
            };
            let worker = StreamWorker::new(&self.bus, Keys::event_stream_name(topic), processor);
            workers.spawn(worker.run(cancel.clone()));
        }
        let mut result = Ok(());
        while let Some(joined) = workers.join_next().await {
            match joined {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    // A worker that cannot run (no Redis client) stops the consumer.
                    cancel.cancel();
                    result = Err(error);
                }
                Err(error) => {
                    cancel.cancel();
                    result =
                        Err(BusError::Failed { message: format!("event worker failed: {error}") });
                }
            }
        }
        result
    }
}

struct EventProcessor {
    pool: PgPool,
    group: String,
    inbox: Inbox,
    topic: &'static str,
    handler: Arc<dyn ErasedHandler>,
}

impl Processor for EventProcessor {
    async fn process(&self, delivery: &Delivery) -> Disposition {
        let envelope = match EventEnvelope::from_fields(&delivery.fields) {
            Ok(envelope) => envelope,
            Err(error) => return Disposition::DeadLetter(format!("malformed event: {error}")),
        };
        if envelope.topic != self.topic {
            return Disposition::DeadLetter(format!(
                "event of topic {:?} on the stream of {}",
                envelope.topic, self.topic
            ));
        }
        let span = tracing::info_span!(
            "bus.event",
            topic = self.topic,
            event_id = %envelope.id,
            group = %self.group,
            delivery = delivery.count,
            outcome = tracing::field::Empty,
        );
        envelope.trace.set_parent_of(&span);
        let (disposition, outcome) =
            self.apply(&envelope, delivery.count).instrument(span.clone()).await;
        span.record("outcome", outcome);
        telemetry::event_handled(self.handler.topic(), &self.group, outcome);
        disposition
    }

    async fn on_dead_letter(&self, _delivery: &Delivery, _reason: &str) {
        // Nobody waits for an event; the dead-letter stream is where it is seen.
    }
}

impl EventProcessor {
    async fn apply(&self, envelope: &EventEnvelope, delivery: u64) -> (Disposition, &'static str) {
        let retry = |what: &str, error: &dyn std::fmt::Display| {
            (Disposition::Retry(format!("{what}: {error}")), "transient")
        };
        let mut tx = match self.pool.begin().await {
            Ok(tx) => tx,
            Err(error) => return retry("postgres", &error),
        };
        match self.inbox.claim(&mut tx, &self.group, envelope.id).await {
            Ok(true) => {}
            Ok(false) => return (Disposition::Done, "duplicate"),
            Err(error) => return retry("inserting the inbox row", &error),
        }
        let meta = EventMeta { event_id: envelope.id, delivery };
        match catch_panic(self.handler.call(&mut tx, &envelope.payload, meta)).await {
            Err(panic) => (Disposition::Retry(panic), "transient"),
            Ok(Applied::Ok) => match tx.commit().await {
                Ok(()) => (Disposition::Done, "ok"),
                // If the commit did happen, the redelivery finds the inbox row.
                Err(error) => retry("commit", &error),
            },
            Ok(Applied::Failed(HandlerError::Transient(error))) => {
                (Disposition::Retry(error), "transient")
            }
            Ok(Applied::Failed(HandlerError::Rejected { code, message })) => {
                (Disposition::DeadLetter(format!("rejected ({code}): {message}")), "failed")
            }
            Ok(Applied::Unusable(error)) => (Disposition::DeadLetter(error), "failed"),
        }
    }
}
