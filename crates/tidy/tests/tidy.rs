//! Checks of the repository's shape: dependency directions and module docs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail the test by panicking, like the tests themselves"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Crates that must stay pure: no network, database, process or file-system I/O.
const PURE_CRATES: &[&str] =
    &["awx-types", "awx-x402", "awx-ledger-core", "awx-policy-core", "awx-decision"];

/// Crates whose presence means I/O.
const IO_CRATES: &[&str] = &[
    "tokio",
    "mio",
    "reqwest",
    "hyper",
    "axum",
    "tower",
    "sqlx",
    "redis",
    "alloy-provider",
    "alloy-transport",
    "alloy-transport-http",
    "alloy-rpc-client",
];

struct Metadata {
    /// Package id to name.
    names: BTreeMap<String, String>,
    /// Package id to the ids of its normal (non-dev, non-build) dependencies.
    normal_deps: BTreeMap<String, Vec<String>>,
    /// Workspace member ids to their manifest paths.
    members: BTreeMap<String, PathBuf>,
}

fn metadata() -> Metadata {
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(workspace_root())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut names = BTreeMap::new();
    let mut manifests = BTreeMap::new();
    for package in json["packages"].as_array().unwrap() {
        let id = package["id"].as_str().unwrap().to_owned();
        names.insert(id.clone(), package["name"].as_str().unwrap().to_owned());
        manifests.insert(id, PathBuf::from(package["manifest_path"].as_str().unwrap()));
    }
    let members = json["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| {
            let id = id.as_str().unwrap().to_owned();
            let manifest = manifests[&id].clone();
            (id, manifest)
        })
        .collect();
    let mut normal_deps = BTreeMap::new();
    for node in json["resolve"]["nodes"].as_array().unwrap() {
        let deps = node["deps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|dep| {
                dep["dep_kinds"].as_array().unwrap().iter().any(|kind| kind["kind"].is_null())
            })
            .map(|dep| dep["pkg"].as_str().unwrap().to_owned())
            .collect();
        normal_deps.insert(node["id"].as_str().unwrap().to_owned(), deps);
    }
    Metadata { names, normal_deps, members }
}

impl Metadata {
    fn id_of(&self, name: &str) -> String {
        self.members.keys().find(|id| self.names[*id] == name).unwrap().clone()
    }

    /// Every package `id` reaches through normal dependencies, with the path that reaches it.
    fn reachable(&self, id: &str) -> BTreeMap<String, Vec<String>> {
        let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut stack = vec![(id.to_owned(), vec![self.names[id].clone()])];
        while let Some((current, path)) = stack.pop() {
            for dep in &self.normal_deps[&current] {
                if !seen.contains_key(dep) {
                    let mut next = path.clone();
                    next.push(self.names[dep].clone());
                    seen.insert(dep.clone(), next.clone());
                    stack.push((dep.clone(), next));
                }
            }
        }
        seen
    }
}

#[test]
fn pure_crates_do_no_io() {
    let metadata = metadata();
    for name in PURE_CRATES {
        let reachable = metadata.reachable(&metadata.id_of(name));
        let offenders: Vec<String> = reachable
            .iter()
            .filter(|(id, _)| IO_CRATES.contains(&metadata.names[*id].as_str()))
            .map(|(_, path)| path.join(" -> "))
            .collect();
        assert!(
            offenders.is_empty(),
            "{name} must not depend on I/O crates:\n{}",
            offenders.join("\n")
        );
    }
}

#[test]
fn redis_has_one_home() {
    // The bus crate is the one place that talks to Redis (streams and the shared rate limiter);
    // test-support starts and cleans Redis for tests.
    let metadata = metadata();
    let allowed = ["awx-bus", "awx-test-support"];
    for id in metadata.members.keys() {
        let name = metadata.names[id].as_str();
        let direct_redis =
            metadata.normal_deps[id].iter().any(|dep| metadata.names[dep] == "redis");
        assert!(
            !direct_redis || allowed.contains(&name),
            "{name} depends on redis directly: go through awx-bus"
        );
    }
}

#[test]
fn services_do_not_depend_on_services() {
    let metadata = metadata();
    let root = workspace_root();
    let services: BTreeSet<String> = metadata
        .members
        .iter()
        .filter(|(_, manifest)| manifest.starts_with(root.join("services")))
        .map(|(id, _)| id.clone())
        .collect();
    // The `awx` command is the composition root that runs every service in one process for
    // local use; it alone may depend on service libraries.
    let composition_root = metadata.id_of("awx-cli");
    for service in services.iter().filter(|id| **id != composition_root) {
        let reachable = metadata.reachable(service);
        for other in services.iter().filter(|other| *other != service) {
            assert!(
                !reachable.contains_key(other),
                "{} depends on the service {}: services talk over the bus, never by linking",
                metadata.names[service],
                metadata.names[other]
            );
        }
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_module_says_what_it_is_for() {
    let root = workspace_root();
    let mut files = Vec::new();
    for top in ["crates", "services"] {
        rust_files(&root.join(top), &mut files);
    }
    assert!(files.len() > 10);
    let undocumented: Vec<String> = files
        .iter()
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            !text.trim_start().starts_with("//!")
        })
        .map(|path| path.strip_prefix(&root).unwrap().display().to_string())
        .collect();
    assert!(
        undocumented.is_empty(),
        "files without a leading //! doc:\n{}",
        undocumented.join("\n")
    );
}
