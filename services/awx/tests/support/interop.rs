//! The official x402 SDKs as real processes (the Node scripts of `interop/`): a command for a
//! script with the variables every script reads, and the official express server.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use awx_x402::Address;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

use super::{TOKEN_NAME, TOKEN_VERSION, World};

/// The path of an interop script.
pub(crate) fn interop(script: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../interop").join(script)
}

/// A Node command for an interop script, with the variables every script reads; its
/// facilitator is the world's (first) gateway.
pub(crate) fn node(world: &World, script: &str) -> Command {
    node_through(world, script, &world.gateway_url)
}

/// [`node`] with the facilitator at the gateway `gateway_url`.
pub(crate) fn node_through(world: &World, script: &str, gateway_url: &str) -> Command {
    let mut command = Command::new("node");
    command
        .arg(interop(script))
        .env("NETWORK", &world.network)
        .env("TOKEN", world.token.address().to_checksum(None))
        .env("TOKEN_NAME", TOKEN_NAME)
        .env("TOKEN_VERSION", TOKEN_VERSION)
        .env("FACILITATOR_URL", format!("{gateway_url}/api/v1/x402/facilitator"))
        .env("API_KEY", &world.provider_key)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Starts the official express server (`GET /paid` at `amount` atomic units to `pay_to`),
/// settling through the gateway at `gateway_url`; returns it with its port.
pub(crate) async fn express_server(
    world: &World,
    pay_to: Address,
    amount: u128,
    gateway_url: &str,
) -> (Child, u16) {
    let mut command = node_through(world, "express-server.mjs", gateway_url);
    command.env("PAY_TO", pay_to.to_checksum(None)).env("AMOUNT", amount.to_string());
    let mut child = command.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let line =
        tokio::time::timeout(Duration::from_secs(60), BufReader::new(stdout).lines().next_line())
            .await
            .expect("express server did not start")
            .unwrap()
            .expect("express server exited");
    let port = serde_json::from_str::<Value>(&line).unwrap()["port"].as_u64().unwrap();
    (child, u16::try_from(port).unwrap())
}
