//! Queries: commands of [`Kind::Query`](crate::Kind::Query), which change nothing and are
//! answered without the inbox. A [`QueryHandler`] gets the server's pool, not a transaction:
//! there is no inbox row, no stored reply and no commit, so asking writes nothing to Postgres.
//! A redelivered or retried query is asked again, which is harmless because it only reads.
//!
//! What makes a command a query is its declared [`Kind`](crate::Kind); the server refuses to
//! register a query as a state change or the other way round, so every new command chooses.

use std::future::Future;
use std::marker::PhantomData;

use futures::future::BoxFuture;
use sqlx::PgPool;

use crate::command::{Called, Command, CommandMeta};
use crate::handler::HandlerError;

/// Answers one query type. It reads with `pool` (each statement on its own, or in a read-only
/// transaction of its own when it needs one snapshot) and must not write: a query's effects
/// would not be exactly once.
///
/// ```text
/// impl QueryHandler<Balances> for Views {
///     async fn handle(&self, pool: &PgPool, query: Balances, meta: CommandMeta)
///         -> Result<BalancesReply, HandlerError> { /* … */ }
/// }
/// ```
pub trait QueryHandler<C: Command>: Send + Sync + 'static {
    /// Answers `query`.
    fn handle(
        &self,
        pool: &PgPool,
        query: C,
        meta: CommandMeta,
    ) -> impl Future<Output = Result<C::Reply, HandlerError>> + Send;
}

pub(crate) trait ErasedQuery: Send + Sync {
    fn name(&self) -> &'static str;
    fn call<'a>(
        &'a self,
        pool: &'a PgPool,
        payload: &'a str,
        meta: CommandMeta,
    ) -> BoxFuture<'a, Called>;
}

pub(crate) struct TypedQuery<C, H> {
    handler: H,
    _query: PhantomData<fn() -> C>,
}

impl<C, H> TypedQuery<C, H> {
    pub(crate) fn new(handler: H) -> Self {
        Self { handler, _query: PhantomData }
    }
}

impl<C: Command, H: QueryHandler<C>> ErasedQuery for TypedQuery<C, H> {
    fn name(&self) -> &'static str {
        C::NAME
    }

    fn call<'a>(
        &'a self,
        pool: &'a PgPool,
        payload: &'a str,
        meta: CommandMeta,
    ) -> BoxFuture<'a, Called> {
        Box::pin(async move {
            let query: C = match serde_json::from_str(payload) {
                Ok(query) => query,
                Err(error) => {
                    return Called::Unusable(format!("payload is not a {}: {error}", C::NAME));
                }
            };
            match self.handler.handle(pool, query, meta).await {
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
