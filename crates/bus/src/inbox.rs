//! The inbox (`<schema>.inbox`): one row per message a consumer group has processed, written in
//! the same transaction as the handler's effects, with the stored reply for commands.
//!
//! The row is inserted first, with `ON CONFLICT DO NOTHING`: a duplicate delivered concurrently
//! blocks on the first one's uncommitted row until it commits (then sees the conflict) or
//! rolls back (then proceeds). So whatever the redeliveries, a message's effects commit once.

use sqlx::{AssertSqlSafe, PgConnection};
use uuid::Uuid;

use crate::names::Schema;

/// The inbox statements of one schema.
#[derive(Debug, Clone)]
pub(crate) struct Inbox {
    insert: String,
    insert_with_reply: String,
    select_reply: String,
    store_reply: String,
}

impl Inbox {
    pub(crate) fn new(schema: &Schema) -> Self {
        let table = schema.table("inbox");
        Self {
            insert: format!(
                "INSERT INTO {table} (consumer, message_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"
            ),
            insert_with_reply: format!(
                "INSERT INTO {table} (consumer, message_id, reply) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
            ),
            select_reply: format!(
                "SELECT reply FROM {table} WHERE consumer = $1 AND message_id = $2"
            ),
            store_reply: format!(
                "UPDATE {table} SET reply = $3 WHERE consumer = $1 AND message_id = $2"
            ),
        }
    }

    /// Records `message_id` as processed by `consumer`; false if it already was (committed).
    pub(crate) async fn claim(
        &self,
        conn: &mut PgConnection,
        consumer: &str,
        message_id: Uuid,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(AssertSqlSafe(self.insert.as_str()))
            .bind(consumer)
            .bind(message_id)
            .execute(conn)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records `message_id` as processed by `consumer` with its reply at once; false if it
    /// already was.
    pub(crate) async fn claim_with_reply(
        &self,
        conn: &mut PgConnection,
        consumer: &str,
        message_id: Uuid,
        reply: &serde_json::Value,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(AssertSqlSafe(self.insert_with_reply.as_str()))
            .bind(consumer)
            .bind(message_id)
            .bind(reply)
            .execute(conn)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The stored reply of a processed message (`None` if the row has none).
    pub(crate) async fn reply(
        &self,
        conn: &mut PgConnection,
        consumer: &str,
        message_id: Uuid,
    ) -> Result<Option<serde_json::Value>, sqlx::Error> {
        let reply: Option<Option<serde_json::Value>> =
            sqlx::query_scalar(AssertSqlSafe(self.select_reply.as_str()))
                .bind(consumer)
                .bind(message_id)
                .fetch_optional(conn)
                .await?;
        Ok(reply.flatten())
    }

    /// Stores the reply on the row [`Inbox::claim`] inserted.
    pub(crate) async fn store_reply(
        &self,
        conn: &mut PgConnection,
        consumer: &str,
        message_id: Uuid,
        reply: &serde_json::Value,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(AssertSqlSafe(self.store_reply.as_str()))
            .bind(consumer)
            .bind(message_id)
            .bind(reply)
            .execute(conn)
            .await?;
        Ok(())
    }
}
