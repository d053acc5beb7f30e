//! The TypeScript SDK (`sdk/typescript`) against the whole platform on anvil: its `node --test`
//! suite (which also checks the generated types for drift and type-checks the declarations with
//! the pinned `tsc` of `tools/`) run by [`support::sdk::run_suite`], which then checks each
//! agent's payments and balance.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod support;

#[tokio::test]
async fn the_typescript_sdk_pays_through_the_platform() {
    let mut command = tokio::process::Command::new("node");
    command.arg("--test").arg(support::sdk::root().join("sdk/typescript/test/sdk.test.mjs"));
    support::sdk::run_suite(command, "# pass 8").await;
}
