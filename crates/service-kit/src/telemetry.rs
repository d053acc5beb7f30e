//! Logs and traces.
//!
//! Logs are JSON lines on stdout (or a compact human format for local use), filtered by
//! `RUST_LOG` (default `info`). The human format is coloured only when stdout is a terminal and
//! `NO_COLOR` is unset or empty ([`use_colour`]); JSON lines never carry colour codes.
//!
//! When `OTEL_EXPORTER_OTLP_ENDPOINT` is set (for example `http://127.0.0.1:4318`), spans are
//! also exported as OpenTelemetry traces over OTLP/HTTP (protobuf), batched on a background
//! thread, with `service.name` set; W3C trace context is the propagation format, so traces
//! continue across the bus.
//!
//! Secrets never become span fields or log fields: handlers use `skip_all` and name the fields
//! they record.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::Deserialize;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The environment variable that turns on trace export.
pub const OTLP_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// How logs are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One JSON object per line (the default, for machines).
    #[default]
    Json,
    /// A compact human format (for `awx dev`).
    Compact,
}

/// Logs and traces of a service.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    /// JSON lines (default) or compact human logs.
    pub log_format: LogFormat,
    /// The OTLP/HTTP collector base URL (`http://127.0.0.1:4318`); when unset,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`; when that is unset too, no traces are exported.
    pub otlp_endpoint: Option<String>,
}

impl TelemetrySettings {
    /// The collector base URL in effect.
    pub fn endpoint(&self) -> Option<String> {
        self.otlp_endpoint
            .clone()
            .or_else(|| std::env::var(OTLP_ENDPOINT_ENV).ok())
            .filter(|endpoint| !endpoint.trim().is_empty())
    }
}

/// Whether logs written to a stream may carry ANSI colour codes: only when the stream is a
/// terminal and `NO_COLOR` (<https://no-color.org>) is unset or empty.
pub fn use_colour(stream_is_terminal: bool) -> bool {
    stream_is_terminal && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
}

/// Keeps the trace exporter alive; dropping it flushes and stops the exporter.
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Whether traces are being exported.
    pub fn exporting_traces(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.force_flush();
            let _ = provider.shutdown();
        }
    }
}

/// Installs logging (and trace export when configured) for the process. If a global subscriber
/// is already installed (several services in one process, or a test harness), the existing one
/// is kept.
pub fn init(
    service_name: &'static str,
    settings: &TelemetrySettings,
) -> anyhow::Result<TelemetryGuard> {
    let format = settings.log_format;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let provider =
        settings.endpoint().map(|endpoint| tracer_provider(service_name, &endpoint)).transpose()?;
    let otel_layer = provider
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer(service_name)));
    let registry = tracing_subscriber::registry().with(filter).with(otel_layer);
    let installed = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
        LogFormat::Compact => {
            let colour = use_colour(std::io::IsTerminal::is_terminal(&std::io::stdout()));
            registry.with(tracing_subscriber::fmt::layer().with_ansi(colour).compact()).try_init()
        }
    };
    if installed.is_ok() {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    }
    Ok(TelemetryGuard { provider })
}

fn tracer_provider(
    service_name: &'static str,
    endpoint: &str,
) -> anyhow::Result<SdkTracerProvider> {
    use opentelemetry_otlp::WithExportConfig as _;
    let traces_url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(traces_url)
        .build()?;
    let resource = Resource::builder().with_service_name(service_name).build();
    Ok(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build())
}
