//! TLS end to end, with certificates made in the test (rcgen): the OTLP/gRPC and OTLP/HTTP
//! receivers over TLS (HTTP/1.1 and HTTP/2), mutual TLS refusing clients without a trusted
//! certificate at the handshake, a certificate renewed on disk being served without a
//! restart, an unusable certificate failing startup by name, and the `otlp` and
//! `otlp_http` exporters reaching TLS backends with a CA and client certificate or with
//! `insecure_skip_verify`.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::otlp::{export_traces, named_spans, trace_request};
use common::tls::{
    cert_der, grpc_channel, https_client, presented_cert, server_config, CertFiles, HttpSink, Pki,
    TlsProxy,
};
use common::{temp_dir, wait_for, Backend, SluiceConfig, SluiceProcess};
use prost::Message;

const WAIT: Duration = Duration::from_secs(30);
const FAILURES: &str = "sluice_receiver_tls_handshake_failures_total";

/// `config`'s YAML with `tls: {tls}` under `protocols.grpc`.
fn with_grpc_tls(config: &SluiceConfig, tls: &str) -> String {
    let yaml = config.yaml();
    let line = format!("        endpoint: 127.0.0.1:{}\n", config.grpc_port);
    assert!(yaml.contains(&line), "unexpected config layout:\n{yaml}");
    yaml.replacen(&line, &format!("{line}        tls: {tls}\n"), 1)
}

/// One `TraceService/Export` over TLS: connecting and calling, either may be refused.
async fn grpc_export(
    sluice: &SluiceProcess,
    ca_pem: &str,
    identity: Option<&CertFiles>,
    tenant: &str,
    spans: usize,
) -> Result<(), String> {
    let channel = grpc_channel(sluice.grpc_addr, ca_pem, identity)
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    let request = trace_request("tls-test", None, named_spans(tenant, 0, spans));
    export_traces(&channel, Some(tenant), request)
        .await
        .map_err(|status| format!("export: {status:?}"))
}

/// One OTLP/HTTP protobuf trace export to `https://127.0.0.1:<http port>/v1/traces`.
async fn http_export(
    sluice: &SluiceProcess,
    client: &reqwest::Client,
    tenant: &str,
    spans: usize,
) -> Result<reqwest::Response, reqwest::Error> {
    let addr = sluice.http_addr.expect("an HTTP receiver");
    let body = trace_request("tls-test", None, named_spans(tenant, 0, spans)).encode_to_vec();
    client
        .post(format!("https://{addr}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .header("x-scope-orgid", tenant)
        .body(body)
        .send()
        .await
}

#[tokio::test]
async fn grpc_receiver_serves_tls_to_clients_that_trust_its_ca() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let pki = Pki::new(dir.path(), "main");
    let server = pki.server("sluice");
    let config = SluiceConfig::new(dir.path(), backend.port());
    let sluice = SluiceProcess::start(&with_grpc_tls(&config, &server.yaml("")), dir.path()).await;

    grpc_export(&sluice, &pki.ca_pem(), None, "team-a", 3)
        .await
        .expect("export over TLS");
    backend.wait_spans("team-a", 3, WAIT).await;

    // A client that does not trust the certificate's CA stops at the handshake.
    let other = Pki::new(dir.path(), "other");
    let refused = grpc_export(&sluice, &other.ca_pem(), None, "team-b", 1).await;
    assert!(
        refused.is_err(),
        "an untrusted server certificate was accepted"
    );
    // A plaintext client gets no gRPC answer from a TLS port.
    let plain = async {
        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://{}", sluice.grpc_addr))
                .unwrap()
                .timeout(Duration::from_secs(5))
                .connect()
                .await
                .map_err(|e| e.to_string())?;
        let request = trace_request("tls-test", None, named_spans("plain", 0, 1));
        export_traces(&channel, Some("team-p"), request)
            .await
            .map_err(|status| status.to_string())
    };
    let outcome = tokio::time::timeout(WAIT, plain).await;
    assert!(
        !matches!(outcome, Ok(Ok(()))),
        "a plaintext client was served"
    );
    assert_eq!(
        backend.span_count("team-p") + backend.span_count("team-b"),
        0
    );
    let failures = sluice.metric(FAILURES, &[("transport", "grpc")]).await;
    assert!(failures >= 1.0, "{failures} handshake failures counted");
}

#[tokio::test]
async fn http_receiver_serves_tls_over_http1_and_http2() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let pki = Pki::new(dir.path(), "main");
    let server = pki.server("sluice");
    let config = SluiceConfig::new(dir.path(), backend.port())
        .with_http(&[&format!("tls: {}", server.yaml(""))]);
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;

    let h2 = https_client(&pki.ca_pem(), None).build().unwrap();
    let h1 = https_client(&pki.ca_pem(), None)
        .http1_only()
        .build()
        .unwrap();
    for (client, version, tenant) in [
        (&h2, reqwest::Version::HTTP_2, "team-h2"),
        (&h1, reqwest::Version::HTTP_11, "team-h1"),
    ] {
        let response = http_export(&sluice, client, tenant, 4)
            .await
            .unwrap_or_else(|e| panic!("{tenant}: {e:?}"));
        assert_eq!(response.status(), 200, "{tenant}");
        assert_eq!(response.version(), version, "{tenant}: negotiated by ALPN");
        backend.wait_spans(tenant, 4, WAIT).await;
    }
    // The gRPC port of the same receiver stays plaintext.
    let channel = common::otlp::channel(&sluice.otlp_endpoint()).await;
    let request = trace_request("tls-test", None, named_spans("plain", 0, 2));
    export_traces(&channel, Some("team-plain"), request)
        .await
        .expect("plaintext gRPC");
    backend.wait_spans("team-plain", 2, WAIT).await;
}

