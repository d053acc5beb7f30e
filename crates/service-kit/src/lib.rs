//! What every awx service binary shares.
//!
//! - [`config`]: layered typed configuration: code defaults, then a TOML file, then `AWX_<SERVICE>__…`
//!   environment variables (`__` separates sections); unknown fields are refused; errors name the
//!   offending key.
//! - [`telemetry`]: JSON logs with `tracing`, and OpenTelemetry traces exported over OTLP/HTTP when
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//! - [`metrics`]: the Prometheus recorder behind `/metrics`.
//! - [`ops`]: the operations router: `/health/live`, `/health/ready` (runs the service's readiness
//!   checks, such as Postgres and Redis) and `/metrics`.
//! - [`shutdown`]: graceful shutdown: a cancellation token, a task tracker that drains in-flight work,
//!   and the OS signals that start it.
//! - [`db`]: the Postgres pool and the workspace's migrations.

pub mod config;
pub mod db;
pub mod metrics;
pub mod ops;
pub mod shutdown;
pub mod telemetry;
