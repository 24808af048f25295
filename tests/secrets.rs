//! Credentials never leak (docs/contracts.md, "Secrets"): with tenant tokens (inline, from the
//! environment, from a file), an exporter's authorization header and a Pulsar token set, a run
//! that accepts, refuses and dead-letters data logs at debug level, and then every output is
//! searched for each credential: stderr, stdout, `/metrics`, `/tenants`, `/readyz`, every
//! answer to a client, and what `sluice validate` prints for a broken config. A token file
//! other users can read is warned about by path, never by content.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::http::http_get;
use common::http_client::request;
use common::otlp::{channel, expect_code, export_traces_with, named_spans, trace_request};
use common::pulsar;
use common::{send_named_spans, temp_dir, wait_for, Backend, SluiceConfig, SluiceProcess};
use prost::Message;
use tonic::Code;

const WAIT: Duration = Duration::from_secs(30);
const INLINE_TOKEN: &str = "tenant-SECRET-inline-token-0001";
const ENV_TOKEN: &str = "tenant-SECRET-env-token-0002";
const FILE_TOKEN: &str = "tenant-SECRET-file-token-0003";
const WRONG_TOKEN: &str = "client-SECRET-wrong-token-0004";
const EXPORTER_TOKEN: &str = "exporter-SECRET-token-0005";
const PULSAR_TOKEN: &str = "pulsar-SECRET-token-0006";
const TOKEN_ENV_VAR: &str = "SLUICE_SECRETS_TEST_TOKEN";