#[tokio::test]
async fn mutual_tls_refuses_clients_without_a_trusted_certificate_at_the_handshake() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let pki = Pki::new(dir.path(), "main");
    let server = pki.server("sluice");
    let app = pki.client("app");
    let rogue = Pki::new(dir.path(), "rogue").client("app");
    let tls = server.yaml(&format!(
        "client_ca_file: {:?}",
        pki.ca_file.display().to_string()
    ));
    let config = SluiceConfig::new(dir.path(), backend.port()).with_http(&[&format!("tls: {tls}")]);
    let sluice = SluiceProcess::start(&with_grpc_tls(&config, &tls), dir.path()).await;
    let ca = pki.ca_pem();

    // gRPC
    grpc_export(&sluice, &ca, Some(&app), "team-m", 2)
        .await
        .expect("a client with a certificate from the CA");
    backend.wait_spans("team-m", 2, WAIT).await;
    for (who, identity) in [("no certificate", None), ("another CA", Some(&rogue))] {
        let refused = grpc_export(&sluice, &ca, identity, "team-x", 1).await;
        assert!(refused.is_err(), "gRPC client with {who} was served");
    }
    let grpc_failures = sluice.metric(FAILURES, &[("transport", "grpc")]).await;
    assert!(
        grpc_failures >= 2.0,
        "{grpc_failures} gRPC handshake failures"
    );

    // HTTP: the refusal is a TLS error, never an HTTP status.
    let client = https_client(&ca, Some(&app)).build().unwrap();
    let response = http_export(&sluice, &client, "team-m", 3).await.unwrap();
    assert_eq!(response.status(), 200);
    backend.wait_spans("team-m", 5, WAIT).await;
    for (who, identity) in [("no certificate", None), ("another CA", Some(&rogue))] {
        let client = https_client(&ca, identity).build().unwrap();
        match http_export(&sluice, &client, "team-x", 1).await {
            Ok(response) => panic!("HTTP client with {who} got {}", response.status()),
            Err(e) => assert!(e.status().is_none(), "{who}: {e:?}"),
        }
    }
    let http_failures = sluice.metric(FAILURES, &[("transport", "http")]).await;
    assert!(
        http_failures >= 2.0,
        "{http_failures} HTTP handshake failures"
    );
    assert_eq!(backend.span_count("team-x"), 0);
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let pki = Pki::new(dir.path(), "main");
    let server = pki.server("sluice");
    let tls = server.yaml("reload_interval: 1s");
    let config = SluiceConfig::new(dir.path(), backend.port()).with_http(&[&format!("tls: {tls}")]);
    let sluice = SluiceProcess::start(&with_grpc_tls(&config, &tls), dir.path()).await;
    let ca = pki.ca_pem();
    let http_addr = sluice.http_addr.unwrap();
    for addr in [sluice.grpc_addr, http_addr] {
        assert_eq!(
            presented_cert(addr, &ca).await.unwrap(),
            cert_der(&server.cert_pem)
        );
    }

    // Rotate as a certificate manager would: same paths, new contents; the certificate
    // first, so for a moment the pair does not match and the old one must stay in use.
    let renewed = pki.server("sluice-renewed");
    std::fs::write(&server.cert_file, &renewed.cert_pem).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        presented_cert(sluice.grpc_addr, &ca).await.unwrap(),
        cert_der(&server.cert_pem),
        "a half-written pair must not replace the certificate"
    );
    std::fs::write(&server.key_file, &renewed.key_pem).unwrap();
    let want = cert_der(&renewed.cert_pem);
    for addr in [sluice.grpc_addr, http_addr] {
        wait_for("the renewed certificate", WAIT, || async {
            match presented_cert(addr, &ca).await {
                Ok(cert) if cert == want => Ok(()),
                Ok(_) => Err("still the old certificate".to_string()),
                Err(e) => Err(e),
            }
        })
        .await;
    }
    grpc_export(&sluice, &ca, None, "team-r", 2)
        .await
        .expect("export after the renewal");
    backend.wait_spans("team-r", 2, WAIT).await;
    assert!(
        sluice
            .stderr()
            .contains("cannot reload the TLS certificate"),
        "the half-written pair should have been logged"
    );
}

