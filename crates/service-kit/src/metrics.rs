//! The Prometheus recorder behind `/metrics`.
//!
//! The `metrics` crate has one global recorder per process, so [`handle`] installs it once and
//! every service in the process (all of them, under `awx dev`) shares it.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's Prometheus handle, installing the recorder on first use.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (a test harness, say); our handle then
            // renders what ours records, which is nothing, rather than failing the service.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// The current metrics in the Prometheus text format.
pub fn render() -> String {
    handle().render()
}
