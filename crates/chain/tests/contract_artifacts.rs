//! The committed contract artifacts (`contracts/out/`) are exactly what the pinned compiler
//! makes of `contracts/src/`, so the bytecode we deploy is the source we review.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail the test by panicking, like the tests themselves"
)]

use std::path::Path;
use std::process::Command;

#[test]
fn committed_artifacts_match_a_fresh_compile() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let output = Command::new("node")
        .arg(root.join("contracts/compile.js"))
        .arg("--check")
        .output()
        .expect("node is needed to compile contracts: run `make setup`");
    assert!(
        output.status.success(),
        "contracts/out drifted from contracts/src:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
