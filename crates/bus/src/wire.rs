//! What travels in stream entries: the fields of a command, a reply and an event, and the JSON
//! form of a command's outcome (sent as the reply and stored in the inbox).
//!
//! Every entry carries `v` (the envelope version, `1`); a reader refuses versions it does not
//! know instead of guessing, and such an entry is dead-lettered. Payloads are JSON text in one
//! field, so a stream entry is flat and readable with `redis-cli`.

use std::collections::HashMap;

use redis::Value;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::trace::TraceFields;

/// The envelope version written, and the only one read.
pub(crate) const VERSION: &str = "1";

/// Field names.
pub(crate) mod field {
    pub(crate) const VERSION: &str = "v";
    pub(crate) const ID: &str = "id";
    pub(crate) const NAME: &str = "name";
    pub(crate) const TOPIC: &str = "topic";
    pub(crate) const PAYLOAD: &str = "payload";
    pub(crate) const REPLY_TO: &str = "reply_to";
    pub(crate) const DEADLINE_MS: &str = "deadline_ms";
    pub(crate) const COMMAND_ID: &str = "command_id";
    pub(crate) const BODY: &str = "body";
    pub(crate) const TRACEPARENT: &str = "traceparent";
    pub(crate) const TRACESTATE: &str = "tracestate";
}

/// A command on its family's stream.
#[derive(Debug, Clone)]
pub(crate) struct CommandEnvelope {
    pub(crate) id: Uuid,
    pub(crate) name: String,
    pub(crate) payload: String,
    pub(crate) reply_to: String,
    pub(crate) deadline_ms: u64,
    pub(crate) trace: TraceFields,
}

impl CommandEnvelope {
    pub(crate) fn to_fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            (field::VERSION, VERSION.to_owned()),
            (field::ID, self.id.to_string()),
            (field::NAME, self.name.clone()),
            (field::PAYLOAD, self.payload.clone()),
            (field::REPLY_TO, self.reply_to.clone()),
            (field::DEADLINE_MS, self.deadline_ms.to_string()),
        ];
        self.trace.append_to(&mut fields);
        fields
    }

    pub(crate) fn from_fields(fields: &HashMap<String, Value>) -> Result<Self, String> {
        check_version(fields)?;
        Ok(Self {
            id: uuid_field(fields, field::ID)?,
            name: required(fields, field::NAME)?,
            payload: required(fields, field::PAYLOAD)?,
            reply_to: required(fields, field::REPLY_TO)?,
            deadline_ms: required(fields, field::DEADLINE_MS)?
                .parse()
                .map_err(|_| "deadline_ms is not a number".to_owned())?,
            trace: TraceFields::from_fields(fields),
        })
    }
}

/// An event on its topic's stream.
#[derive(Debug, Clone)]
pub(crate) struct EventEnvelope {
    pub(crate) id: Uuid,
    pub(crate) topic: String,
    pub(crate) payload: String,
    pub(crate) trace: TraceFields,
}

impl EventEnvelope {
    pub(crate) fn to_fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            (field::VERSION, VERSION.to_owned()),
            (field::ID, self.id.to_string()),
            (field::TOPIC, self.topic.clone()),
            (field::PAYLOAD, self.payload.clone()),
        ];
        self.trace.append_to(&mut fields);
        fields
    }

    pub(crate) fn from_fields(fields: &HashMap<String, Value>) -> Result<Self, String> {
        check_version(fields)?;
        Ok(Self {
            id: uuid_field(fields, field::ID)?,
            topic: required(fields, field::TOPIC)?,
            payload: required(fields, field::PAYLOAD)?,
            trace: TraceFields::from_fields(fields),
        })
    }
}

/// The outcome of a command: what the caller receives, and (for `Ok` and `Rejected`) what the
/// inbox stores so that a redelivered or retried command gets the same answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub(crate) enum ReplyBody {
    /// The handler's reply.
    Ok { reply: serde_json::Value },
    /// The handler's final refusal.
    Rejected { code: String, message: String },
    /// The command reached the server, or finished, after its deadline; nothing was executed.
    TimedOut,
    /// The bus could not process the command (unknown, malformed, dead-lettered).
    Failed { message: String },
}