#[tokio::test]
async fn an_unusable_certificate_fails_startup_naming_the_file() {
    let dir = temp_dir();
    let pki = Pki::new(dir.path(), "main");
    let server = pki.server("sluice");
    let missing_key = dir.path().join("missing.key");
    let tls = format!(
        "{{ cert_file: {:?}, key_file: {:?} }}",
        server.cert_file.display().to_string(),
        missing_key.display().to_string()
    );
    let config = SluiceConfig::new(dir.path(), common::free_port());
    let config_path = dir.path().join("bad-tls.yaml");
    std::fs::write(&config_path, with_grpc_tls(&config, &tls)).unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "--config"])
        .arg(&config_path)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sluice");
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("sluice kept running with an unreadable key file");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains("protocols.grpc.tls.key_file")
            && stderr.contains(&missing_key.display().to_string()),
        "{stderr}"
    );
}

#[tokio::test]
async fn exporters_reach_tls_backends_with_client_certificates_or_skip_verify() {
    let dir = temp_dir();
    let pki = Pki::new(dir.path(), "backends");
    let untrusted = Pki::new(dir.path(), "untrusted");
    let client = pki.client("sluice");

    // Behind mTLS proxies: the backends require a certificate from `pki`.
    let grpc_mtls = Backend::start().await;
    let grpc_mtls_proxy = TlsProxy::start(
        server_config(&pki.server("grpc-backend"), Some(&pki)),
        grpc_mtls.addr,
    )
    .await;
    let http_mtls = HttpSink::start().await;
    let http_mtls_proxy = TlsProxy::start(
        server_config(&pki.server("http-backend"), Some(&pki)),
        http_mtls.addr,
    )
    .await;
    // Behind certificates that nothing trusts.
    let grpc_any = Backend::start().await;
    let grpc_any_proxy = TlsProxy::start(
        server_config(&untrusted.server("grpc-any"), None),
        grpc_any.addr,
    )
    .await;
    let http_any = HttpSink::start().await;
    let http_any_proxy = TlsProxy::start(
        server_config(&untrusted.server("http-any"), None),
        http_any.addr,
    )
    .await;

    let file = |p: &std::path::Path| format!("{:?}", p.display().to_string());
    let mtls = format!(
        "{{ ca_file: {}, cert_file: {}, key_file: {} }}",
        file(&pki.ca_file),
        file(&client.cert_file),
        file(&client.key_file)
    );
    let common = "headers: { x-scope-orgid: \"{tenant}\" }, \
                  retry_on_failure: { initial_interval: 50ms, max_interval: 500ms }";
    let mut config = SluiceConfig::new(dir.path(), grpc_mtls.port());
    config.extra_exporters = vec![
        format!(
            "otlp/mtls: {{ endpoint: 'https://127.0.0.1:{}', tls: {mtls}, {common} }}",
            grpc_mtls_proxy.addr.port()
        ),
        format!(
            "otlp/any: {{ endpoint: '127.0.0.1:{}', tls: {{ insecure_skip_verify: true }}, {common} }}",
            grpc_any_proxy.addr.port()
        ),
        format!(
            "otlp_http/mtls: {{ endpoint: 'https://127.0.0.1:{}', tls: {mtls}, {common} }}",
            http_mtls_proxy.addr.port()
        ),
        format!(
            "otlp_http/any: {{ endpoint: 'https://127.0.0.1:{}', tls: {{ insecure_skip_verify: true }}, {common} }}",
            http_any_proxy.addr.port()
        ),
    ];
    config.pipeline_exporters = "[otlp/mtls, otlp/any, otlp_http/mtls, otlp_http/any]".into();
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;

    let channel = common::otlp::channel(&sluice.otlp_endpoint()).await;
    let request = trace_request("tls-test", None, named_spans("out", 0, 5));
    export_traces(&channel, Some("team-out"), request)
        .await
        .expect("plaintext gRPC in");

    grpc_mtls.wait_spans("team-out", 5, WAIT).await;
    grpc_any.wait_spans("team-out", 5, WAIT).await;
    for sink in [&http_mtls, &http_any] {
        wait_for("the OTLP/HTTP export", WAIT, || async {
            let seen = sink.seen();
            if seen
                .iter()
                .any(|(path, tenant)| path == "/v1/traces" && tenant == "team-out")
            {
                Ok(())
            } else {
                Err(format!("{seen:?}"))
            }
        })
        .await;
    }
    use std::sync::atomic::Ordering::SeqCst;
    assert!(grpc_mtls_proxy.with_client_cert.load(SeqCst) >= 1);
    assert!(http_mtls_proxy.with_client_cert.load(SeqCst) >= 1);
    assert_eq!(grpc_any_proxy.with_client_cert.load(SeqCst), 0);

    // Each skip-verify exporter warns once, by name; the others do not warn.
    let stderr = sluice.stderr();
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("insecure_skip_verify is on"))
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    assert!(
        warnings.iter().any(|l| l.contains("otlp/any")),
        "{warnings:#?}"
    );
    assert!(
        warnings.iter().any(|l| l.contains("otlp_http/any")),
        "{warnings:#?}"
    );
}