fn write_secret(path: &Path, value: &str, mode: u32) {
    std::fs::write(path, format!("{value}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Fails naming the output and the credential if any of `secrets` appears in `text`.
fn assert_clean(what: &str, text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !text.contains(secret),
            "{what} contains the credential {secret:?}:\n{text}"
        );
    }
}

/// Everything a running Sluice shows to the outside besides client answers.
async fn outputs(sluice: &SluiceProcess) -> Vec<(String, String)> {
    let mut all = vec![("/metrics".to_string(), sluice.metrics().await)];
    for path in ["/tenants", "/readyz", "/healthz"] {
        let (_, body) = http_get(sluice.health_addr, path).await.unwrap();
        all.push((path.to_string(), body));
    }
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_never_appear_in_logs_answers_metrics_or_usage() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let guarded = Backend::start().await;
    // team-a's data is refused by the guarded backend (permanently), so the run has export
    // errors and dead letters to log too.
    guarded.fail_tenant("team-a", Code::PermissionDenied);
    let token_file = dir.path().join("team-c.token");
    write_secret(&token_file, FILE_TOKEN, 0o644);
    std::env::set_var(TOKEN_ENV_VAR, ENV_TOKEN);
    std::env::set_var("RUST_LOG", "debug");

    let mut config = SluiceConfig::new(dir.path(), backend.port()).with_http(&[]);
    config.tenancy_extra = vec![
        "auth:".into(),
        "    bearer_tokens:".into(),
        format!("      - {{ tenant: team-a, token: {INLINE_TOKEN} }}"),
        format!("      - {{ tenant: team-b, token_env: {TOKEN_ENV_VAR} }}"),
        format!("      - {{ tenant: team-c, token_file: {:?} }}", token_file),
    ];
    config.extra_exporters = vec![format!(
        "otlp/guarded: {{ endpoint: 'http://127.0.0.1:{}', headers: {{ authorization: 'Bearer {EXPORTER_TOKEN}', x-scope-orgid: '{{tenant}}' }} }}",
        guarded.port()
    )];
    config.pipeline_exporters = "[otlp, otlp/guarded]".into();
    let mut sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let client = channel(&sluice.otlp_endpoint()).await;
    let mut answers = Vec::new();

    // Accepted with each kind of token.
    for (tenant, token) in [
        ("team-a", INLINE_TOKEN),
        ("team-b", ENV_TOKEN),
        ("team-c", FILE_TOKEN),
    ] {
        let bearer = format!("Bearer {token}");
        let spans = trace_request("secrets", None, named_spans(tenant, 0, 3));
        export_traces_with(&client, &[("authorization", &bearer)], spans)
            .await
            .unwrap_or_else(|e| panic!("{tenant}: {e}"));
    }
    // Refused: an unknown token, and a token naming another tenant.
    let spans = || trace_request("secrets", None, named_spans("refused", 0, 1));
    let wrong = format!("Bearer {WRONG_TOKEN}");
    let status = export_traces_with(&client, &[("authorization", &wrong)], spans())
        .await
        .unwrap_err();
    answers.push(expect_code("unknown token", &status, Code::Unauthenticated));
    let inline = format!("Bearer {INLINE_TOKEN}");
    let status = export_traces_with(
        &client,
        &[("authorization", &inline), ("x-scope-orgid", "team-b")],
        spans(),
    )
    .await
    .unwrap_err();
    answers.push(expect_code(
        "token of another tenant",
        &status,
        Code::PermissionDenied,
    ));
    let http = sluice.http_addr.expect("http receiver");
    let headers = [
        ("content-type", "application/x-protobuf"),
        ("authorization", wrong.as_str()),
    ];
    let reply = request(
        http,
        "POST",
        "/v1/traces",
        &headers,
        spans().encode_to_vec(),
    )
    .await;
    assert_eq!(reply.status, 401, "{reply:?}");
    answers.push(String::from_utf8_lossy(&reply.body).into_owned());
    answers.push(format!("{:?}", reply.headers));

    // Delivered with the exporter's header; team-a refused by the guarded backend.
    for tenant in ["team-a", "team-b", "team-c"] {
        backend.wait_spans(tenant, 3, WAIT).await;
    }
    guarded.wait_spans("team-b", 3, WAIT).await;
    let authorization = guarded.with(|r| r.traces[0].authorization.clone());
    assert_eq!(
        authorization.as_deref(),
        Some(format!("Bearer {EXPORTER_TOKEN}").as_str()),
        "the exporter sends its credential"
    );
    wait_for("team-a dead-lettered", WAIT, || async {
        let dead = sluice
            .metric("sluice_dead_lettered_items_total", &[("tenant", "team-a")])
            .await;
        if dead >= 3.0 {
            Ok(())
        } else {
            Err(dead.to_string())
        }
    })
    .await;

    let secrets = [
        INLINE_TOKEN,
        ENV_TOKEN,
        FILE_TOKEN,
        WRONG_TOKEN,
        EXPORTER_TOKEN,
    ];
    for (what, text) in outputs(&sluice).await {
        assert_clean(&what, &text, &secrets);
    }
    for answer in &answers {
        assert_clean("an answer to a client", answer, &secrets);
    }
    sluice.terminate().await;
    let stderr = sluice.stderr();
    assert!(
        stderr.contains("DEBUG"),
        "the run logged at debug level, so the search covers the most verbose output"
    );
    assert_clean("stderr", &stderr, &secrets);
    assert_clean("stdout", &sluice.stdout(), &secrets);
    let warning = stderr
        .lines()
        .find(|l| l.contains("can be read or replaced by other users"))
        .unwrap_or_else(|| panic!("no warning about the token file (mode 644):\n{stderr}"));
    assert!(
        warning.contains(&token_file.display().to_string()) && warning.contains("644"),
        "the warning names the file and its mode: {warning}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pulsar_token_never_appears_and_a_private_token_file_is_not_warned_about() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let token_file = dir.path().join("pulsar.token");
    write_secret(&token_file, PULSAR_TOKEN, 0o600);
    std::env::set_var("RUST_LOG", "debug");
    let tenant = pulsar::tenant("secrets");
    let auth = format!("auth: {{ token: {{ file: {:?} }} }}", token_file);
    let topic = "topic: 'persistent://public/default/secrets-{signal}-{tenant}'";
    let subscription = format!("consumer: {{ subscription: {tenant} }}");
    let config = SluiceConfig::new(dir.path(), backend.port()).with_pulsar(
        &pulsar::service_url(),
        &[auth.as_str(), topic, subscription.as_str()],
    );
    let mut sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let sent = send_named_spans(&sluice, &tenant, 3, 2).await;
    backend.wait_span_names(&tenant, &sent, WAIT).await;

    for (what, text) in outputs(&sluice).await {
        assert_clean(&what, &text, &[PULSAR_TOKEN]);
    }
    sluice.terminate().await;
    let stderr = sluice.stderr();
    assert!(stderr.contains("DEBUG"), "the run logged at debug level");
    assert_clean("stderr", &stderr, &[PULSAR_TOKEN]);
    assert_clean("stdout", &sluice.stdout(), &[PULSAR_TOKEN]);
    assert!(
        !stderr.contains("can be read or replaced by other users"),
        "a 600 token file is private: {stderr}"
    );
}

#[test]
fn a_broken_config_is_reported_without_its_credentials() {
    let dir = temp_dir();
    let short = "SECRET-short";
    let password = "url-SECRET-password";
    let mut config = SluiceConfig::new(dir.path(), 4317);
    config.tenancy_extra = vec![
        "auth:".into(),
        "    bearer_tokens:".into(),
        format!("      - {{ tenant: team-a, token: {short} }}"),
    ];
    config.extra_exporters = vec![format!(
        "otlp/url: {{ endpoint: 'http://user:{password}@127.0.0.1:4317' }}"
    )];
    config.pipeline_exporters = "[otlp, otlp/url]".into();
    let path = dir.path().join("broken.yaml");
    std::fs::write(&path, config.yaml()).unwrap();
    for command in ["validate", "run"] {
        let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args([command, "--config", path.to_str().unwrap()])
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(output.status.code(), Some(2), "{command}: {text}");
        assert!(
            text.contains("bearer_tokens[0].token") && text.contains("otlp/url"),
            "{command} names the broken fields: {text}"
        );
        assert_clean(command, &text, &[short, password]);
    }
}
