//! Operating a running Sluice per tenant through the admin API and the `sluice` commands
//! (docs/contracts.md, "Operations"): pause holds one tenant's export while another flows,
//! survives a restart, and resume delivers everything; `sluice tap` shows a tenant's spans
//! live and refuses another tenant's token; every admin call without a valid token is
//! refused, and the effective config it shows has its credentials masked; a batch
//! dead-lettered by a permanent error is shown by `sluice dlq`, redriven to the fixed backend,
//! and leaves the dead letters; `sluice replay` sends exactly one tenant's window again.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use tonic::Code;

use common::http_client::request;
use common::otlp::{channel, export_traces_with, named_spans, trace_request};
use common::{send_named_spans, temp_dir, wait_for, Backend, SluiceConfig, SluiceProcess};

const WAIT: Duration = Duration::from_secs(30);
const ADMIN_TOKEN: &str = "admin-token-for-the-ops-tests";
const TOKEN_T: &str = "ingest-token-of-team-t-000001";
const TOKEN_U: &str = "ingest-token-of-team-u-000002";

fn admin_url(config: &SluiceConfig) -> String {
    format!("http://127.0.0.1:{}", config.admin_port)
}

/// Runs `sluice <args> --admin-url …` with `token` (if any) in SLUICE_ADMIN_TOKEN.
fn cli(config: &SluiceConfig, token: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .args(args)
        .args(["--admin-url", &admin_url(config)])
        .env_remove("SLUICE_ADMIN_TOKEN");
    if let Some(token) = token {
        command.env("SLUICE_ADMIN_TOKEN", token);
    }
    command.output().expect("run sluice")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).to_string()
}

fn names(backend: &Backend, tenant: &str) -> BTreeSet<String> {
    backend.spans(tenant).into_iter().map(|s| s.name).collect()
}

