#!/usr/bin/env python3
"""Validates the deployment files without a cluster or a container engine (scripts/validate-deploy.sh
runs it in tools/venv):

1. Kubernetes: renders each overlay of deploy/kubernetes/overlays with scripts/kustomize_render.py
   and validates every rendered object with kubernetes-validate against the pinned Kubernetes
   version, strictly (an unknown field is an error). Then checks what schemas cannot: each
   Deployment's selector matches its pod labels, every Service selects some pod, named probe and
   Service ports exist on the container, every generated ConfigMap a pod mounts exists, the
   signer's NetworkPolicies are there (ingress: none; egress: Postgres, Redis, DNS only), and no
   object is a Secret (Secrets are referenced by name, never committed). Where `kubectl kustomize`
   works (not on the build machines), each overlay is also rendered by it and compared.
2. docker-compose.yml: validated against the compose specification's JSON schema vendored in
   deploy/schemas/compose-spec.json (YAML merge keys resolved first, as compose does); then every
   file it mounts from the repository exists and every build target is a stage of
   deploy/Dockerfile.

Prints what it validated; exits 1 on any error.

    scripts/validate_deploy.py KUBERNETES_VERSION [--overlay DIR ...] [--compose FILE]
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys

import jsonschema
import kubernetes_validate
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kustomize_render  # noqa: E402

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
errors = []


def error(message):
    errors.append(message)
    print(f"  ERROR {message}")


def pod_template(resource):
    if resource["kind"] in kustomize_render.POD_TEMPLATE_KINDS:
        return resource["spec"]["template"]
    return None


def labels_match(selector, labels):
    return all(labels.get(key) == value for key, value in selector.items())


def semantic_checks(overlay, resources):
    pods = [(r, pod_template(r)) for r in resources if pod_template(r) is not None]
    config_maps = {r["metadata"]["name"] for r in resources if r["kind"] == "ConfigMap"}
    for resource in resources:
        kind, name = resource["kind"], resource["metadata"]["name"]
        where = f"{overlay}: {kind}/{name}"
        if kind == "Secret":
            error(f"{where}: Secrets are created by the operator, never committed")
        template = pod_template(resource)
        if template is not None:
            if kind == "Deployment":
                selector = resource["spec"]["selector"]["matchLabels"]
                if not labels_match(selector, template["metadata"].get("labels", {})):
                    error(f"{where}: the selector does not match the pod labels")
            spec = template["spec"]
            for volume in spec.get("volumes", []):
                ref = volume.get("configMap", {}).get("name")
                if ref is not None and ref not in config_maps:
                    error(f"{where}: volume {volume['name']} mounts ConfigMap {ref}, which is not rendered")
            for container in spec.get("containers", []):
                port_names = {port.get("name") for port in container.get("ports", [])}
                for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                    port = container.get(probe, {}).get("httpGet", {}).get("port")
                    if isinstance(port, str) and port not in port_names:
                        error(f"{where}: {probe} uses port {port}, which the container does not name")
        if kind == "Service":
            selector = resource["spec"].get("selector", {})
            selected = [t for _, t in pods if labels_match(selector, t["metadata"].get("labels", {}))]
            if not selected:
                error(f"{where}: selects no pod")
            for port in resource["spec"].get("ports", []):
                target = port.get("targetPort")
                if isinstance(target, str) and not any(
                    target == p.get("name") for t in selected for c in t["spec"]["containers"] for p in c.get("ports", [])
                ):
                    error(f"{where}: targetPort {target} is no named port of the selected pods")
    # The signer: nothing reaches it; it reaches Postgres, Redis and DNS only.
    policies = [r for r in resources if r["kind"] == "NetworkPolicy"]
    signer = {"app.kubernetes.io/name": "awx-signer"}
    ingress = [
        p for p in policies
        if p["spec"]["podSelector"].get("matchLabels") == signer and "Ingress" in p["spec"]["policyTypes"]
    ]
    if not ingress or any(p["spec"].get("ingress") for p in ingress):
        error(f"{overlay}: the signer needs an Ingress policy with no ingress rule (deny all)")
    egress = [
        p for p in policies
        if p["spec"]["podSelector"].get("matchLabels") == signer and "Egress" in p["spec"]["policyTypes"]
    ]
    allowed_ports = set()
    for policy in egress:
        for rule in policy["spec"].get("egress", []):
            for port in rule.get("ports", []):
                allowed_ports.add(port["port"])
            if not rule.get("to") or not rule.get("ports"):
                error(f"{overlay}: a signer egress rule without `to` or `ports` allows too much")
    if not egress or allowed_ports != {5432, 6379, 53}:
        error(f"{overlay}: the signer's egress must allow exactly Postgres, Redis and DNS (got ports {sorted(allowed_ports)})")


def kubectl_renders(overlay):
    """The objects `kubectl kustomize` renders, or None when it is not usable here."""
    if shutil.which("kubectl") is None:
        return None
    try:
        done = subprocess.run(
            ["kubectl", "kustomize", overlay], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return [document for document in yaml.safe_load_all(done.stdout) if document]


def without_suffixes(resources):
    """Objects keyed by kind and name, generated ConfigMap names without their hash suffix."""
    text = json.dumps(resources)
    text = re.sub(r'"(awx-[a-z-]+-config)-[a-z0-9]{10}"', r'"\1"', text)
    return {(r["kind"], r["metadata"]["name"]): r for r in json.loads(text)}


def validate_overlay(overlay, version):
    print(f"kubernetes: {os.path.relpath(overlay, ROOT)} (rendered by scripts/kustomize_render.py)")
    try:
        resources = kustomize_render.build(overlay)
    except (kustomize_render.RenderError, OSError, KeyError, ValueError, yaml.YAMLError) as failure:
        error(f"{overlay}: cannot render: {failure}")
        return 0
    for resource in resources:
        name = f"{resource['kind']}/{resource['metadata']['name']}"
        try:
            kubernetes_validate.validate(resource, version, strict=True)
            print(f"  ok    {name}")
        except kubernetes_validate.ValidationError as failure:
            path = "/".join(str(part) for part in failure.path)
            error(f"{name}: {failure.message} (at {path or '/'})")
        except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as failure:
            error(f"{name}: {failure}")
    semantic_checks(os.path.relpath(overlay, ROOT), resources)
    theirs = kubectl_renders(overlay)
    if theirs is None:
        print("  (kubectl kustomize is not available here: the renderer is not cross-checked)")
    elif without_suffixes(theirs) != without_suffixes(resources):
        error(f"{overlay}: kubectl kustomize renders different objects than scripts/kustomize_render.py")
    else:
        print(f"  kubectl kustomize renders the same {len(theirs)} objects (but for ConfigMap hash suffixes)")
    return len(resources)


def validate_compose(path):
    print(f"compose: {os.path.relpath(path, ROOT)} against deploy/schemas/compose-spec.json")
    with open(os.path.join(ROOT, "deploy/schemas/compose-spec.json"), encoding="utf-8") as handle:
        schema = json.load(handle)
    with open(path, encoding="utf-8") as handle:
        # safe_load resolves YAML merge keys (<<: *anchor) as compose does.
        compose = yaml.safe_load(handle)
    # The schema names its draft as "http://json-schema.org/draft/2019-09/schema#", which
    # jsonschema does not recognise by that spelling: use that draft's validator explicitly.
    validator_class = jsonschema.Draft201909Validator
    validator_class.check_schema(schema)
    failures = sorted(validator_class(schema).iter_errors(compose), key=lambda e: list(e.path))
    for failure in failures:
        where = "/".join(str(part) for part in failure.absolute_path) or "/"
        error(f"{os.path.basename(path)}: {failure.message} (at {where})")
    if failures:
        return
    services = compose.get("services", {})
    with open(os.path.join(ROOT, "deploy/Dockerfile"), encoding="utf-8") as handle:
        stages = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", handle.read(), flags=re.MULTILINE | re.IGNORECASE))
    for name, service in services.items():
        build = service.get("build")
        if isinstance(build, dict) and build.get("target") and build["target"] not in stages:
            error(f"compose: {name} builds target {build['target']}, which deploy/Dockerfile lacks")
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith("./") and not os.path.exists(os.path.join(ROOT, source)):
                error(f"compose: {name} mounts {source}, which does not exist")
        for secret in service.get("secrets", []):
            secret_name = secret if isinstance(secret, str) else secret.get("source")
            if secret_name not in compose.get("secrets", {}):
                error(f"compose: {name} uses secret {secret_name}, which is not declared")
        for network in service.get("networks", []):
            if network not in compose.get("networks", {}):
                error(f"compose: {name} joins network {network}, which is not declared")
        for dependency in service.get("depends_on", {}):
            if dependency not in services:
                error(f"compose: {name} depends on {dependency}, which is no service")
    print(f"  ok    {len(services)} services: {', '.join(services)}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("kubernetes_version")
    parser.add_argument("--overlay", action="append", default=[])
    parser.add_argument("--compose", default=os.path.join(ROOT, "docker-compose.yml"))
    args = parser.parse_args()
    overlays = args.overlay or [
        os.path.join(ROOT, "deploy/kubernetes/overlays", name)
        for name in sorted(os.listdir(os.path.join(ROOT, "deploy/kubernetes/overlays")))
    ]
    count = 0
    for overlay in overlays:
        count += validate_overlay(overlay, args.kubernetes_version)
    validate_compose(args.compose)
    if errors:
        print(f"validate-deploy: {len(errors)} error(s)")
        return 1
    print(
        f"validate-deploy: {count} Kubernetes objects in {len(overlays)} overlays valid for Kubernetes "
        f"{args.kubernetes_version} (strict), docker-compose.yml valid against the compose specification"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
