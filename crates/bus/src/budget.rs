//! What the bus may put in Redis: every message is at most [`MESSAGE_BYTES_MAX`] (a larger
//! command or event is refused before it is written, a larger reply is answered "failed"), and
//! every stream is kept within `stream_max_bytes` of Redis memory.
//!
//! `XADD … MAXLEN ~ stream_maxlen` caps a stream's length on every write, but a length says
//! little about memory when messages differ in size. So each process that writes to streams
//! also measures them: a keeper task, every [`CHECK_INTERVAL`], takes each stream written to
//! since its last round, reads `MEMORY USAGE` (a sampled estimate, cheap) and, when above the
//! budget, trims it with `XTRIM MAXLEN ~` to the length that brings it to nine tenths of the
//! budget. A stream overshoots its budget by at most what its writers add within one interval,
//! and is back within it one interval after they stop. What is trimmed is the oldest entries: a consumer group
//! that far behind loses them (logged when it meets a trimmed pending entry, and counted in
//! `awx_bus_stream_trimmed_total{kind}`), so size the budget for the backlog a stopped consumer
//! must survive, and Redis's `maxmemory` for the sum of the budgets (see `docs/operating.md`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::BusError;
use crate::connection::RedisConn;

/// The largest command payload, event payload or reply body the bus carries, in bytes.
pub const MESSAGE_BYTES_MAX: usize = 1024 * 1024;

/// The smallest `stream_max_bytes`.
pub(crate) const STREAM_BYTES_MIN: u64 = 1024 * 1024;

/// How often one process measures one stream it writes to.
pub(crate) const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Refuses a message of `bytes` (what it is, for the error).
pub(crate) fn check_size(what: &str, bytes: usize) -> Result<(), BusError> {
    if bytes > MESSAGE_BYTES_MAX {
        return Err(BusError::TooLarge { what: what.to_owned(), bytes, max: MESSAGE_BYTES_MAX });
    }
    Ok(())
}

/// The kind of a stream, for the metric label (stream keys of reply streams carry instance
/// ids, so the key itself is not a label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamKind {
    Command,
    Event,
    Reply,
    DeadLetter,
    Notice,
}

impl StreamKind {
    fn label(self) -> &'static str {
        match self {
            Self::Command => "command",
            Self::Event => "event",
            Self::Reply => "reply",
            Self::DeadLetter => "dead_letter",
            Self::Notice => "notice",
        }
    }
}

/// The memory budget of each stream, and the streams this process wrote to since it last
/// measured them.
#[derive(Debug)]
pub(crate) struct StreamBudget {
    max_bytes: u64,
    written: Arc<Mutex<HashMap<String, StreamKind>>>,
    keeper: OnceLock<()>,
}

impl StreamBudget {
    pub(crate) fn new(max_bytes: u64) -> Self {
        Self { max_bytes, written: Arc::default(), keeper: OnceLock::new() }
    }

    /// After a write to `key`: notes it for the keeper, which measures every stream written
    /// to once per [`CHECK_INTERVAL`] and trims it to its budget (the writer does not wait).
    /// The keeper starts with the first write and stops with `stop`.
    pub(crate) fn after_write(
        &self,
        conn: &RedisConn,
        stop: &CancellationToken,
        key: &str,
        kind: StreamKind,
    ) {
        {
            let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
            if !written.contains_key(key) {
                written.insert(key.to_owned(), kind);
            }
        }
        self.keeper.get_or_init(|| {
            let (conn, stop, written) = (conn.clone(), stop.clone(), self.written.clone());
            tokio::spawn(keep(conn, stop, written, self.max_bytes));
        });
    }
}

/// Measures, every [`CHECK_INTERVAL`], the streams written to since the last time.
async fn keep(
    conn: RedisConn,
    stop: CancellationToken,
    written: Arc<Mutex<HashMap<String, StreamKind>>>,
    max_bytes: u64,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(CHECK_INTERVAL) => {}
        }
        let due = std::mem::take(&mut *written.lock().unwrap_or_else(PoisonError::into_inner));
        for (key, kind) in due {
            if let Err(error) = enforce(conn.clone(), &key, kind, max_bytes).await {
                tracing::warn!(stream = %key, %error, "measuring a stream's memory failed");
            }
        }
    }
}

/// Trims `key` to nine tenths of `max_bytes` when it uses more; returns the entries removed.
pub(crate) async fn enforce(
    mut conn: RedisConn,
    key: &str,
    kind: StreamKind,
    max_bytes: u64,
) -> Result<u64, BusError> {
    let used: Option<u64> =
        redis::cmd("MEMORY").arg("USAGE").arg(key).query_async(&mut conn).await?;
    let Some(used) = used.filter(|used| *used > max_bytes) else {
        return Ok(0);
    };
    let length: u64 = redis::cmd("XLEN").arg(key).query_async(&mut conn).await?;
    let target = max_bytes / 10 * 9;
    let keep =
        u64::try_from(u128::from(length) * u128::from(target) / u128::from(used)).unwrap_or(length);
    let removed: u64 = redis::cmd("XTRIM")
        .arg(key)
        .arg("MAXLEN")
        .arg("~")
        .arg(keep)
        .query_async(&mut conn)
        .await?;
    metrics::counter!("awx_bus_stream_trimmed_total", "kind" => kind.label()).increment(removed);
    tracing::warn!(
        stream = %key, used_bytes = used, budget_bytes = max_bytes, length, removed,
        "a stream outgrew its memory budget; its oldest entries were trimmed"
    );
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_above_the_maximum_are_refused() {
        assert!(check_size("command x", MESSAGE_BYTES_MAX).is_ok());
        let error = check_size("command x", MESSAGE_BYTES_MAX + 1).unwrap_err().to_string();
        assert!(error.contains("command x") && error.contains("1048577"), "{error}");
    }
}