/// Kills the child when the test ends, however it ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_and_health_are_served_over_tls_and_metrics_can_require_client_certificates() {
    let dir = temp_dir();
    let pki = Pki::new(dir.path(), "main");
    let server = pki.server("sluice");
    let scraper = pki.client("prometheus");
    let config = SluiceConfig::new(dir.path(), common::free_port());
    let metrics_tls = server.yaml(&format!(
        "client_ca_file: {:?}",
        pki.ca_file.display().to_string()
    ));
    let yaml = config
        .yaml()
        .replacen(
            "max_tenant_labels: 100000 }",
            &format!("max_tenant_labels: 100000, tls: {metrics_tls} }}"),
            1,
        )
        .replacen(
            &format!("address: 127.0.0.1:{} }}", config.health_port),
            &format!(
                "address: 127.0.0.1:{}, tls: {} }}",
                config.health_port,
                server.yaml("")
            ),
            1,
        );
    assert_eq!(yaml.matches("tls: {").count(), 2, "{yaml}");
    let config_path = dir.path().join("telemetry-tls.yaml");
    std::fs::write(&config_path, yaml).unwrap();
    let _sluice = Killed(
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["run", "--config"])
            .arg(&config_path)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sluice"),
    );
    let ca = pki.ca_pem();
    let health = format!("https://127.0.0.1:{}/readyz", config.health_port);
    let metrics = format!("https://127.0.0.1:{}/metrics", config.metrics_port);

    // Health: TLS without client certificates.
    let client = https_client(&ca, None).build().unwrap();
    wait_for("/readyz over TLS", WAIT, || async {
        match client.get(&health).send().await {
            Ok(r) if r.status() == 200 => Ok(()),
            Ok(r) => Err(format!("status {}", r.status())),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    let plain = reqwest::Client::builder().no_proxy().build().unwrap();
    let plain_health = health.replace("https://", "http://");
    assert!(
        plain.get(&plain_health).send().await.is_err(),
        "plain HTTP to the TLS health listener must fail"
    );

    // Metrics: only a scraper with a certificate from the CA gets them.
    let with_cert = https_client(&ca, Some(&scraper)).build().unwrap();
    let text = with_cert
        .get(&metrics)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("sluice_"), "{text}");
    match https_client(&ca, None)
        .build()
        .unwrap()
        .get(&metrics)
        .send()
        .await
    {
        Ok(r) => panic!("a scraper without a certificate got {}", r.status()),
        Err(e) => assert!(e.status().is_none(), "{e:?}"),
    }
    let failures = wait_for("the refused scrape counted", WAIT, || async {
        let text = with_cert
            .get(&metrics)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with(FAILURES) && l.contains("transport=\"metrics\""))
            .map(str::to_string);
        line.ok_or_else(|| "not yet".to_string())
    })
    .await;
    assert!(!failures.ends_with(" 0"), "{failures}");
}