/// The `sluice tenants --output json` row of `tenant` (traces).
fn row(config: &SluiceConfig, tenant: &str) -> serde_json::Value {
    let out = stdout(&cli(
        config,
        None,
        &["tenants", "--output", "json", "--tenant", tenant],
    ));
    let report: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    report["tenants"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["signal"] == "traces").cloned())
        .unwrap_or_else(|| panic!("no traces row for {tenant}: {report}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn pause_holds_one_tenant_while_another_flows_survives_a_restart_and_resume_delivers() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let config = SluiceConfig::new(dir.path(), backend.port());
    let mut sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let first_held = send_named_spans(&sluice, "held", 2, 3).await;
    let first_free = send_named_spans(&sluice, "free", 2, 3).await;
    backend.wait_span_names("held", &first_held, WAIT).await;
    backend.wait_span_names("free", &first_free, WAIT).await;

    let out = stdout(&cli(&config, None, &["pause", "--tenant", "held"]));
    assert!(out.contains("held (every signal): paused"), "{out}");
    let exported_at_pause = row(&config, "held")["exported_items"].clone();

    // Sent after the pause: the paused tenant's spans first, the other's after them.
    let client = channel(&sluice.otlp_endpoint()).await;
    let request = |prefix: &str| trace_request("ops", None, named_spans(prefix, 0, 4));
    export_traces_with(&client, &[("x-scope-orgid", "held")], request("held-late"))
        .await
        .unwrap();
    export_traces_with(&client, &[("x-scope-orgid", "free")], request("free-late"))
        .await
        .unwrap();
    backend.wait_spans("free", first_free.len() + 4, WAIT).await;
    let table = stdout(&cli(&config, None, &["tenants", "--tenant", "held"]));
    assert!(
        table.lines().nth(1).is_some_and(|l| l.ends_with("yes")),
        "the table shows the pause:\n{table}"
    );
    let held = row(&config, "held");
    assert_eq!(held["paused"], true);
    assert_eq!(held["exported_items"], exported_at_pause, "{held}");
    assert_eq!(
        held["stored_items"], 10,
        "accepted and buffered meanwhile: {held}"
    );
    assert!(!names(&backend, "held")
        .iter()
        .any(|n| n.starts_with("held-late")));

    // A restart keeps the pause (the state file).
    sluice.terminate().await;
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let more_free = send_named_spans(&sluice, "free2", 1, 2).await;
    backend.wait_span_names("free2", &more_free, WAIT).await;
    assert_eq!(row(&config, "held")["paused"], true);
    assert!(!names(&backend, "held")
        .iter()
        .any(|n| n.starts_with("held-late")));

    let out = stdout(&cli(&config, None, &["resume", "--tenant", "held"]));
    assert!(out.contains("held (every signal): resumed"), "{out}");
    wait_for("the paused tenant's spans delivered", WAIT, || async {
        let late = names(&backend, "held")
            .iter()
            .filter(|n| n.starts_with("held-late"))
            .count();
        if late == 4 {
            Ok(())
        } else {
            Err(format!("{late} of 4"))
        }
    })
    .await;
    assert_eq!(row(&config, "held")["paused"], false);
}

fn ops_config(dir: &std::path::Path, backend_port: u16) -> SluiceConfig {
    std::env::set_var("SLUICE_OPS_ADMIN_TOKEN", ADMIN_TOKEN);
    let mut config = SluiceConfig::new(dir, backend_port);
    config.admin_extra =
        vec!["tokens: [{ name: ops-oncall, token_env: SLUICE_OPS_ADMIN_TOKEN }]".into()];
    config.tenancy_extra = vec![
        "auth:".into(),
        "    bearer_tokens:".into(),
        format!("      - {{ tenant: team-t, token: {TOKEN_T} }}"),
        format!("      - {{ tenant: team-u, token: {TOKEN_U} }}"),
    ];
    config
}

#[tokio::test(flavor = "multi_thread")]
async fn tap_shows_a_tenants_spans_live_and_refuses_another_tenants_token() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let config = ops_config(dir.path(), backend.port());
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;

    // Another tenant's token cannot tap team-t.
    let refused = cli(
        &config,
        Some(TOKEN_U),
        &[
            "tap", "--tenant", "team-t", "--signal", "traces", "--limit", "1",
        ],
    );
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("403") && message.contains("team-u"),
        "{message}"
    );

    // team-t taps itself with its own ingest token.
    let out = dir.path().join("tap.out");
    let mut tap = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "tap", "--tenant", "team-t", "--signal", "traces", "--limit", "1",
        ])
        .args(["--admin-url", &admin_url(&config)])
        .env("SLUICE_ADMIN_TOKEN", TOKEN_T)
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start sluice tap");
    let client = channel(&sluice.otlp_endpoint()).await;
    let bearer = format!("Bearer {TOKEN_T}");
    // The tap may still be connecting: keep sending until a line arrives.
    let line = wait_for("a tapped line", WAIT, || {
        let (client, bearer, out) = (client.clone(), bearer.clone(), out.clone());
        async move {
            let spans = trace_request("ops", None, named_spans("tapped-span", 0, 2));
            export_traces_with(&client, &[("authorization", &bearer)], spans)
                .await
                .map_err(|e| e.to_string())?;
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            text.lines()
                .next()
                .map(str::to_string)
                .ok_or_else(|| "nothing yet".to_string())
        }
    })
    .await;
    let status = tap.wait().expect("sluice tap ends after --limit 1");
    assert!(status.success());
    let json: serde_json::Value = serde_json::from_str(&line).expect("an OTLP/JSON line");
    let span = &json["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
    assert_eq!(span["name"], "tapped-span-0", "{line}");
    assert_eq!(
        span["traceId"].as_str().map(str::len),
        Some(32),
        "hex ids: {line}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_admin_call_needs_a_valid_token_and_the_config_shows_no_credentials() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let config = ops_config(dir.path(), backend.port());
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let admin = SocketAddr::from(([127, 0, 0, 1], config.admin_port));
    let calls = [
        ("GET", "/api/v1/version"),
        ("GET", "/api/v1/config"),
        ("GET", "/api/v1/pipelines"),
        ("GET", "/api/v1/tenants"),
        ("POST", "/api/v1/tenants/team-t/pause"),
        ("POST", "/api/v1/tenants/team-t/resume"),
        ("GET", "/api/v1/tap?tenant=team-t&signal=traces&limit=1"),
    ];
    let wrong = "Bearer not-the-admin-token-at-all";
    for (method, path) in calls {
        for headers in [vec![], vec![("authorization", wrong)]] {
            let reply = request(admin, method, path, &headers, Vec::new()).await;
            assert_eq!(reply.status, 401, "{method} {path} {headers:?}: {reply:?}");
        }
    }
    // A tenant's token is not an admin token.
    let tenant = format!("Bearer {TOKEN_T}");
    let reply = request(
        admin,
        "POST",
        "/api/v1/tenants/team-t/pause",
        &[("authorization", &tenant)],
        Vec::new(),
    )
    .await;
    assert_eq!(reply.status, 403, "{reply:?}");

    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let auth = [("authorization", bearer.as_str())];
    for (method, path) in &calls[..6] {
        let reply = request(admin, method, path, &auth, Vec::new()).await;
        assert_eq!(reply.status, 200, "{method} {path}: {reply:?}");
    }
    let reply = request(admin, "GET", "/api/v1/config", &auth, Vec::new()).await;
    let text = String::from_utf8_lossy(&reply.body).into_owned();
    for secret in [TOKEN_T, TOKEN_U, ADMIN_TOKEN] {
        assert!(
            !text.contains(secret),
            "the effective config shows {secret}: {text}"
        );
    }
    assert!(text.contains("SLUICE_OPS_ADMIN_TOKEN"), "{text}");
    let pipelines = request(admin, "GET", "/api/v1/pipelines", &auth, Vec::new()).await;
    assert_eq!(pipelines.json()[0]["signal"], "logs", "{pipelines:?}");

    // The CLI: a table for the admin, a clear refusal without the token.
    let table = stdout(&cli(&config, Some(ADMIN_TOKEN), &["tenants"]));
    assert!(table.starts_with("TENANT"), "{table}");
    let refused = cli(&config, None, &["tenants"]);
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("401") && message.contains("missing credentials"),
        "{message}"
    );
    let metrics = sluice.metrics().await;
    assert!(
        common::metric_sum(
            &metrics,
            "sluice_admin_requests_total",
            &[("result", "unauthenticated")]
        ) >= 14.0,
        "refusals are counted"
    );
    assert!(
        sluice.stderr().contains("ops-oncall"),
        "writes are logged with the token's name"
    );
}

