//! W3C trace context across the bus: the sender's span context is written into the message
//! (`traceparent`, and `tracestate` when present) with the process's global OpenTelemetry
//! propagator, and the handler's span continues it.
//!
//! The service kit installs the W3C propagator when it sets up telemetry; without it (or
//! without an OpenTelemetry layer) nothing is written and handler spans start new traces.

use std::collections::HashMap;

use redis::Value;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::wire::{field, text};

/// The trace-context fields of a message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TraceFields {
    pub(crate) traceparent: Option<String>,
    pub(crate) tracestate: Option<String>,
}

impl TraceFields {
    /// The context of the current span, as the global propagator writes it.
    pub(crate) fn current() -> Self {
        let context = tracing::Span::current().context();
        let mut carrier: HashMap<String, String> = HashMap::new();
        opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.inject_context(&context, &mut carrier);
        });
        Self {
            traceparent: carrier.remove(field::TRACEPARENT),
            tracestate: carrier.remove(field::TRACESTATE).filter(|state| !state.is_empty()),
        }
    }

    /// Makes `span` (not yet entered) a child of this context, when there is one and an
    /// OpenTelemetry layer is installed.
    pub(crate) fn set_parent_of(&self, span: &tracing::Span) {
        let Some(traceparent) = &self.traceparent else { return };
        let mut carrier: HashMap<String, String> = HashMap::new();
        carrier.insert(field::TRACEPARENT.to_owned(), traceparent.clone());
        if let Some(state) = &self.tracestate {
            carrier.insert(field::TRACESTATE.to_owned(), state.clone());
        }
        let context = opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.extract(&carrier)
        });
        // Fails only when no OpenTelemetry layer is installed: then there is no trace to join.
        let _ = span.set_parent(context);
    }

    pub(crate) fn append_to(&self, fields: &mut Vec<(&'static str, String)>) {
        if let Some(traceparent) = &self.traceparent {
            fields.push((field::TRACEPARENT, traceparent.clone()));
        }
        if let Some(state) = &self.tracestate {
            fields.push((field::TRACESTATE, state.clone()));
        }
    }

    pub(crate) fn from_fields(fields: &HashMap<String, Value>) -> Self {
        Self {
            traceparent: text(fields, field::TRACEPARENT),
            tracestate: text(fields, field::TRACESTATE),
        }
    }

    /// The outbox's `trace_context` column: a JSON object of the fields present.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let mut object = serde_json::Map::new();
        if let Some(traceparent) = &self.traceparent {
            object.insert(field::TRACEPARENT.to_owned(), traceparent.clone().into());
        }
        if let Some(state) = &self.tracestate {
            object.insert(field::TRACESTATE.to_owned(), state.clone().into());
        }
        serde_json::Value::Object(object)
    }

    pub(crate) fn from_json(value: &serde_json::Value) -> Self {
        let get =
            |name: &str| value.get(name).and_then(serde_json::Value::as_str).map(str::to_owned);
        Self { traceparent: get(field::TRACEPARENT), tracestate: get(field::TRACESTATE) }
    }
}
