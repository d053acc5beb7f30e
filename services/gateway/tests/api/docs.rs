//! The OpenAPI document and Swagger UI: served, complete, local, and committed.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::helpers::TestApp;

#[tokio::test]
async fn the_openapi_document_describes_keys_scopes_and_error_codes() {
    let app = TestApp::spawn().await;
    let document: Value =
        app.client.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    let scheme = &document["components"]["securitySchemes"]["api_key"];
    assert_eq!(scheme["type"], "apiKey");
    assert_eq!(scheme["in"], "header");
    assert_eq!(scheme["name"], "X-API-Key");
    let codes: BTreeSet<&str> = document["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .expect("ErrorCode is an enum")
        .iter()
        .map(|code| code.as_str().unwrap())
        .collect();
    for code in [
        "invalid_field",
        "invalid_api_key",
        "insufficient_scope",
        "rate_limited",
        "idempotency_key_reused",
        "internal_error",
    ] {
        assert!(codes.contains(code), "ErrorCode lacks {code}");
    }
    let create = &document["paths"]["/api/v1/keys"]["post"];
    assert_eq!(create["security"][0]["api_key"], serde_json::json!(["admin"]));
    assert!(create["responses"]["201"].is_object());
    assert!(create["responses"]["422"].is_object());
    let ping = &document["paths"]["/api/v1/ping"]["get"];
    assert_eq!(ping["security"][0]["api_key"], serde_json::json!(["agent", "provider", "admin"]));
}

#[tokio::test]
async fn the_committed_document_is_up_to_date() {
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi/openapi.json"))
            .expect("openapi/openapi.json is committed: run `make openapi`");
    assert!(
        committed == awx_gateway::openapi::document_json(),
        "openapi/openapi.json differs from the code: run `make openapi` and commit it"
    );
}

/// `src` and `href` attribute values in HTML.
fn references(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        let mut rest = html;
        while let Some(start) = rest.find(attribute) {
            rest = &rest[start + attribute.len()..];
            if let Some(end) = rest.find('"') {
                found.push(rest[..end].to_owned());
                rest = &rest[end..];
            }
        }
    }
    found
}

#[tokio::test]
async fn swagger_ui_and_every_asset_it_references_are_served_locally() {
    let app = TestApp::spawn().await;
    let page = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "not the Swagger UI page");
    let assets = references(&html);
    assert!(assets.len() >= 3, "too few assets: {assets:?}");
    for asset in &assets {
        assert!(
            !asset.starts_with("http://")
                && !asset.starts_with("https://")
                && !asset.starts_with("//"),
            "{asset} is not local"
        );
        let url = if asset.starts_with('/') {
            app.url(asset)
        } else {
            app.url(&format!("/docs/{}", asset.trim_start_matches("./")))
        };
        let response = app.client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        assert!(!response.bytes().await.unwrap().is_empty(), "{url} is empty");
    }
    // The initializer points the UI at our document, which is served.
    let initializer = app
        .client
        .get(app.url("/docs/swagger-initializer.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(initializer.contains("/openapi.json"), "{initializer}");
    assert!(!initializer.contains("https://"), "the initializer loads nothing remote");
    assert_eq!(app.client.get(app.url("/openapi.json")).send().await.unwrap().status(), 200);
}
