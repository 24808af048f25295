//! Reloading the config of a running Sluice (docs/contracts.md, "Operations"): a broken file
//! is refused and the running config keeps serving; a new exporter endpoint takes over under
//! load without losing anything acknowledged and without refusing a client; tokens change in
//! place; a receiver whose endpoint changed is restarted on the new one.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use common::chaos::Load;
use common::http_client::request;
use common::otlp::{channel, export_traces_with, named_spans, trace_request};
use common::{
    free_port, send_named_spans, temp_dir, wait_for, Backend, SluiceConfig, SluiceProcess,
};
use tonic::Code;

const WAIT: Duration = Duration::from_secs(60);

async fn wait_reloads(sluice: &SluiceProcess, result: &str, at_least: f64) {
    let what = format!("a reload counted as {result}");
    wait_for(&what, WAIT, || async {
        let n = sluice
            .metric("sluice_config_reloads_total", &[("result", result)])
            .await;
        if n >= at_least {
            Ok(())
        } else {
            Err(n.to_string())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_config_is_refused_with_the_reason_and_the_running_one_keeps_serving() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let config = SluiceConfig::new(dir.path(), backend.port());
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;

    sluice.reload(
        &config
            .yaml()
            .replace("exporters: [otlp]", "exporters: [otlp/missing]"),
    );
    wait_reloads(&sluice, "invalid", 1.0).await;
    let stderr = sluice.stderr();
    assert!(
        stderr.contains("keeping the running one") && stderr.contains("otlp/missing"),
        "the log says why: {stderr}"
    );
    let sent = send_named_spans(&sluice, "after-broken", 2, 3).await;
    backend.wait_span_names("after-broken", &sent, WAIT).await;

    // The admin API's reload answers with the reason too.
    let admin = SocketAddr::from(([127, 0, 0, 1], config.admin_port));
    let reply = request(admin, "POST", "/api/v1/reload", &[], Vec::new()).await;
    assert_eq!(reply.status, 422, "{reply:?}");
    assert!(String::from_utf8_lossy(&reply.body).contains("otlp/missing"));

    // Buffers cannot change in place: refused, and nothing changed.
    std::fs::write(
        &sluice.config_path,
        config.yaml().replace("fsync: always", "fsync: interval"),
    )
    .unwrap();
    let reply = request(admin, "POST", "/api/v1/reload", &[], Vec::new()).await;
    assert_eq!(reply.status, 422, "{reply:?}");
    assert!(
        String::from_utf8_lossy(&reply.body).contains("buffers changed"),
        "{reply:?}"
    );
    wait_reloads(&sluice, "needs_restart", 1.0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_exporter_endpoint_takes_over_under_load_without_loss() {
    let dir = temp_dir();
    let (old, new) = (Backend::start().await, Backend::start().await);
    let mut config = SluiceConfig::new(dir.path(), old.port());
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let tenants = vec!["reload-a".to_string(), "reload-b".to_string()];
    let load = Load::start(&sluice.otlp_endpoint(), &tenants, 5, 0).await;
    load.wait_acked(0, 100, WAIT).await;

    config.backend_port = new.port();
    sluice.reload(&config.yaml());
    wait_reloads(&sluice, "ok", 1.0).await;
    let at_reload = load.acked();
    load.wait_acked(at_reload, 200, WAIT).await;
    for tenant in &tenants {
        new.wait_spans(tenant, 1, WAIT).await;
    }
    let refusals = load.refusals();
    let acked = load.stop().await;
    assert!(refusals.is_empty(), "no client was refused: {refusals:?}");
    for (tenant, names) in &acked {
        wait_for(
            &format!("every acknowledged span of {tenant} at one backend"),
            WAIT,
            || {
                let got: BTreeSet<String> = old
                    .spans(tenant)
                    .into_iter()
                    .chain(new.spans(tenant))
                    .map(|s| s.name)
                    .collect();
                let missing = names.difference(&got).count();
                async move {
                    if missing == 0 {
                        Ok(())
                    } else {
                        Err(format!("{missing} missing"))
                    }
                }
            },
        )
        .await;
    }
    let (before, after) = (old.span_count("reload-a"), new.span_count("reload-a"));
    eprintln!("reload-a: {before} spans to the old endpoint, {after} to the new one");
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_change_in_place_and_a_moved_receiver_listens_on_its_new_endpoint() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let (old_token, new_token) = ("reload-token-old-0000001", "reload-token-new-0000002");
    let mut config = SluiceConfig::new(dir.path(), backend.port());
    let auth = |token: &str| {
        vec![
            "auth:".to_string(),
            "    bearer_tokens:".to_string(),
            format!("      - {{ tenant: team-r, token: {token} }}"),
        ]
    };
    config.tenancy_extra = auth(old_token);
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let spans = || trace_request("reload", None, named_spans("tok", 0, 1));
    let send = |endpoint: String, token: &'static str| async move {
        let client = channel(&endpoint).await;
        let bearer = format!("Bearer {token}");
        export_traces_with(&client, &[("authorization", &bearer)], spans()).await
    };
    send(sluice.otlp_endpoint(), old_token).await.unwrap();

    // New token, and the gRPC receiver moves to another port.
    config.tenancy_extra = auth(new_token);
    let old_endpoint = sluice.otlp_endpoint();
    config.grpc_port = free_port();
    let new_endpoint = format!("http://127.0.0.1:{}", config.grpc_port);
    sluice.reload(&config.yaml());
    wait_reloads(&sluice, "ok", 1.0).await;
    send(new_endpoint.clone(), new_token)
        .await
        .expect("the new token on the new endpoint");
    let refused = send(new_endpoint, old_token).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let old_port = tokio::net::TcpStream::connect(old_endpoint.trim_start_matches("http://")).await;
    assert!(old_port.is_err(), "the old endpoint is closed");
    backend.wait_spans("team-r", 2, WAIT).await;
    assert!(
        sluice.stderr().contains("receivers_restarted") || sluice.stderr().contains("restarted")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_overrides_file_change_applies_its_tokens_and_limits_without_a_signal() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let overrides = dir.path().join("overrides.yaml");
    let write = |token: &str, rate: u32| {
        std::fs::write(
            &overrides,
            format!(
                "limits:\n  team-o: {{ items_per_second: {rate} }}\nbearer_tokens:\n  - {{ tenant: team-o, token: {token} }}\n"
            ),
        )
        .unwrap();
    };
    let (first, second) = ("overrides-token-first-001", "overrides-token-second-02");
    write(first, 1000);
    let mut config = SluiceConfig::new(dir.path(), backend.port());
    config.tenancy_extra = vec![format!("overrides_file: {:?}", overrides)];
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let send = |token: &'static str| {
        let endpoint = sluice.otlp_endpoint();
        async move {
            let client = channel(&endpoint).await;
            let bearer = format!("Bearer {token}");
            let spans = trace_request("reload", None, named_spans("ovr", 0, 1));
            export_traces_with(&client, &[("authorization", &bearer)], spans).await
        }
    };
    send(first).await.expect("the file's token");
    let limit = [("tenant", "team-o"), ("limit", "items_per_second")];
    assert_eq!(sluice.metric("sluice_tenant_limit", &limit).await, 1000.0);

    write(second, 7);
    wait_reloads(&sluice, "ok", 1.0).await;
    send(second).await.expect("the new token");
    let refused = send(first).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert_eq!(sluice.metric("sluice_tenant_limit", &limit).await, 7.0);

    // A broken file is refused; the running tokens stay.
    std::fs::write(&overrides, "limits:\n  team-o: { items_per_secnd: 1 }\n").unwrap();
    wait_reloads(&sluice, "invalid", 1.0).await;
    send(second).await.expect("still the running token");
    assert!(
        sluice.stderr().contains("items_per_secnd"),
        "the log says why"
    );
}
