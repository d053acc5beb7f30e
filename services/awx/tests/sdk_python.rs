//! The Python SDK (`sdk/python`) against the whole platform on anvil: its pytest suite
//! (`sdk/python/run-tests.sh`, which installs its pinned requirements into `tools/venv`) run by
//! [`support::sdk::run_suite`], which then checks each agent's payments and balance.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod support;

#[tokio::test]
async fn the_python_sdk_pays_through_the_platform() {
    let command =
        tokio::process::Command::new(support::sdk::root().join("sdk/python/run-tests.sh"));
    support::sdk::run_suite(command, "9 passed").await;
}
