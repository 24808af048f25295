//! Crash safety: everything sluice acknowledged survives a SIGKILL.
//!
//! Sluice runs with its exporter pointed at a port where nothing listens, so acknowledged
//! spans can only be in the disk buffer. Clients keep sending while sluice is killed with
//! SIGKILL; then the backend comes up on that port and sluice restarts on the same data
//! directory: every acknowledged span must arrive (duplicates are allowed: at-least-once).

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::otlp::{channel, export_traces, named_spans, trace_request};
use common::{free_port, temp_dir, wait_for, Backend, SluiceConfig, SluiceProcess};

const TENANTS: [&str; 2] = ["alpha", "beta"];
const SPANS_PER_REQUEST: usize = 7;
/// Requests each client has had acknowledged before the kill.
const ACKED_BEFORE_KILL: usize = 25;
const MAX_REQUESTS: usize = 10_000;

#[derive(Default)]
struct Sent {
    /// Span names of requests that sluice answered OK.
    acked: BTreeSet<String>,
    /// Span names of every request attempted (acked or not).
    attempted: BTreeSet<String>,
    acked_requests: usize,
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_spans_survive_sigkill() {
    acknowledged_spans_survive_sigkill_with("always", "gzip").await;
}

/// Under `fsync: interval` an append that finds its log's writer idle is written by the
/// request itself, not the writer task: what it acknowledged must be in the file all the
/// same (a killed process loses nothing the OS has; an OS crash is what `interval` risks).
/// Exported uncompressed, so the batches go out from their own buffers under a gRPC header
/// Sluice writes (`exporter/otlp/message_body.rs`) rather than through tonic's encoder.
#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_spans_survive_sigkill_with_fsync_interval() {
    acknowledged_spans_survive_sigkill_with("interval", "none").await;
}

async fn acknowledged_spans_survive_sigkill_with(fsync: &str, compression: &str) {
    let dir = temp_dir();
    let backend_port = free_port();
    let config = SluiceConfig {
        fsync: fsync.to_string(),
        otlp_extra: vec![format!("compression: {compression}")],
        ..SluiceConfig::new(dir.path(), backend_port)
    };
    let mut sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;

    // One client per tenant, sending until sluice stops answering.
    let mut clients = Vec::new();
    let mut records = Vec::new();
    for (t, tenant) in TENANTS.into_iter().enumerate() {
        let sent = Arc::new(Mutex::new(Sent::default()));
        records.push((tenant, sent.clone()));
        let channel = channel(&sluice.otlp_endpoint()).await;
        clients.push(tokio::spawn(async move {
            for r in 0..MAX_REQUESTS {
                let first_seq = ((t * MAX_REQUESTS + r) * SPANS_PER_REQUEST) as u64;
                let spans = named_spans(&format!("{tenant}-r{r}"), first_seq, SPANS_PER_REQUEST);
                let names: Vec<String> = spans.iter().map(|s| s.name.clone()).collect();
                sent.lock().unwrap().attempted.extend(names.iter().cloned());
                let request = trace_request("crash-svc", None, spans);
                match export_traces(&channel, Some(tenant), request).await {
                    Ok(()) => {
                        let mut sent = sent.lock().unwrap();
                        sent.acked.extend(names);
                        sent.acked_requests += 1;
                    }
                    Err(_) => return, // sluice is gone
                }
            }
        }));
    }

    wait_for(
        "clients to get requests acknowledged",
        Duration::from_secs(30),
        || {
            let counts: Vec<usize> = records
                .iter()
                .map(|(_, s)| s.lock().unwrap().acked_requests)
                .collect();
            async move {
                if counts.iter().all(|&c| c >= ACKED_BEFORE_KILL) {
                    Ok(())
                } else {
                    Err(format!("acknowledged so far: {counts:?}"))
                }
            }
        },
    )
    .await;
    sluice.kill();
    for client in clients {
        tokio::time::timeout(Duration::from_secs(30), client)
            .await
            .expect("clients stop once sluice is killed")
            .expect("client task");
    }

    let backend = Backend::start_on(backend_port).await;
    let config = config.with_fresh_ports();
    let _sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;

    for (tenant, sent) in &records {
        let (acked, attempted, acked_requests) = {
            let sent = sent.lock().unwrap();
            (
                sent.acked.clone(),
                sent.attempted.clone(),
                sent.acked_requests,
            )
        };
        assert!(acked_requests >= ACKED_BEFORE_KILL);
        eprintln!(
            "{tenant}: {acked_requests} requests ({} spans) acknowledged before the SIGKILL, {} spans attempted",
            acked.len(),
            attempted.len()
        );
        backend
            .wait_span_names(tenant, &acked, Duration::from_secs(45))
            .await;
        // Nothing arrives that was never sent (an unacknowledged request may or may not).
        let got: BTreeSet<String> = backend.spans(tenant).into_iter().map(|s| s.name).collect();
        let strays: Vec<&String> = got.difference(&attempted).collect();
        assert!(
            strays.is_empty(),
            "{tenant}: spans never sent arrived: {strays:?}"
        );
    }
}
