use super::*;

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_yaml(text, |name| match name {
        "BACKEND" => Some("http://backend:4317".into()),
        _ => None,
    })
}

fn errors(text: &str) -> Vec<String> {
    match load(text) {
        Ok(_) => panic!("config should be invalid:\n{text}"),
        Err(ConfigError::Invalid(list)) => list.iter().map(|e| e.to_string()).collect(),
        Err(other) => vec![other.to_string()],
    }
}

const BASE: &str = r#"
receivers:
  otlp:
    protocols:
      grpc: { endpoint: "127.0.0.1:4317" }
buffers:
  disk: { directory: /tmp/sluice-test }
processors:
  batch: {}
exporters:
  otlp/tempo: { endpoint: "${BACKEND}", headers: { X-Scope-OrgID: "{tenant}" } }
  debug:
service:
  pipelines:
    traces: { receivers: [otlp], processors: [batch], buffer: disk, exporters: [otlp/tempo, debug] }
    logs: { receivers: [otlp], exporters: [debug] }
"#;

#[test]
fn the_shipped_config_is_valid() {
    let text = include_str!("../../../config.yaml");
    let config = Config::from_yaml(text, |_| None).unwrap();
    assert_eq!(config.pipelines.len(), 3);
    assert_eq!(config.tenancy.default.as_deref(), Some("default"));
}

#[test]
fn builds_the_pipeline_graph() {
    let config = load(BASE).unwrap();
    let traces = &config
        .pipelines
        .iter()
        .find(|p| p.signal == Signal::Traces)
        .unwrap();
    assert_eq!(
        traces
            .exporters
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>(),
        ["otlp/tempo", "debug"]
    );
    // One buffer configured: a pipeline that names none uses it.
    let logs = &config
        .pipelines
        .iter()
        .find(|p| p.signal == Signal::Logs)
        .unwrap();
    assert_eq!(logs.buffer.to_string(), "disk");
    assert_eq!(config.tenancy, TenancyConfig::default());
    assert_eq!(config.shutdown_timeout, Duration::from_secs(30));
}

#[test]
fn unknown_references_name_their_path() {
    let text = BASE.replace(
        "exporters: [otlp/tempo, debug] }",
        "exporters: [otlp/jaeger] }",
    );
    assert_eq!(
        errors(&text),
        vec!["service.pipelines.traces.exporters[0]: unknown exporter \"otlp/jaeger\" (defined: debug, otlp/tempo)"]
    );
    let text = BASE.replace(
        "receivers: [otlp], processors",
        "receivers: [zipkin], processors",
    );
    assert!(errors(&text)[0]
        .starts_with("service.pipelines.traces.receivers[0]: unknown receiver \"zipkin\""));
}

#[test]
fn unknown_keys_are_rejected_with_their_path() {
    let text = BASE.replace("disk: { directory", "disk: { colour: red, directory");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("buffers.disk.colour: unknown field `colour`"),
        "{errs:?}"
    );

    let text = BASE.replace(
        "grpc: { endpoint",
        "grpc: { max_recv_msg_size_mib: lots, endpoint",
    );
    let errs = errors(&text);
    assert!(
        errs[0].starts_with("receivers.otlp.protocols.grpc.max_recv_msg_size_mib: "),
        "{errs:?}"
    );

    let text = format!("{BASE}\nextensions: {{}}\n");
    assert!(
        errors(&text)[0].starts_with("extensions: unknown field `extensions`")
            || errors(&text)[0].contains("unknown field `extensions`")
    );
}

#[test]
fn bad_values_are_reported_with_their_path() {
    let text = BASE.replace(
        "processors:\n  batch: {}",
        "processors:\n  batch: { timeout: soon }",
    );
    let errs = errors(&text);
    assert!(
        errs[0].starts_with("processors.batch.timeout: "),
        "{errs:?}"
    );

    let text = format!("{BASE}\ntenancy: {{ default: \"no/slashes\" }}\n");
    let errs = errors(&text);
    assert!(
        errs[0].starts_with("tenancy.default: invalid tenant id"),
        "{errs:?}"
    );
}

