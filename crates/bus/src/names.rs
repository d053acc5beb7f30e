//! Names the bus builds Redis keys and SQL from: the service's Postgres [`Schema`], the Redis
//! [`Keys`], and the checks that command families, command names, topics and groups are safe to
//! embed in both.
//!
//! Every name is checked once, where it enters (configuration, handler registration, publish),
//! so the code that formats keys and SQL never sees an unchecked string.

use std::fmt;

use uuid::Uuid;

use crate::BusError;

/// The longest family, command name, topic or service name (the outbox's `topic` check allows
/// 100 characters).
const NAME_LEN_MAX: usize = 100;

/// The longest key prefix.
const PREFIX_LEN_MAX: usize = 100;

/// The longest Postgres identifier (`NAMEDATALEN - 1`).
const SCHEMA_LEN_MAX: usize = 63;

/// A Postgres schema holding a service's `outbox` and `inbox` tables (installed by
/// `public.awx_bus_install(schema)`).
///
/// Checked to be a plain lower-case identifier (`[a-z_][a-z0-9_]*`, at most 63 characters), so
/// it can be embedded in SQL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Schema(String);

impl Schema {
    /// Checks `name` and wraps it.
    pub fn new(name: &str) -> Result<Self, BusError> {
        let mut chars = name.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_');
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !first_ok || !rest_ok || name.len() > SCHEMA_LEN_MAX {
            return Err(BusError::Config(format!(
                "schema {name:?} must be a lower-case SQL identifier ([a-z_][a-z0-9_]*, at most \
                 {SCHEMA_LEN_MAX} characters)"
            )));
        }
        Ok(Self(name.to_owned()))
    }

    /// The schema's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `"<schema>".<table>`, for SQL text.
    pub(crate) fn table(&self, table: &str) -> String {
        format!("\"{}\".{table}", self.0)
    }

    /// The `NOTIFY` channel the outbox of this schema signals on.
    pub(crate) fn outbox_channel(&self) -> String {
        format!("awx_outbox_{}", self.0)
    }
}

impl fmt::Display for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a command family, command name, topic or service (group) name: 1 to 100 characters
/// of `[a-z0-9_.-]`, the same rule as the outbox's `topic` column.
pub(crate) fn check_name(kind: &str, name: &str) -> Result<(), BusError> {
    let ok = !name.is_empty()
        && name.len() <= NAME_LEN_MAX
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(BusError::Config(format!(
            "{kind} {name:?} must be 1 to {NAME_LEN_MAX} characters of [a-z0-9_.-]"
        )))
    }
}

/// The Redis keys of one deployment, all under its prefix.
///
/// The part in braces is the key's Redis Cluster hash tag: only it decides the slot. Each
/// stream has its own tag (its stream name), shared by its dead-letter stream and its last-error
/// hash, so every pipeline the bus sends for one stream (`XACK` with `HDEL`, `XADD` with
/// `EXPIRE`) stays in one slot, while different streams spread over the cluster. No command or
/// script touches two streams, and each blocking read reads one stream.
///
/// | key | what |
/// |---|---|
/// | `<prefix>:{cmd:<family>}` | the request stream of a command family |
/// | `<prefix>:reply:{<instance_id>}` | the reply stream of one caller process instance (trimmed, with a TTL) |
/// | `<prefix>:{evt:<topic>}` | an event stream |
/// | `<prefix>:{ntc:<topic>}` | a notice stream (read by every listener, trimmed to `NOTICE_STREAM_MAXLEN`) |
/// | `<prefix>:dlq:{<stream>}` | dead letters of a stream, `<stream>` being `cmd:<family>` or `evt:<topic>` (same slot as the stream) |
/// | `<prefix>:lasterror:<group>:{<stream>}` | a hash: the last error per pending entry id, read when dead-lettering (with a TTL; same slot as the stream) |
/// | `<prefix>:rl:{<scope>}:<name>` | a rate limit's state ([`crate::ratelimit`]); the limits of one scope share a slot, as the limiter's script needs |
///
/// A prefix may not contain braces, so the first braces of every key are the tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix` (non-empty, at most 100 characters, no whitespace, no braces: the
    /// braces of a key are its Redis Cluster hash tag).
    pub fn new(prefix: &str) -> Result<Self, BusError> {
        if prefix.is_empty()
            || prefix.len() > PREFIX_LEN_MAX
            || prefix.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '{' | '}'))
        {
            return Err(BusError::Config(format!(
                "prefix {prefix:?} must be 1 to {PREFIX_LEN_MAX} characters without whitespace or \
                 braces"
            )));
        }
        Ok(Self { prefix: prefix.to_owned() })
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `cmd:<family>`: the name of a command family's stream (its hash tag), as dead-letter keys
    /// and metrics use it.
    pub fn command_stream_name(family: &str) -> String {
        format!("cmd:{family}")
    }

    /// `evt:<topic>`: the name of a topic's stream (its hash tag).
    pub fn event_stream_name(topic: &str) -> String {
        format!("evt:{topic}")
    }

    /// `<prefix>:{cmd:<family>}`.
    pub fn command_stream(&self, family: &str) -> String {
        self.stream(&Self::command_stream_name(family))
    }

    /// `<prefix>:reply:{<instance_id>}`.
    pub fn reply_stream(&self, instance_id: Uuid) -> String {
        format!("{}:reply:{{{}}}", self.prefix, instance_id.simple())
    }

    /// The start every reply stream key has (`<prefix>:reply:`).
    pub(crate) fn reply_stream_start(&self) -> String {
        format!("{}:reply:", self.prefix)
    }

    /// `<prefix>:{evt:<topic>}`.
    pub fn event_stream(&self, topic: &str) -> String {
        self.stream(&Self::event_stream_name(topic))
    }

    /// `<prefix>:{<stream_name>}`: the key of a stream named `cmd:<family>` or `evt:<topic>`.
    pub fn stream(&self, stream_name: &str) -> String {
        format!("{}:{{{stream_name}}}", self.prefix)
    }

    /// `<prefix>:dlq:{<stream_name>}`, where `stream_name` is `cmd:<family>` or `evt:<topic>`:
    /// in the stream's slot.
    pub fn dead_letter_stream(&self, stream_name: &str) -> String {
        format!("{}:dlq:{{{stream_name}}}", self.prefix)
    }

    /// `<prefix>:lasterror:<group>:{<stream_name>}`: in the stream's slot.
    pub(crate) fn last_errors(&self, group: &str, stream_name: &str) -> String {
        format!("{}:lasterror:{group}:{{{stream_name}}}", self.prefix)
    }

    /// `<prefix>:rl:{<scope>}:<name>`: a rate limit's key; every limit of one scope shares a
    /// slot.
    pub fn rate_limit(&self, scope: &str, name: &str) -> String {
        format!("{}:rl:{{{scope}}}:{name}", self.prefix)
    }
}

