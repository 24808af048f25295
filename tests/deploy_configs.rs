//! Every Sluice config shipped under deploy/ must pass `sluice validate`: the ConfigMaps of
//! deploy/kubernetes, the files mounted by deploy/compose/docker-compose.yaml, the `config` of
//! the Helm chart's values files and the container image's default config. A deployment file
//! that drifts from the config schema fails here, not in someone's cluster.
//!
//! `deploy/scripts/validate-deploy.sh` additionally validates the configs as rendered by
//! `helm template` (with the chart's Pulsar-token injection) and the manifests themselves.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_yaml::Value;

/// The downward-API variables (and the Pulsar token and Kafka password) the manifests provide
/// at run time.
const DEPLOY_ENV: &[(&str, &str)] = &[
    ("K8S_NODE_NAME", "node-1"),
    ("K8S_POD_NAME", "sluice-agent-abcde"),
    ("K8S_NAMESPACE", "sluice"),
    ("HOST_IP", "10.0.0.1"),
    ("PULSAR_TOKEN", "dummy-token"),
    ("KAFKA_PASSWORD", "dummy-password"),
];

struct Found {
    /// Where it was found, for the failure message.
    source: String,
    yaml: String,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Every YAML document of a file.
fn documents(path: &Path) -> Vec<Value> {
    let text = read(path);
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", relative(path)))
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// `*.yaml` / `*.yml` files under `dir`, recursively, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries =
            std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("list {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            ) {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn is_yaml_name(name: &str) -> bool {
    name.ends_with(".yaml") || name.ends_with(".yml")
}

/// ConfigMap data entries named `*.yaml` in the Kubernetes manifests.
fn kubernetes_configs() -> Vec<Found> {
    let mut found = Vec::new();
    for path in yaml_files(&root().join("deploy/kubernetes")) {
        for doc in documents(&path) {
            if doc.get("kind").and_then(Value::as_str) != Some("ConfigMap") {
                continue;
            }
            let name = doc
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("?");
            let Some(data) = doc.get("data").and_then(Value::as_mapping) else {
                continue;
            };
            for (key, value) in data {
                let (Some(key), Some(value)) = (key.as_str(), value.as_str()) else {
                    continue;
                };
                if is_yaml_name(key) {
                    found.push(Found {
                        source: format!("{} ConfigMap/{name} {key}", relative(&path)),
                        yaml: value.to_string(),
                    });
                }
            }
        }
    }
    found
}

/// Files that docker-compose.yaml bind-mounts under /etc/sluice/.
fn compose_configs() -> Vec<Found> {
    let dir = root().join("deploy/compose");
    let mut found = Vec::new();
    for path in yaml_files(&dir) {
        for doc in documents(&path) {
            let Some(services) = doc.get("services").and_then(Value::as_mapping) else {
                continue;
            };
            for (service, spec) in services {
                let service = service.as_str().unwrap_or("?");
                let volumes = spec
                    .get("volumes")
                    .and_then(Value::as_sequence)
                    .cloned()
                    .unwrap_or_default();
                for volume in volumes {
                    let (source, target) = match &volume {
                        Value::String(short) => {
                            let mut parts = short.split(':');
                            let source = parts.next().unwrap_or_default().to_string();
                            (source, parts.next().unwrap_or_default().to_string())
                        }
                        long => (
                            long.get("source")
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_string(),
                            long.get("target")
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_string(),
                        ),
                    };
                    if target.starts_with("/etc/sluice/") && is_yaml_name(&target) {
                        let file = path.parent().expect("compose dir").join(&source);
                        found.push(Found {
                            source: format!("{} service {service}: {source}", relative(&path)),
                            yaml: read(&file),
                        });
                    }
                }
            }
        }
    }
    found
}

/// The `config` value of the chart's values.yaml and of the values files beside the chart
/// (a YAML string, or a map).
fn helm_configs() -> Vec<Found> {
    let helm = root().join("deploy/helm");
    let mut files = vec![helm.join("sluice/values.yaml")];
    files.extend(
        yaml_files(&helm)
            .into_iter()
            .filter(|p| p.parent() == Some(helm.as_path())),
    );
    let mut found = Vec::new();
    for path in files {
        for doc in documents(&path) {
            let yaml = match doc.get("config") {
                Some(Value::String(text)) => text.clone(),
                Some(map @ Value::Mapping(_)) => {
                    serde_yaml::to_string(map).expect("serialize the config map")
                }
                _ => continue,
            };
            found.push(Found {
                source: format!("{} config", relative(&path)),
                yaml,
            });
        }
    }
    found
}

fn image_default_config() -> Vec<Found> {
    let path = root().join("deploy/docker/config.yaml");
    vec![Found {
        source: relative(&path),
        yaml: read(&path),
    }]
}

#[test]
fn every_shipped_config_passes_sluice_validate() {
    let groups = [
        ("deploy/kubernetes ConfigMaps", kubernetes_configs()),
        ("deploy/compose mounts", compose_configs()),
        ("deploy/helm values", helm_configs()),
        ("deploy/docker default config", image_default_config()),
    ];
    for (group, found) in &groups {
        assert!(
            !found.is_empty(),
            "no Sluice config found in {group}: the extraction no longer matches the files"
        );
    }
    // The agent and the exporter, at least, in each of these.
    for (group, found) in &groups[..3] {
        assert!(
            found.len() >= 2,
            "{group}: expected the agent and the exporter configs, found {}",
            found.len()
        );
    }

    let dir = tempfile::tempdir().expect("temp dir");
    let mut failures = Vec::new();
    let mut checked = 0;
    for (index, found) in groups.iter().flat_map(|(_, f)| f).enumerate() {
        let file = dir.path().join(format!("config-{index}.yaml"));
        std::fs::write(&file, &found.yaml).expect("write the config");
        let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["validate", "--config"])
            .arg(&file)
            .envs(DEPLOY_ENV.iter().copied())
            .output()
            .expect("run sluice validate");
        checked += 1;
        if !output.status.success() {
            failures.push(format!(
                "{}:\n{}{}",
                found.source,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} deployment configs are invalid:\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}
