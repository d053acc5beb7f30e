//! The bus's metrics (recorded through the `metrics` facade; the service kit's Prometheus
//! recorder exposes them on `/metrics`).
//!
//! The list of metrics is in the crate docs.
//!
//! Label values are names the code registered (families, command names, topics), never data
//! from a message, so their number stays bounded.

use std::time::Duration;

pub(crate) fn command_sent(family: &'static str, command: &'static str, result: &'static str) {
    metrics::counter!("awx_bus_commands_sent_total", "family" => family, "command" => command, "result" => result)
        .increment(1);
}

pub(crate) fn command_handled(family: &str, command: &'static str, outcome: &'static str) {
    metrics::counter!(
        "awx_bus_commands_handled_total",
        "family" => family.to_owned(),
        "command" => command,
        "outcome" => outcome
    )
    .increment(1);
}

pub(crate) fn command_duration(family: &str, command: &'static str, elapsed: Duration) {
    metrics::histogram!("awx_bus_command_handle_seconds", "family" => family.to_owned(), "command" => command)
        .record(elapsed.as_secs_f64());
}

pub(crate) fn group_commit_size(family: &str, commands: usize) {
    // A batch holds at most 1,024 commands, exactly representable.
    let commands = f64::from(u32::try_from(commands).unwrap_or(u32::MAX));
    metrics::histogram!("awx_bus_group_commit_commands", "family" => family.to_owned())
        .record(commands);
}

pub(crate) fn events_published(topic: &str, count: u64) {
    metrics::counter!("awx_bus_events_published_total", "topic" => topic.to_owned())
        .increment(count);
}

pub(crate) fn event_handled(topic: &'static str, group: &str, outcome: &'static str) {
    metrics::counter!(
        "awx_bus_events_handled_total",
        "topic" => topic,
        "group" => group.to_owned(),
        "outcome" => outcome
    )
    .increment(1);
}

pub(crate) fn dead_lettered(stream_name: &str, group: &str) {
    metrics::counter!(
        "awx_bus_dead_lettered_total",
        "stream" => stream_name.to_owned(),
        "group" => group.to_owned()
    )
    .increment(1);
}

pub(crate) fn relay_error(schema: &str) {
    metrics::counter!("awx_bus_outbox_relay_errors_total", "schema" => schema.to_owned())
        .increment(1);
}