/// The Redis Cluster hash tag of `key`: what decides its slot (the whole key without a tag).
#[cfg(test)]
pub(crate) fn hash_tag(key: &str) -> &str {
    if let Some(open) = key.find('{') {
        let rest = &key[open + 1..];
        if let Some(close) = rest.find('}')
            && close > 0
        {
            return &rest[..close];
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_are_plain_identifiers() {
        assert!(Schema::new("ledger").is_ok());
        assert!(Schema::new("_x9").is_ok());
        for bad in ["", "Ledger", "9x", "a-b", "a\"b", "a;drop", &"a".repeat(64)] {
            assert!(Schema::new(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(
            Schema::new("ledger").map(|s| s.table("outbox")).ok(),
            Some("\"ledger\".outbox".into())
        );
    }

    #[test]
    fn names_follow_the_outbox_topic_rule() {
        assert!(check_name("topic", "payment.authorized").is_ok());
        assert!(check_name("topic", "a_b-c.9").is_ok());
        for bad in ["", "Payment", "a b", "a:b", "a{b}", &"a".repeat(101)] {
            assert!(check_name("topic", bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn keys_carry_the_prefix() {
        let keys = Keys::new("awx").unwrap();
        assert_eq!(keys.command_stream("ledger"), "awx:{cmd:ledger}");
        assert_eq!(keys.event_stream("payment.authorized"), "awx:{evt:payment.authorized}");
        assert_eq!(keys.dead_letter_stream("cmd:ledger"), "awx:dlq:{cmd:ledger}");
        assert_eq!(keys.last_errors("ledger", "cmd:ledger"), "awx:lasterror:ledger:{cmd:ledger}");
        assert_eq!(keys.rate_limit("pay", "global"), "awx:rl:{pay}:global");
        let id = Uuid::nil();
        assert_eq!(keys.reply_stream(id), format!("awx:reply:{{{}}}", id.simple()));
        assert!(keys.reply_stream(id).starts_with(&keys.reply_stream_start()));
        assert!(Keys::new("").is_err());
        assert!(Keys::new("a b").is_err());
        assert!(Keys::new("a{b").is_err(), "a brace in the prefix would move the hash tag");
        assert!(Keys::new("a}b").is_err());
    }

    #[test]
    fn keys_used_together_share_a_slot_and_streams_do_not() {
        let keys = Keys::new("awx").unwrap();
        for stream_name in ["cmd:ledger", "evt:payment.authorized"] {
            let stream = keys.stream(stream_name);
            // A stream, its dead letters and its last errors share one tag, so one slot.
            assert_eq!(hash_tag(&stream), stream_name);
            assert_eq!(hash_tag(&keys.dead_letter_stream(stream_name)), stream_name);
            assert_eq!(hash_tag(&keys.last_errors("svc", stream_name)), stream_name);
        }
        // The limits of one scope (the limiter's script touches them together) share a slot.
        assert_eq!(hash_tag(&keys.rate_limit("pay", "key:a")), "pay");
        assert_eq!(hash_tag(&keys.rate_limit("pay", "global")), "pay");
        // Different streams have different tags, so they spread over the cluster.
        let streams = [
            keys.command_stream("ledger"),
            keys.command_stream("policy"),
            keys.event_stream("payment.authorized"),
            keys.reply_stream(Uuid::nil()),
        ];
        let tags: std::collections::HashSet<&str> =
            streams.iter().map(|key| hash_tag(key)).collect();
        assert_eq!(tags.len(), 4);
    }
}
