#!/usr/bin/env python3
"""Checks of the deployment files that no schema validator does; run by validate-deploy.sh
inside .cache/deploy-venv (needs PyYAML, which kubernetes-validate brings).

  deploy_checks.py extract-configs OUTDIR FILE...   Sluice configs embedded in FILEs -> OUTDIR
  deploy_checks.py policy FILE...                   security and wiring rules of manifests
  deploy_checks.py kustomization DIR                resources listed <-> files present
  deploy_checks.py dockerfile DOCKERFILE DOCKERIGNORE
  deploy_checks.py observability DASHBOARD RULES SRC_DIR   metrics named exist in the source

extract-configs understands: Kubernetes manifests (every ConfigMap data entry whose key ends in
.yaml/.yml), Docker Compose files (bind mounts onto /etc/sluice/), Helm values files (their
`config`, a YAML string or a map) and bare Sluice configs. It prints `SOURCE<TAB>FILE` lines
and fails when a file holds none.
"""

import fnmatch
import json
import os
import re
import sys

import yaml

SLUICE_PORTS = {"metrics": 8888, "health": 13133}
WORKLOAD_KINDS = {"Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "Job"}


def load_docs(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def slug(text):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


# ---------------------------------------------------------------- extract-configs


def configs_in(path):
    """(label, yaml_text) of every Sluice config in the file at path."""
    docs = load_docs(path)
    found = []
    for doc in docs:
        if not isinstance(doc, dict):
            continue
        if doc.get("kind") == "ConfigMap":
            name = (doc.get("metadata") or {}).get("name", "?")
            for key, value in (doc.get("data") or {}).items():
                if key.endswith((".yaml", ".yml")):
                    found.append((f"{path} ConfigMap/{name} {key}", value))
        elif "services" in doc and isinstance(doc["services"], dict) and "apiVersion" not in doc:
            base = os.path.dirname(os.path.abspath(path))
            for service, spec in doc["services"].items():
                for volume in (spec or {}).get("volumes") or []:
                    if isinstance(volume, str):
                        parts = volume.split(":")
                        source, target = parts[0], parts[1] if len(parts) > 1 else ""
                    else:
                        source, target = volume.get("source", ""), volume.get("target", "")
                    if target.startswith("/etc/sluice/") and target.endswith((".yaml", ".yml")):
                        with open(os.path.join(base, source), encoding="utf-8") as f:
                            found.append((f"{path} service {service} {source}", f.read()))
        elif "config" in doc and "apiVersion" not in doc:
            config = doc["config"]
            text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)
            found.append((f"{path} values config", text))
        elif "service" in doc and "apiVersion" not in doc:
            with open(path, encoding="utf-8") as f:
                found.append((path, f.read()))
    return found


def extract_configs(outdir, files):
    os.makedirs(outdir, exist_ok=True)
    total = 0
    for path in files:
        found = configs_in(path)
        total += len(found)
        for label, text in found:
            out = os.path.join(outdir, slug(label) + ".yaml")
            with open(out, "w", encoding="utf-8") as f:
                f.write(text)
            print(f"{label}\t{out}")
    if not total:
        print(f"no Sluice config found in {' '.join(files)}", file=sys.stderr)
    return total > 0


# ---------------------------------------------------------------- policy


class Problems:
    def __init__(self):
        self.items = []

    def add(self, where, message):
        self.items.append(f"{where}: {message}")


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def pod_templates(docs):
    for doc in docs:
        if doc.get("kind") in WORKLOAD_KINDS:
            yield doc, doc["spec"]["template"]


def is_sluice(container):
    return "sluice" in container.get("image", "") or container.get("name") == "sluice"


def check_security(where, pod_spec, container, problems):
    pod_sc = pod_spec.get("securityContext") or {}
    sc = container.get("securityContext") or {}

    def get(key):
        return sc.get(key, pod_sc.get(key))

    if get("runAsNonRoot") is not True:
        problems.add(where, "runAsNonRoot must be true")
    if sc.get("readOnlyRootFilesystem") is not True:
        problems.add(where, "readOnlyRootFilesystem must be true")
    if sc.get("allowPrivilegeEscalation") is not False:
        problems.add(where, "allowPrivilegeEscalation must be false")
    if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
        problems.add(where, "capabilities.drop must contain ALL")
    if ((get("seccompProfile") or {}).get("type")) != "RuntimeDefault":
        problems.add(where, "seccompProfile.type must be RuntimeDefault")
    if sc.get("privileged"):
        problems.add(where, "must not be privileged")
    if pod_spec.get("hostNetwork") or pod_spec.get("hostPID") or pod_spec.get("hostIPC"):
        problems.add(where, "must not use host namespaces")


def check_sluice_container(where, pod_spec, container, configmaps, problems):
    ports = {p.get("name"): p.get("containerPort") for p in container.get("ports") or []}
    for name, number in SLUICE_PORTS.items():
        if ports.get(name) != number:
            problems.add(where, f"port {name} must be containerPort {number}")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = ((container.get(probe) or {}).get("httpGet")) or {}
        port = get.get("port")
        port = ports.get(port, port)
        if get.get("path") != path or port != SLUICE_PORTS["health"]:
            problems.add(where, f"{probe} must be GET {path} on {SLUICE_PORTS['health']}")
    resources = container.get("resources") or {}
    for kind in ("requests", "limits"):
        if not (resources.get(kind) or {}).get("memory"):
            problems.add(where, f"resources.{kind}.memory is missing")
    if not (resources.get("requests") or {}).get("cpu"):
        problems.add(where, "resources.requests.cpu is missing")
    env = {e.get("name"): e for e in container.get("env") or []}
    for name, field in (
        ("K8S_NODE_NAME", "spec.nodeName"),
        ("K8S_POD_NAME", "metadata.name"),
        ("K8S_NAMESPACE", "metadata.namespace"),
        ("HOST_IP", "status.hostIP"),
    ):
        got = (((env.get(name) or {}).get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
        if got != field:
            problems.add(where, f"env {name} must come from the downward API field {field}")
    token = env.get("PULSAR_TOKEN")
    if token is not None and "secretKeyRef" not in (token.get("valueFrom") or {}):
        problems.add(where, "PULSAR_TOKEN must come from a Secret (secretKeyRef), not a value")
    if pod_spec.get("automountServiceAccountToken") is not False:
        problems.add(where, "automountServiceAccountToken must be false (Sluice needs no API access)")
    args = container.get("args") or []
    mounts = {m.get("mountPath"): m.get("name") for m in container.get("volumeMounts") or []}
    volumes = {v.get("name"): v for v in pod_spec.get("volumes") or []}
    if "--config" in args:
        config_path = args[args.index("--config") + 1]
        directory, filename = os.path.split(config_path)
        volume = volumes.get(mounts.get(directory))
        if not volume or "configMap" not in volume:
            problems.add(where, f"{config_path} is not on a ConfigMap volume")
        else:
            name = volume["configMap"].get("name")
            if name not in configmaps:
                problems.add(where, f"ConfigMap {name} is not among the manifests")
            elif filename not in (configmaps[name].get("data") or {}):
                problems.add(where, f"ConfigMap {name} has no key {filename}")
    else:
        problems.add(where, "args must pass --config")
    for path, name in mounts.items():
        volume = volumes.get(name)
        if volume is None:
            problems.add(where, f"volumeMount {path} names no volume {name}")


def policy(files):
    problems = Problems()
    docs = []
    for path in files:
        docs.extend(d for d in load_docs(path) if isinstance(d, dict))
    configmaps = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "ConfigMap"}
    services = [d for d in docs if d.get("kind") == "Service"]
    templates = list(pod_templates(docs))
    if not templates:
        problems.add(" ".join(files), "no workload found")
    for workload, template in templates:
        kind, name = workload["kind"], workload["metadata"]["name"]
        labels = (template.get("metadata") or {}).get("labels") or {}
        if not matches(workload["spec"]["selector"].get("matchLabels"), labels):
            problems.add(f"{kind}/{name}", "selector does not match the pod template's labels")
        spec = template["spec"]
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            where = f"{kind}/{name} container {container.get('name')}"
            if not container.get("image"):
                problems.add(where, "no image")
            check_security(where, spec, container, problems)
            if is_sluice(container):
                check_sluice_container(where, spec, container, configmaps, problems)
    for service in services:
        where = f"Service/{service['metadata']['name']}"
        selector = (service.get("spec") or {}).get("selector") or {}
        pods = [t for _, t in templates if matches(selector, (t.get("metadata") or {}).get("labels") or {})]
        if not pods:
            problems.add(where, f"selector {selector} matches no pod template")
        for port in service["spec"].get("ports") or []:
            target = port.get("targetPort", port.get("port"))
            for t in pods:
                names = {p.get("name") for c in t["spec"]["containers"] for p in c.get("ports") or []}
                numbers = {p.get("containerPort") for c in t["spec"]["containers"] for p in c.get("ports") or []}
                if target not in names and target not in numbers:
                    problems.add(where, f"targetPort {target} is not a port of the selected pods")
        annotations = (service.get("metadata") or {}).get("annotations") or {}
        if "metrics" in service["metadata"]["name"] and annotations.get("prometheus.io/scrape") != "true":
            problems.add(where, 'metrics Service needs the annotation prometheus.io/scrape: "true"')
    for pdb in (d for d in docs if d.get("kind") == "PodDisruptionBudget"):
        selector = pdb["spec"]["selector"].get("matchLabels")
        if not any(matches(selector, (t.get("metadata") or {}).get("labels") or {}) for _, t in templates):
            problems.add(f"PodDisruptionBudget/{pdb['metadata']['name']}", "selector matches no pod template")
    for monitor in (d for d in docs if d.get("kind") == "ServiceMonitor"):
        where = f"ServiceMonitor/{monitor['metadata']['name']}"
        if monitor.get("apiVersion") != "monitoring.coreos.com/v1":
            problems.add(where, "apiVersion must be monitoring.coreos.com/v1")
        spec = monitor.get("spec") or {}
        selector = (spec.get("selector") or {}).get("matchLabels")
        selected = [s for s in services if matches(selector, s["metadata"].get("labels") or {})]
        if not selected:
            problems.add(where, "selector matches no Service")
        if set((spec.get("selector") or {}).keys()) - {"matchLabels", "matchExpressions"}:
            problems.add(where, "selector has unknown keys")
        allowed = {"port", "path", "interval", "scrapeTimeout", "scheme", "honorLabels", "relabelings", "metricRelabelings"}
        for endpoint in spec.get("endpoints") or []:
            if set(endpoint) - allowed:
                problems.add(where, f"endpoint has unknown keys {sorted(set(endpoint) - allowed)}")
            for s in selected:
                if endpoint.get("port") not in {p.get("name") for p in s["spec"].get("ports") or []}:
                    problems.add(where, f"port {endpoint.get('port')} is not a named port of Service/{s['metadata']['name']}")
        if not spec.get("endpoints"):
            problems.add(where, "no endpoints")
    for secret in (d for d in docs if d.get("kind") == "Secret"):
        where = f"Secret/{secret['metadata']['name']}"
        values = list((secret.get("stringData") or {}).values()) + list((secret.get("data") or {}).values())
        if any(not re.fullmatch(r"REPLACE-ME[A-Z0-9-]*", str(v)) for v in values):
            problems.add(where, "holds something other than a REPLACE-ME placeholder: never commit secrets")
    for line in problems.items:
        print(f"policy: {line}", file=sys.stderr)
    if not problems.items:
        print(f"policy: ok ({len(docs)} objects, {len(templates)} workloads)")
    return not problems.items


# ---------------------------------------------------------------- kustomization


def kustomization(directory):
    path = os.path.join(directory, "kustomization.yaml")
    doc = load_docs(path)[0]
    listed = doc.get("resources") or []
    ok = True
    for resource in listed:
        if not os.path.isfile(os.path.join(directory, resource)):
            print(f"{path}: resource {resource} does not exist", file=sys.stderr)
            ok = False
    present = sorted(f for f in os.listdir(directory) if f.endswith(".yaml") and f != "kustomization.yaml")
    for f in present:
        if f not in listed:
            print(f"{path}: {f} is not listed in resources", file=sys.stderr)
            ok = False
    if ok:
        print(f"kustomization: ok ({len(listed)} resources)")
    return ok


# ---------------------------------------------------------------- dockerfile


def dockerignore_excludes(patterns, path):
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern[1:] if negate else pattern
        pattern = pattern.rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(p, pattern.replace("**/", "")) for p in prefixes):
            excluded = not negate
    return excluded


def dockerfile(path, ignore_path):
    text = open(path, encoding="utf-8").read()
    patterns = [l.strip() for l in open(ignore_path, encoding="utf-8") if l.strip() and not l.startswith("#")]
    problems = []
    stages = re.findall(r"^FROM\s+(\S+)", text, re.M)
    if len(stages) < 2:
        problems.append("must be a multi-stage build")
    final = text[text.rfind("\nFROM ") :]
    if not re.search(r'^ENTRYPOINT \["sluice"\]$', final, re.M):
        problems.append('final stage needs ENTRYPOINT ["sluice"]')
    if not re.search(r'^CMD \["run", "--config", "/etc/sluice/config.yaml"\]$', final, re.M):
        problems.append('final stage needs CMD ["run", "--config", "/etc/sluice/config.yaml"]')
    exposed = set(" ".join(re.findall(r"^EXPOSE\s+(.+)$", final, re.M)).split())
    if not {"4317", "4318", "8888", "13133"} <= exposed:
        problems.append(f"EXPOSE must list 4317 4318 8888 13133 (has {sorted(exposed)})")
    user = re.findall(r"^USER\s+(\S+)", final, re.M)
    if not user or user[-1].split(":")[0] in ("root", "0"):
        problems.append("final stage must switch to a non-root USER")
    if "/usr/local/bin/sluice" not in final:
        problems.append("the binary must be at /usr/local/bin/sluice (on PATH)")
    if "cargo build --release --locked" not in text:
        problems.append("must build with cargo build --release --locked")
    if "protobuf-compiler" not in text:
        problems.append("the build stage must install protobuf-compiler")
    for required in (".git", "target", ".cache", "data"):
        if not dockerignore_excludes(patterns, required):
            problems.append(f"{ignore_path} must exclude {required}")
    root = os.path.dirname(os.path.abspath(ignore_path))
    for source in re.findall(r"^COPY\s+(?!--from)(?:--\S+\s+)*(\S+)\s+\S+$", text, re.M):
        if source == ".":
            continue
        if not os.path.exists(os.path.join(root, source)):
            problems.append(f"COPY source {source} does not exist")
        elif dockerignore_excludes(patterns, source):
            problems.append(f"COPY source {source} is excluded by {ignore_path}")
    for needed in ("Cargo.toml", "Cargo.lock", "src"):
        if dockerignore_excludes(patterns, needed):
            problems.append(f"{ignore_path} excludes {needed}, which the build needs")
    for p in problems:
        print(f"{path}: {p}", file=sys.stderr)
    if not problems:
        print(f"dockerfile: ok ({len(stages)} stages)")
    return not problems


METRIC = re.compile(r"\bsluice_[a-z0-9_]+\b")


def observability(dashboard, rules, src):
    """Every metric the Grafana dashboard (valid JSON) or the alerting rules name is one the
    source emits (a string literal in src/), once histogram suffixes are taken off. The
    scrape of a running Sluice (tests/observability.rs) checks the same against /metrics."""
    ok = True
    try:
        with open(dashboard, encoding="utf-8") as f:
            json.load(f)
    except (OSError, ValueError) as e:
        print(f"{dashboard}: not valid JSON: {e}")
        ok = False
    emitted = set()
    for root, _, files in os.walk(src):
        for name in files:
            if name.endswith(".rs"):
                with open(os.path.join(root, name), encoding="utf-8") as f:
                    emitted.update(re.findall(r'"(sluice_[a-z0-9_]+)"', f.read()))
    for path in (dashboard, rules):
        with open(path, encoding="utf-8") as f:
            named = set(METRIC.findall(f.read()))
        for metric in sorted(named):
            base = re.sub(r"_(bucket|sum|count)$", "", metric)
            if metric not in emitted and base not in emitted:
                print(f"{path}: {metric} is not a metric Sluice emits")
                ok = False
    return ok


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    command, args = argv[1], argv[2:]
    if command == "extract-configs":
        ok = extract_configs(args[0], args[1:])
    elif command == "policy":
        ok = policy(args)
    elif command == "kustomization":
        ok = kustomization(args[0])
    elif command == "dockerfile":
        ok = dockerfile(args[0], args[1])
    elif command == "observability":
        ok = observability(args[0], args[1], args[2])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
