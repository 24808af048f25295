//! `sluice validate` and `sluice version`: the CLI contract (docs/contracts.md, "Configuration").

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{free_port, temp_dir, SluiceConfig};

fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .output()
        .expect("run the sluice binary")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn validate(path: &Path) -> Output {
    sluice(&["validate", "--config", path.to_str().unwrap()])
}

/// Validates `yaml` and expects a failure whose output names each of `expected`.
fn assert_invalid(dir: &Path, name: &str, yaml: &str, expected: &[&str]) {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    let output = validate(&path);
    let out = text(&output);
    assert!(
        !output.status.success(),
        "{name}: validate accepted it:\n{out}\n{yaml}"
    );
    for want in expected {
        assert!(out.contains(want), "{name}: output lacks {want:?}:\n{out}");
    }
}

#[test]
fn repository_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.yaml");
    assert!(path.exists(), "{} is missing", path.display());
    let output = validate(&path);
    assert!(
        output.status.success(),
        "config.yaml is invalid:\n{}",
        text(&output)
    );
}

#[test]
fn the_test_config_is_valid() {
    let dir = temp_dir();
    let path = dir.path().join("ok.yaml");
    std::fs::write(&path, SluiceConfig::new(dir.path(), free_port()).yaml()).unwrap();
    let output = validate(&path);
    assert!(
        output.status.success(),
        "the integration tests' config is invalid:\n{}",
        text(&output)
    );
    // Validation does no I/O: the buffer directory is not created.
    assert!(
        !dir.path().join("buffer").exists(),
        "validate created the buffer directory"
    );
}

#[test]
fn errors_name_their_path() {
    let dir = temp_dir();
    let base = SluiceConfig::new(dir.path(), free_port()).yaml();

    let unknown_exporter = base.replacen("exporters: [otlp] }", "exporters: [otlp/tempo] }", 1);
    assert_ne!(unknown_exporter, base);
    assert_invalid(
        dir.path(),
        "unknown-exporter",
        &unknown_exporter,
        &["service.pipelines.traces.exporters[0]", "otlp/tempo"],
    );

    let unknown_key = base.replacen("      grpc:\n", "      grpc:\n        bogus_key: 1\n", 1);
    assert_ne!(unknown_key, base);
    assert_invalid(
        dir.path(),
        "unknown-key",
        &unknown_key,
        &["receivers.otlp.protocols.grpc", "bogus_key"],
    );

    let bad_duration = base.replacen("timeout: 50ms", "timeout: 5 parsecs", 1);
    assert_ne!(bad_duration, base);
    assert_invalid(
        dir.path(),
        "bad-duration",
        &bad_duration,
        &["processors.batch.timeout"],
    );

    let missing = dir.path().join("does-not-exist.yaml");
    let output = validate(&missing);
    assert!(!output.status.success(), "validate accepted a missing file");
    assert!(
        text(&output).contains("does-not-exist.yaml"),
        "{}",
        text(&output)
    );
}

#[test]
fn version_prints_the_crate_version() {
    let output = sluice(&["version"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains(env!("CARGO_PKG_VERSION")),
        "{}",
        text(&output)
    );
}