/// A config on the disk buffer, or on Pulsar with topics and a subscription named after
/// `tenant` (unique on the shared broker).
fn buffer_config(
    dir: &std::path::Path,
    backend_port: u16,
    buffer: &str,
    tenant: &str,
) -> SluiceConfig {
    let config = SluiceConfig::new(dir, backend_port);
    if buffer != "pulsar" {
        return config;
    }
    let topic = format!("topic: 'persistent://public/default/{tenant}-{{signal}}-{{tenant}}'");
    let consumer = format!("consumer: {{ subscription: {tenant} }}");
    config.with_pulsar(
        &common::pulsar::service_url(),
        &[topic.as_str(), consumer.as_str()],
    )
}

/// A batch a backend refuses permanently is dead-lettered, shown by `sluice dlq`, redriven
/// once the backend takes it, and leaves the dead letters; on `buffer` (`disk` or `pulsar`).
async fn dlq_round_trip(buffer: &str) {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let tenant = common::pulsar::tenant(&format!("dlq{buffer}"));
    let tenant = tenant.as_str();
    backend.fail_tenant(tenant, Code::InvalidArgument);
    let config = buffer_config(dir.path(), backend.port(), buffer, tenant);
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let sent = send_named_spans(&sluice, tenant, 2, 3).await;
    wait_for("the batches dead-lettered", WAIT, || async {
        let dead = sluice
            .metric("sluice_dead_lettered_items_total", &[("tenant", tenant)])
            .await;
        if dead >= 6.0 {
            Ok(())
        } else {
            Err(dead.to_string())
        }
    })
    .await;

    let list = |extra: &[&str]| {
        let mut args = vec!["dlq", "list", "--tenant", tenant, "--signal", "traces"];
        args.extend_from_slice(extra);
        stdout(&cli(&config, None, &args))
    };
    let json: serde_json::Value = serde_json::from_str(&list(&["--output", "json"])).unwrap();
    let row = &json["dead_letters"][0];
    assert_eq!(row["items"], 6, "{json}");
    let reasons = row["reasons"].as_object().expect("reasons");
    assert!(
        reasons
            .keys()
            .any(|r| r.starts_with("otlp: ") && r.contains("test backend refuses tenant")),
        "the reason names the exporter and the backend's answer: {json}"
    );
    assert!(list(&[]).contains("traces"), "the table");

    let shown = stdout(&cli(
        &config,
        None,
        &[
            "dlq", "show", "--tenant", tenant, "--signal", "traces", "--limit", "1",
        ],
    ));
    let first: serde_json::Value =
        serde_json::from_str(shown.lines().next().unwrap_or("")).expect("a JSON line");
    assert!(first["request"]["resourceSpans"].is_array(), "{first}");
    assert!(
        first["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{first}"
    );

    let refused = cli(&config, None, &["dlq", "purge", "--tenant", tenant]);
    assert!(!refused.status.success(), "purge needs --confirm");

    backend.heal_tenant(tenant);
    let redriven = stdout(&cli(
        &config,
        None,
        &["dlq", "redrive", "--tenant", tenant, "--output", "json"],
    ));
    let redriven: serde_json::Value = serde_json::from_str(&redriven).unwrap();
    assert_eq!(redriven["redriven"][0]["items"], 6, "{redriven}");
    backend.wait_span_names(tenant, &sent, WAIT).await;
    let json: serde_json::Value = serde_json::from_str(&list(&["--output", "json"])).unwrap();
    assert_eq!(
        json["dead_letters"][0]["items"], 0,
        "the dead letters are gone: {json}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_lettered_batch_is_redriven_to_the_fixed_backend_on_disk() {
    dlq_round_trip("disk").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_lettered_batch_is_redriven_to_the_fixed_backend_on_pulsar() {
    dlq_round_trip("pulsar").await;
}

/// Bytes of segment files under `dir`, dead letters included.
fn segment_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                segment_bytes(&path)
            } else if path.extension().is_some_and(|x| x == "seg") {
                e.metadata().map_or(0, |m| m.len())
            } else {
                0
            }
        })
        .sum()
}