#[test]
fn pipeline_ids_must_name_a_signal() {
    let text = BASE.replace("    logs: {", "    profiles: {");
    assert!(errors(&text)[0]
        .starts_with("service.pipelines.profiles: pipeline id must start with its signal"));
}

#[test]
fn one_consumer_per_buffer_stream() {
    let text = BASE.replace(
        "    logs: { receivers: [otlp], exporters: [debug] }",
        "    traces/second: { buffer: disk, exporters: [debug] }",
    );
    let errs = errors(&text);
    assert!(
        errs.iter()
            .any(|e| e.contains("already exports traces from buffer disk")),
        "{errs:?}"
    );
}

#[test]
fn http_receiver_errors_name_their_path() {
    let text = BASE.replace(
        "grpc: { endpoint: \"127.0.0.1:4317\" }",
        "grpc: {}\n      http: { endpoint: nowhere }",
    );
    assert!(errors(&text)[0].starts_with("receivers.otlp.protocols.http.endpoint: "));
}

#[test]
fn unset_environment_variables_are_errors() {
    let text = BASE.replace("${BACKEND}", "${NOT_SET}");
    let err = load(&text).unwrap_err().to_string();
    assert!(
        err.contains("environment variable NOT_SET is not set"),
        "{err}"
    );
}

#[test]
fn a_memory_limiter_needs_a_pipeline_with_receivers() {
    let text = BASE
        .replace(
            "processors:\n  batch: {}",
            "processors:\n  batch: {}\n  memory_limiter: { check_interval: 1s, limit_mib: 512 }",
        )
        .replace(
            "logs: { receivers: [otlp], exporters: [debug] }",
            "logs: { processors: [memory_limiter], exporters: [debug] }",
        );
    assert_eq!(
        errors(&text),
        vec!["service.pipelines.logs.processors[0]: memory_limiter refuses data at ingest, and this pipeline has no receivers"]
    );
}

#[test]
fn a_processor_named_in_a_pipeline_of_a_signal_it_cannot_process_is_an_error() {
    let text = BASE
        .replace(
            "processors:\n  batch: {}",
            "processors:\n  batch: {}\n  probabilistic_sampler: { sampling_percentage: 10 }",
        )
        .replace(
            "logs: { receivers: [otlp], exporters: [debug] }",
            "logs: { receivers: [otlp], processors: [probabilistic_sampler], exporters: [debug] }\n    metrics/s: { processors: [probabilistic_sampler], exporters: [debug] }",
        );
    assert_eq!(
        errors(&text),
        vec!["service.pipelines.metrics/s.processors[0]: probabilistic_sampler does not process metrics"]
    );
}

#[test]
fn a_tenant_byte_cap_is_refused_where_the_buffer_cannot_apply_it() {
    let capped = "tenancy: { limits: { default: { items_per_second: 10 }, tenants: { acme: { buffer_max_mib: 5 } } } }";
    // The disk buffer applies it.
    let disk = load(&format!("{BASE}\n{capped}\n")).unwrap();
    disk.check_tenant_buffer_caps().unwrap();

    let nats = BASE
        .replace(
            "disk: { directory: /tmp/sluice-test }",
            "nats: { url: \"nats://127.0.0.1:4222\" }",
        )
        .replace("buffer: disk", "buffer: nats");
    let uncapped = load(&format!(
        "{nats}\ntenancy: {{ limits: {{ default: {{ items_per_second: 10 }} }} }}\n"
    ))
    .unwrap();
    uncapped.check_tenant_buffer_caps().unwrap();
    let refused = load(&format!("{nats}\n{capped}\n"))
        .unwrap()
        .check_tenant_buffer_caps()
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("tenancy.limits.tenants.acme.buffer_max_mib")
            && refused.contains("buffers.nats"),
        "{refused}"
    );
}
