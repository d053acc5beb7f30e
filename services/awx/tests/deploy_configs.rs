//! The deployment files agree with the code: every example configuration of `deploy/config/`
//! (and its copies and overlays under `deploy/kubernetes/`) loads with its service's own loader,
//! documents every field of its settings (found by asking the loader which fields a section
//! accepts), keeps secrets out, turns off migrations at start, and listens where the Kubernetes
//! probes, the compose file, Prometheus and the Dockerfile look for it.
//!
//! Schema validation of the manifests and the compose file is `scripts/validate-deploy.sh`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use awx_service_kit::config::{env_prefix, load};
use secrecy::ExposeSecret as _;

/// Every service, with the port of its ops endpoints (the gateway's is its API port; the signer
/// listens on none).
const SERVICES: [(&str, Option<u16>); 5] = [
    ("gateway", Some(8080)),
    ("ledger", Some(8081)),
    ("settlement", Some(8082)),
    ("policy", Some(8083)),
    ("signer", None),
];

/// The sections that are maps (any key is accepted), so asking for their fields is meaningless.
const MAP_SECTIONS: [(&str, &str); 2] =
    [("gateway", "rate_limits.actions"), ("signer", "allowed_contracts")];

/// The key written into a section to make the loader name the fields it accepts.
const PROBE: &str = "zzz_probe";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(relative: &str) -> String {
    let path = repo().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn example(service: &str) -> PathBuf {
    repo().join("deploy/config").join(format!("{service}.toml"))
}

/// The loaders read `AWX_<SERVICE>__…` variables over the file: none may be set in this process,
/// or what is tested would not be the file.
fn assert_no_overrides(service: &str) {
    let prefix = env_prefix(service);
    let set: Vec<String> =
        std::env::vars().map(|(name, _)| name).filter(|name| name.starts_with(&prefix)).collect();
    assert!(set.is_empty(), "unset {set:?}: they would override {service}'s file in this test");
}

/// Loads `file` with `service`'s own loader.
fn load_as(service: &str, file: &Path) -> Result<(), String> {
    assert_no_overrides(service);
    let file = Some(file);
    let loaded = match service {
        "gateway" => load::<awx_gateway::GatewaySettings>(service, file).map(drop),
        "policy" => load::<awx_policy_service::PolicySettings>(service, file).map(drop),
        "ledger" => load::<awx_ledger_service::LedgerSettings>(service, file).map(drop),
        "signer" => load::<awx_signer_service::SignerSettings>(service, file).map(drop),
        "settlement" => load::<awx_settlement_service::SettlementSettings>(service, file).map(drop),
        other => panic!("no such service {other}"),
    };
    loaded.map_err(|error| error.to_string())
}

fn temp_file(service: &str, text: &str) -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let path = std::env::temp_dir().join(format!(
        "awx-deploy-configs-{}-{}-{service}.toml",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, text).unwrap();
    path
}

fn load_text(service: &str, text: &str) -> Result<(), String> {
    let path = temp_file(service, text);
    let loaded = load_as(service, &path);
    let _ = std::fs::remove_file(&path);
    loaded
}

const DEFAULT_DATABASE_URL: &str = "postgres://postgres:postgres@127.0.0.1:5432/awx";

#[test]
fn every_example_loads_with_its_services_loader_and_says_what_a_deployment_needs() {
    for (service, _) in SERVICES {
        assert_no_overrides(service);
    }
    let file = example("gateway");
    let gateway: awx_gateway::GatewaySettings = load("gateway", Some(&file)).unwrap();
    assert_eq!(gateway.http.addr, "0.0.0.0:8080");
    assert!(!gateway.database.migrate);
    assert_eq!(gateway.database.url.expose_secret(), DEFAULT_DATABASE_URL, "no URL in the file");
    assert_eq!(gateway.bus.redis_url.expose_secret(), "redis://redis:6379");
    assert!(!gateway.outbound.allow_private_targets, "never in a deployment");
    assert_eq!(gateway.rate_limits.replicas_expected, 2);
    let defaults = awx_gateway::GatewaySettings::default();
    assert_eq!(
        gateway.rate_limits.actions, defaults.rate_limits.actions,
        "the file lists the default limits of every action"
    );

    let file = example("policy");
    let policy: awx_policy_service::PolicySettings = load("policy", Some(&file)).unwrap();
    assert_eq!(policy.ops_addr, "0.0.0.0:8083");
    assert!(!policy.database.migrate);
    assert_eq!(policy.database.url.expose_secret(), DEFAULT_DATABASE_URL);
    assert!(policy.decision_key_hex.is_none(), "the decision key is a secret");
    assert_eq!(
        policy.decision_key_file.as_deref(),
        Some(Path::new("/run/secrets/awx-decision-key"))
    );

    let file = example("ledger");
    let ledger: awx_ledger_service::LedgerSettings = load("ledger", Some(&file)).unwrap();
    assert_eq!(ledger.ops_addr, "0.0.0.0:8081");
    assert!(!ledger.database.migrate);
    assert_eq!(ledger.database.url.expose_secret(), DEFAULT_DATABASE_URL);

    let file = example("signer");
    let signer: awx_signer_service::SignerSettings = load("signer", Some(&file)).unwrap();
    assert!(!signer.database.migrate);
    assert_eq!(signer.database.url.expose_secret(), DEFAULT_DATABASE_URL);
    assert_eq!(signer.kek_file.as_deref(), Some(Path::new("/run/secrets/awx-signer-kek")));
    assert!(signer.decision_public_key_hex.is_none(), "one per deployment: from the environment");

    let file = example("settlement");
    let settlement: awx_settlement_service::SettlementSettings =
        load("settlement", Some(&file)).unwrap();
    assert_eq!(settlement.ops_addr, "0.0.0.0:8082");
    assert!(!settlement.database.migrate);
    assert_eq!(settlement.database.url.expose_secret(), DEFAULT_DATABASE_URL);
    assert_eq!(settlement.networks.len(), 1);
    assert_eq!(settlement.networks[0].rpc_url, "http://anvil:8545");

    // Every service of a deployment shares one bus.
    for prefix in
        [&policy.bus.prefix, &ledger.bus.prefix, &signer.bus.prefix, &settlement.bus.prefix]
    {
        assert_eq!(prefix, &gateway.bus.prefix);
    }
}

#[test]
fn a_stale_key_makes_an_example_fail() {
    for (service, _) in SERVICES {
        let text = read(&format!("deploy/config/{service}.toml"));
        load_text(service, &text).unwrap();
        let error = load_text(service, &format!("stale_setting = 1\n{text}")).unwrap_err();
        assert!(error.contains("stale_setting"), "{service}: {error}");
        // The same inside a section.
        let error = load_text(service, &text.replacen("[database]\n", "[database]\npool = 4\n", 1))
            .unwrap_err();
        assert!(error.contains("pool"), "{service}: {error}");
    }
}

/// One `[section]` of a file (the top level is `""`): its header may be commented out
/// (`# [[tokens]]`), and so may its keys (`# key = …`, an optional field left unset).
#[derive(Debug)]
struct Section {
    path: String,
    commented: bool,
    keys: BTreeSet<String>,
}

fn uncomment(line: &str) -> (&str, bool) {
    match line.strip_prefix("# ") {
        Some(rest) => (rest, true),
        None => (line, false),
    }
}

fn sections(text: &str) -> Vec<Section> {
    let mut sections =
        vec![Section { path: String::new(), commented: false, keys: BTreeSet::new() }];
    for line in text.lines() {
        let (content, commented) = uncomment(line.trim_end());
        if content.starts_with('[') && content.ends_with(']') {
            let path = content.trim_start_matches('[').trim_end_matches(']').to_owned();
            sections.push(Section { path, commented, keys: BTreeSet::new() });
            continue;
        }
        if let Some((key, _)) = content.split_once(" = ") {
            let is_key = !key.is_empty()
                && key.chars().all(|c| c.is_ascii_alphanumeric() || "_\".-:".contains(c));
            if is_key {
                sections.last_mut().unwrap().keys.insert(key.trim_matches('"').to_owned());
            }
        }
    }
    sections
}

fn join(section: &str, field: &str) -> String {
    if section.is_empty() { field.to_owned() } else { format!("{section}.{field}") }
}

/// The fields the loader accepts in `section` of `text`, from the error it gives for an
/// unknown one; `None` when the section is a map (any key is accepted).
fn accepted_fields(service: &str, text: &str, section: &str) -> Option<Vec<String>> {
    let mut document: toml::Table = text.parse().unwrap();
    let mut table = &mut document;
    for part in section.split('.').filter(|part| !part.is_empty()) {
        let value = table.get_mut(part).unwrap_or_else(|| panic!("{service}: no {section}"));
        let value = match value {
            toml::Value::Array(items) => items.last_mut().unwrap(),
            other => other,
        };
        table = value.as_table_mut().unwrap_or_else(|| panic!("{service}: {section} is no table"));
    }
    table.insert(PROBE.to_owned(), toml::Value::Integer(1));
    let error = load_text(service, &toml::to_string(&document).unwrap()).unwrap_err();
    let marker = format!("unknown field: found `{PROBE}`, expected ");
    let (_, expected) = error.split_once(&marker)?;
    let expected = expected.split(" for key").next().unwrap();
    let fields: Vec<String> = expected
        .split('`')
        .filter(|piece| {
            !piece.is_empty() && piece.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
        .map(str::to_owned)
        .collect();
    assert!(!fields.is_empty(), "{service}: no fields in {error}");
    Some(fields)
}

#[test]
fn every_field_of_every_section_is_documented_in_the_example() {
    for (service, _) in SERVICES {
        let text = read(&format!("deploy/config/{service}.toml"));
        let sections = sections(&text);
        let headers: BTreeSet<&str> =
            sections.iter().map(|section| section.path.as_str()).collect();
        let mut maps = Vec::new();
        let mut probed = 0;
        for section in sections.iter().filter(|section| !section.commented) {
            let Some(fields) = accepted_fields(service, &text, &section.path) else {
                maps.push(section.path.clone());
                continue;
            };
            probed += 1;
            for field in fields {
                let documented = section.keys.contains(&field)
                    || headers.contains(join(&section.path, &field).as_str());
                assert!(
                    documented,
                    "deploy/config/{service}.toml: `{}` is not documented (write it with its \
                     default, or as `# {field} = …` when it is unset by default)",
                    join(&section.path, &field)
                );
            }
        }
        assert!(probed >= 3, "{service}: only {probed} sections probed");
        let expected_maps: Vec<String> = MAP_SECTIONS
            .iter()
            .filter(|(owner, _)| *owner == service)
            .map(|(_, path)| (*path).to_owned())
            .collect();
        assert_eq!(maps, expected_maps, "{service}: sections that accept any key");
    }
}

#[test]
fn the_kubernetes_copies_are_the_examples_and_the_overlays_load() {
    for (service, _) in SERVICES {
        let copy = format!("deploy/kubernetes/base/config/{service}.toml");
        assert!(
            read(&copy) == read(&format!("deploy/config/{service}.toml")),
            "{copy} differs from deploy/config/{service}.toml: copy it again"
        );
    }
    assert!(
        read("deploy/kubernetes/base/config/otel-collector.yaml")
            == read("deploy/otel-collector.yaml"),
        "deploy/kubernetes/base/config/otel-collector.yaml differs from deploy/otel-collector.yaml"
    );
    let mut overlays = 0;
    for overlay in ["development", "production"] {
        let dir = repo().join("deploy/kubernetes/overlays").join(overlay);
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|extension| extension != "toml") {
                continue;
            }
            let service = path.file_stem().unwrap().to_str().unwrap().to_owned();
            assert!(SERVICES.iter().any(|(name, _)| *name == service), "{}", path.display());
            load_as(&service, &path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.contains("migrate = false"), "{}", path.display());
            let kustomization = std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap();
            assert!(
                kustomization.contains(&format!("{service}.toml")),
                "{} is not used by its kustomization",
                path.display()
            );
            overlays += 1;
        }
    }
    assert!(overlays >= 1, "the production overlay replaces some configurations");
}

#[test]
fn ports_and_paths_agree_with_the_manifests_compose_prometheus_and_the_dockerfile() {
    let compose = read("docker-compose.yml");
    let prometheus = read("deploy/prometheus.yml");
    let dockerfile = read("deploy/Dockerfile");
    for (service, port) in SERVICES {
        let upper = service.to_ascii_uppercase();
        let manifest = read(&format!("deploy/kubernetes/base/{service}.yaml"));
        let config = format!("/etc/awx/{service}.toml");
        assert!(
            dockerfile.contains(&format!("COPY deploy/config/{service}.toml {config}"))
                && dockerfile.contains(&format!("AWX_{upper}_CONFIG={config}")),
            "the Dockerfile's {service} stage"
        );
        assert!(
            compose.contains(&format!("./deploy/config/{service}.toml:{config}:ro")),
            "compose mounts deploy/config/{service}.toml"
        );
        assert!(manifest.contains(&format!("value: {config}")), "{service}.yaml");
        match port {
            Some(port) => {
                for needle in [
                    format!("containerPort: {port}"),
                    "path: /health/ready".to_owned(),
                    "path: /health/live".to_owned(),
                ] {
                    assert!(manifest.contains(&needle), "{service}.yaml lacks `{needle}`");
                }
                let target =
                    if service == "gateway" { "gateway-1".to_owned() } else { service.to_owned() };
                assert!(
                    prometheus.contains(&format!("{target}:{port}")),
                    "prometheus.yml does not scrape {target}:{port}"
                );
            }
            None => {
                assert!(!manifest.contains("containerPort"), "the signer listens on no port");
                assert!(!manifest.contains("Probe:"), "the signer has nothing to probe");
                assert!(!prometheus.contains("signer:"), "the signer has no /metrics");
            }
        }
    }
}

/// The Rust sources of the workspace's services and crates, concatenated.
fn all_sources() -> String {
    fn walk(dir: &Path, out: &mut String) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                out.push_str(&std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut out = String::new();
    for dir in ["services", "crates"] {
        walk(&repo().join(dir), &mut out);
    }
    out
}

#[test]
fn every_alert_has_a_runbook_and_watches_metrics_the_code_exports() {
    let alerts = read("deploy/prometheus-alerts.yml");
    let operating = read("docs/operating.md");
    let sources = all_sources();
    let names: Vec<&str> =
        alerts.lines().filter_map(|line| line.trim().strip_prefix("- alert: ")).collect();
    assert!(names.len() >= 8, "{names:?}");
    for name in &names {
        assert!(operating.contains(&format!("\n### {name}\n")), "no runbook heading for {name}");
        let anchor = format!("docs/operating.md#{}", name.to_lowercase());
        assert!(alerts.contains(&anchor), "{name} does not link {anchor}");
    }
    let mut metrics = BTreeSet::new();
    for expr in alerts.lines().filter_map(|line| line.trim().strip_prefix("expr: ")) {
        for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            let is_metric = ["awx_", "settlement_", "ledger_", "policy_", "http_"]
                .iter()
                .any(|prefix| word.starts_with(prefix));
            if is_metric {
                metrics.insert(word.to_owned());
            }
        }
    }
    assert!(metrics.len() >= 8, "{metrics:?}");
    for metric in &metrics {
        assert!(sources.contains(&format!("\"{metric}\"")), "no code exports {metric}");
    }
    // Prometheus loads the rules.
    assert!(read("deploy/prometheus.yml").contains("rule_files: [\"/etc/prometheus/alerts.yml\"]"));
    assert!(
        read("docker-compose.yml")
            .contains("./deploy/prometheus-alerts.yml:/etc/prometheus/alerts.yml:ro")
    );
}