/// A paused tenant's buffered spans and its dead letters are purged: nothing of them is left
/// (on disk, or in its topics on Pulsar) nor ever delivered; its later data flows as usual.
async fn purge_round_trip(buffer: &str) {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let tenant = common::pulsar::tenant(&format!("purge{buffer}"));
    let tenant = tenant.as_str();
    let config = buffer_config(dir.path(), backend.port(), buffer, tenant);
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    // A dead letter, then buffered spans held by a pause.
    backend.fail_tenant(tenant, Code::InvalidArgument);
    send_named_spans(&sluice, tenant, 1, 2).await;
    wait_for("a dead letter", WAIT, || async {
        let dead = sluice
            .metric("sluice_dead_lettered_items_total", &[("tenant", tenant)])
            .await;
        if dead >= 2.0 {
            Ok(())
        } else {
            Err(dead.to_string())
        }
    })
    .await;
    backend.heal_tenant(tenant);
    stdout(&cli(&config, None, &["pause", "--tenant", tenant]));
    let client = channel(&sluice.otlp_endpoint()).await;
    let held = trace_request("ops", None, named_spans("purged-span", 0, 5));
    export_traces_with(&client, &[("x-scope-orgid", tenant)], held)
        .await
        .unwrap();

    let refused = cli(&config, None, &["purge", "--tenant", tenant]);
    assert!(!refused.status.success(), "purge needs --confirm");
    let out = stdout(&cli(
        &config,
        None,
        &["purge", "--tenant", tenant, "--confirm", "--output", "json"],
    ));
    let answer: serde_json::Value = serde_json::from_str(&out).unwrap();
    let traces = answer["purged"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["signal"] == "traces").cloned())
        .unwrap_or_else(|| panic!("{answer}"));
    assert_eq!(traces["dead_letters"]["items"], 2, "{answer}");
    assert!(traces["bytes"].as_u64().is_some_and(|b| b > 0), "{answer}");

    if buffer == "disk" {
        let log = config.buffer_dir.join("traces").join(tenant);
        assert_eq!(segment_bytes(&log), 0, "nothing of {tenant} left on disk");
    } else {
        for (topic, subscription) in [
            (
                format!("persistent://public/default/{tenant}-traces-{tenant}"),
                tenant.to_string(),
            ),
            (
                format!("persistent://public/default/{tenant}-traces-{tenant}-DLQ"),
                "sluice-dead-letters".to_string(),
            ),
        ] {
            let stats = common::pulsar::topic_stats(&topic).await;
            let backlog = stats["subscriptions"][subscription.as_str()]["msgBacklog"].as_u64();
            assert_eq!(backlog, Some(0), "{topic}: {stats}");
        }
    }

    // Resumed: the purged spans never arrive, new ones do.
    stdout(&cli(&config, None, &["resume", "--tenant", tenant]));
    let after = trace_request("ops", None, named_spans("after-purge", 0, 3));
    export_traces_with(&client, &[("x-scope-orgid", tenant)], after)
        .await
        .unwrap();
    wait_for("the spans sent after the purge", WAIT, || async {
        let got = names(&backend, tenant);
        if got.iter().filter(|n| n.starts_with("after-purge")).count() == 3 {
            Ok(got)
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await;
    assert!(
        !names(&backend, tenant)
            .iter()
            .any(|n| n.starts_with("purged-span")),
        "purged spans were delivered"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_leaves_nothing_of_the_tenant_on_disk() {
    purge_round_trip("disk").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_leaves_nothing_of_the_tenant_in_its_pulsar_topics() {
    purge_round_trip("pulsar").await;
}

/// How many times each span name of `prefix` reached the backend for `tenant`.
fn deliveries(
    backend: &Backend,
    tenant: &str,
    prefix: &str,
) -> std::collections::BTreeMap<String, usize> {
    let mut seen = std::collections::BTreeMap::new();
    for span in backend.spans(tenant) {
        if span.name.starts_with(prefix) {
            *seen.entry(span.name).or_default() += 1;
        }
    }
    seen
}

/// Sends `n` spans named `{prefix}-{i}` for `tenant` and waits until Sluice exported them.
async fn send_and_export(
    sluice: &SluiceProcess,
    backend: &Backend,
    tenant: &str,
    prefix: &str,
    n: usize,
) {
    let client = channel(&sluice.otlp_endpoint()).await;
    let request = trace_request("ops", None, named_spans(prefix, 0, n));
    export_traces_with(&client, &[("x-scope-orgid", tenant)], request)
        .await
        .unwrap();
    wait_for(&format!("{prefix} exported"), WAIT, || async {
        let seen = deliveries(backend, tenant, prefix);
        if seen.len() == n {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        }
    })
    .await;
}

/// Replaying one tenant's last minutes sends exactly that tenant's items of the window again
/// (not the earlier ones, not another tenant's), and the live export goes on untouched;
/// on `buffer` with `retention` on, the tenant's Pulsar topic with `partitions` (1: plain).
/// Without retention, replay says why it cannot.
async fn replay_round_trip(buffer: &str, partitions: u32) {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let tenant = common::pulsar::tenant(&format!("replay{buffer}{partitions}"));
    let other = common::pulsar::tenant(&format!("replayother{buffer}{partitions}"));
    let (tenant, other) = (tenant.as_str(), other.as_str());
    let mut config = buffer_config(dir.path(), backend.port(), buffer, tenant);
    let retention = "retention: { max_age: 1h }".to_string();
    match config.broker.as_mut() {
        Some(broker) => {
            broker.extra.push(retention);
            broker
                .extra
                .push(format!("tenant_partitions: {{ {tenant}: {partitions} }}"));
        }
        None => config.disk_extra.push(retention),
    }
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;

    send_and_export(&sluice, &backend, tenant, "before", 3).await;
    // Receive times are in milliseconds: the window starts strictly after `before`.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let since = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    tokio::time::sleep(Duration::from_millis(5)).await;
    send_and_export(&sluice, &backend, tenant, "window", 4).await;
    send_and_export(&sluice, &backend, other, "other", 2).await;
    if buffer == "pulsar" {
        // The replay reads what the export subscription acknowledged, as the broker has it.
        let topic = format!("persistent://public/default/{tenant}-traces-{tenant}");
        wait_for("the acknowledgements at the broker", WAIT, || async {
            let stats = match partitions {
                1 => common::pulsar::topic_stats(&topic).await,
                _ => common::pulsar::partitioned_stats(&topic).await,
            };
            match stats["subscriptions"][tenant]["msgBacklog"].as_u64() {
                Some(0) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    } else {
        wait_for("the cursor past every exported span", WAIT, || async {
            let exported = row(&config, tenant)["exported_items"].as_u64();
            if exported == Some(7) {
                Ok(())
            } else {
                Err(format!("{exported:?}"))
            }
        })
        .await;
    }

    let out = stdout(&cli(
        &config,
        None,
        &[
            "replay", "--tenant", tenant, "--signal", "traces", "--since", &since, "--output",
            "json",
        ],
    ));
    let answer: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["replayed"][0]["items"], 4, "{answer}");
    wait_for("the window delivered twice", WAIT, || async {
        let seen = deliveries(&backend, tenant, "window");
        if seen.values().all(|n| *n == 2) && seen.len() == 4 {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        }
    })
    .await;
    assert!(
        deliveries(&backend, tenant, "before")
            .values()
            .all(|n| *n == 1),
        "spans before the window were replayed"
    );
    assert_eq!(
        row(&config, tenant)["replayed_items"],
        4,
        "the usage table counts the replay"
    );

    // The live export position did not move: new spans arrive once, and the stream, which
    // delivers in order, sent nothing of the window again before them.
    send_and_export(&sluice, &backend, tenant, "after", 2).await;
    assert!(deliveries(&backend, tenant, "after")
        .values()
        .all(|n| *n == 1));
    assert!(deliveries(&backend, tenant, "window")
        .values()
        .all(|n| *n == 2));
    assert!(
        deliveries(&backend, other, "other")
            .values()
            .all(|n| *n == 1),
        "another tenant's spans were replayed"
    );
    let refused = cli(
        &config,
        None,
        &[
            "replay",
            "--tenant",
            tenant,
            "--signal",
            "traces",
            "--since",
            "1h",
            "--exporter",
            "otlp/none",
        ],
    );
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && said.contains("no traces pipeline exports to otlp/none"),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_sends_one_tenants_window_again_on_disk() {
    replay_round_trip("disk", 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_sends_one_tenants_window_again_on_pulsar() {
    replay_round_trip("pulsar", 1).await;
}

/// The window and the spans before it are on different partitions: each partition is read
/// up to its own acknowledged position.
#[tokio::test(flavor = "multi_thread")]
async fn replay_sends_one_tenants_window_again_on_partitioned_pulsar() {
    replay_round_trip("pulsar", 3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_without_retention_says_what_to_turn_on() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let config = SluiceConfig::new(dir.path(), backend.port());
    let _sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let refused = cli(
        &config,
        None,
        &[
            "replay", "--tenant", "t", "--signal", "traces", "--since", "2h",
        ],
    );
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && said.contains("409") && said.contains("`retention` is off"),
        "{said}"
    );
}