/// A reply on the caller's reply stream.
#[derive(Debug, Clone)]
pub(crate) struct ReplyEnvelope {
    pub(crate) command_id: Uuid,
    pub(crate) body: ReplyBody,
}

impl ReplyEnvelope {
    pub(crate) fn to_fields(&self) -> Result<Vec<(&'static str, String)>, serde_json::Error> {
        Ok(vec![
            (field::VERSION, VERSION.to_owned()),
            (field::COMMAND_ID, self.command_id.to_string()),
            (field::BODY, serde_json::to_string(&self.body)?),
        ])
    }

    pub(crate) fn from_fields(fields: &HashMap<String, Value>) -> Result<Self, String> {
        check_version(fields)?;
        let body = required(fields, field::BODY)?;
        Ok(Self {
            command_id: uuid_field(fields, field::COMMAND_ID)?,
            body: serde_json::from_str(&body).map_err(|error| format!("reply body: {error}"))?,
        })
    }
}

/// A field as text, if present and valid UTF-8.
pub(crate) fn text(fields: &HashMap<String, Value>, name: &str) -> Option<String> {
    fields.get(name).and_then(|value| redis::from_redis_value_ref::<String>(value).ok())
}

fn required(fields: &HashMap<String, Value>, name: &str) -> Result<String, String> {
    text(fields, name).ok_or_else(|| format!("field {name} is missing"))
}

fn uuid_field(fields: &HashMap<String, Value>, name: &str) -> Result<Uuid, String> {
    required(fields, name)?.parse().map_err(|_| format!("field {name} is not a UUID"))
}

fn check_version(fields: &HashMap<String, Value>) -> Result<(), String> {
    match text(fields, field::VERSION) {
        Some(version) if version == VERSION => Ok(()),
        Some(version) => Err(format!("envelope version {version:?} is not supported")),
        None => Err("field v (envelope version) is missing".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn as_fields(pairs: Vec<(&'static str, String)>) -> HashMap<String, Value> {
        pairs.into_iter().map(|(k, v)| (k.to_owned(), Value::BulkString(v.into_bytes()))).collect()
    }

    #[test]
    fn command_envelopes_round_trip() {
        let envelope = CommandEnvelope {
            id: Uuid::now_v7(),
            name: "hold".into(),
            payload: r#"{"amount":"1"}"#.into(),
            reply_to: "awx:reply:1".into(),
            deadline_ms: 1_700_000_000_000,
            trace: TraceFields::default(),
        };
        let read = CommandEnvelope::from_fields(&as_fields(envelope.to_fields())).unwrap();
        assert_eq!(read.id, envelope.id);
        assert_eq!(read.name, "hold");
        assert_eq!(read.payload, envelope.payload);
        assert_eq!(read.deadline_ms, envelope.deadline_ms);
    }

    #[test]
    fn unknown_versions_and_missing_fields_are_refused() {
        let mut fields = as_fields(vec![("v", "2".into())]);
        assert!(CommandEnvelope::from_fields(&fields).unwrap_err().contains("version"));
        fields.insert("v".into(), Value::BulkString(b"1".to_vec()));
        assert!(EventEnvelope::from_fields(&fields).unwrap_err().contains("missing"));
    }

    #[test]
    fn reply_bodies_have_a_stable_json_form() {
        let body =
            ReplyBody::Rejected { code: "insufficient_funds".into(), message: "short".into() };
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"status": "rejected", "code": "insufficient_funds", "message": "short"})
        );
        let envelope = ReplyEnvelope { command_id: Uuid::now_v7(), body: ReplyBody::TimedOut };
        let read = ReplyEnvelope::from_fields(&as_fields(envelope.to_fields().unwrap())).unwrap();
        assert_eq!(read.body, ReplyBody::TimedOut);
        assert_eq!(read.command_id, envelope.command_id);
    }
}
