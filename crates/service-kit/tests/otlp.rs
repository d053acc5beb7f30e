//! Spans are exported over OTLP/HTTP to a collector: here a real HTTP server on a loopback port
//! that records what it receives.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use std::time::Duration;

use awx_service_kit::telemetry::{self, TelemetrySettings};
use axum::Router;
use axum::body::Bytes;
use axum::routing::post;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_otlp_collector() {
    let (sender, mut received) = tokio::sync::mpsc::unbounded_channel::<(String, Bytes)>();
    let collector = Router::new().route(
        "/v1/traces",
        post(move |headers: axum::http::HeaderMap, body: Bytes| {
            let sender = sender.clone();
            async move {
                let content_type = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let _ = sender.send((content_type, body));
                ""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, collector).await });

    let settings =
        TelemetrySettings { otlp_endpoint: Some(endpoint), ..TelemetrySettings::default() };
    let guard = telemetry::init("awx-otlp-test", &settings).unwrap();
    assert!(guard.exporting_traces());
    {
        let span = tracing::info_span!("otlp_test_span", payment_id = "pay_test");
        let _entered = span.enter();
        tracing::info!("inside the span");
    }
    // Dropping the guard flushes the batch on the exporter's own thread.
    tokio::task::spawn_blocking(move || drop(guard)).await.unwrap();

    let (content_type, body) = tokio::time::timeout(Duration::from_secs(10), received.recv())
        .await
        .expect("the collector received nothing")
        .unwrap();
    assert_eq!(content_type, "application/x-protobuf");
    let contains =
        |needle: &str| body.windows(needle.len()).any(|window| window == needle.as_bytes());
    assert!(contains("otlp_test_span"), "the span name is in the export");
    assert!(contains("awx-otlp-test"), "service.name is in the export");
}
