//! Notices: hints one service broadcasts to every replica of another, for caches that have a
//! way to do without them.
//!
//! An [`Event`](crate::Event) is a fact: it leaves through the outbox, each consuming *service*
//! applies it once (one replica of it), and it is never lost. A [`Notice`] is the opposite on
//! every count: [`Bus::notify`] writes it to `<prefix>:{ntc:<topic>}` at once (no outbox, no
//! transaction), *every* [`NoticeListener`] reads it (every replica, no consumer group, nothing
//! pending, no inbox), and it may be lost (Redis restarted, a listener that was down, a stream
//! trimmed to its last `NOTICE_STREAM_MAXLEN` entries). So a notice may only ever make
//! something faster: its reader must answer correctly without it, for example by asking the
//! owning service when its cache has nothing. A listener reads from where it started; what was
//! broadcast before that is not read.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use redis::streams::StreamReadReply;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::BusError;
use crate::backoff::Backoff;
use crate::budget::{self, StreamKind};
use crate::bus::Bus;
use crate::connection::RedisConn;
use crate::names::check_name;
use crate::wire::text;

/// How many notices a topic's stream keeps (`XADD … MAXLEN ~`): a listener further behind than
/// that misses the oldest, which a notice's reader must survive anyway.
pub const NOTICE_STREAM_MAXLEN: u64 = 10_000;

/// Notices read per round trip.
const READ_COUNT: usize = 512;

/// The field that carries a notice's JSON.
const BODY: &str = "b";

/// A hint broadcast to every listening replica; see the [module docs](self).
pub trait Notice: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The topic (1 to 100 characters of `[a-z0-9_.-]`).
    const TOPIC: &'static str;
}

impl Bus {
    /// Broadcasts `notice` to every listener of its topic. A failure is returned, but a notice
    /// that was not written must never matter for correctness (the module docs say why).
    pub async fn notify<N: Notice>(&self, notice: &N) -> Result<(), BusError> {
        check_name("topic", N::TOPIC)?;
        let body = serde_json::to_string(notice)
            .map_err(|error| BusError::Codec(format!("notice {}: {error}", N::TOPIC)))?;
        budget::check_size("the notice", body.len())?;
        let key = self.keys().stream(&format!("ntc:{}", N::TOPIC));
        self.xadd(&key, NOTICE_STREAM_MAXLEN, &[(BODY, body)]).await?;
        self.after_write(&key, StreamKind::Notice);
        Ok(())
    }
}

/// Reads one topic's notices on a connection of its own and hands each to a function, in the
/// order they were written. Every listener reads every notice written after it started.
pub struct NoticeListener<N> {
    conn: RedisConn,
    key: String,
    block_ms: u64,
    on_notice: Arc<dyn Fn(N) + Send + Sync>,
    _notice: PhantomData<fn() -> N>,
}

impl<N> std::fmt::Debug for NoticeListener<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoticeListener").field("key", &self.key).finish_non_exhaustive()
    }
}

impl<N: Notice> NoticeListener<N> {
    /// A listener of `N`'s topic on `bus` that calls `on_notice` for each notice (it must not
    /// block: it runs on the reading task).
    pub fn new(bus: &Bus, on_notice: impl Fn(N) + Send + Sync + 'static) -> Result<Self, BusError> {
        check_name("topic", N::TOPIC)?;
        Ok(Self {
            conn: bus.dedicated_connection()?,
            key: bus.keys().stream(&format!("ntc:{}", N::TOPIC)),
            block_ms: u64::try_from(bus.tuning().block.as_millis()).unwrap_or(u64::MAX),
            on_notice: Arc::new(on_notice),
            _notice: PhantomData,
        })
    }

    /// Reads until `stop` is cancelled. After a Redis failure it goes on from the last notice
    /// it read (what was trimmed meanwhile is missed, as a notice may be).
    pub async fn run(mut self, stop: CancellationToken) {
        // `$` on the first read: only what is written from now on.
        let mut last_id = "$".to_owned();
        let mut backoff = Backoff::new(Duration::from_secs(2));
        loop {
            let mut cmd = redis::cmd("XREAD");
            cmd.arg("COUNT").arg(READ_COUNT).arg("BLOCK").arg(self.block_ms);
            cmd.arg("STREAMS").arg(&self.key).arg(&last_id);
            let read = cmd.query_async::<Option<StreamReadReply>>(&mut self.conn);
            let result = tokio::select! {
                () = stop.cancelled() => return,
                result = read => result,
            };
            match result {
                Ok(reply) => {
                    backoff.reset();
                    let entries = reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids);
                    for entry in entries {
                        last_id.clone_from(&entry.id);
                        let notice =
                            text(&entry.map, BODY).ok_or_else(|| "no body".to_owned()).and_then(
                                |body| serde_json::from_str::<N>(&body).map_err(|e| e.to_string()),
                            );
                        match notice {
                            Ok(notice) => (self.on_notice)(notice),
                            Err(error) => {
                                tracing::warn!(topic = N::TOPIC, entry_id = %entry.id, %error, "malformed notice ignored");
                            }
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(topic = N::TOPIC, %error, "reading notices failed; retrying");
                    if !backoff.wait(&stop).await {
                        return;
                    }
                }
            }
        }
    }
}
