//! Crash safety: everything sluice acknowledged survives a SIGKILL.
//!
//! Sluice runs with its exporter pointed at a port where nothing listens, so acknowledged
//! spans can only be in the disk buffer. Clients keep sending while sluice is killed with
//! SIGKILL; then the backend comes up on that port and sluice restarts on the same data
//! directory: every acknowledged span must arrive (duplicates are allowed: at-least-once).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
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

/// A log writes its next segment over its newest retired one (`segment/spare.rs`), whose old
/// records stay behind the new ones until written over. Killed while its active segment is
/// such a file, with requests all of one size so that an old record starts exactly where the
/// new ones end, Sluice must come back with only the new records: nothing it delivered and
/// had acknowledged before arrives again, and the cut is not reported as damage.
#[tokio::test(flavor = "multi_thread")]
async fn a_reused_segment_file_gives_back_nothing_old_after_sigkill() {
    const SPANS: usize = 300;
    let dir = temp_dir();
    let backend = Backend::start_on(free_port()).await;
    let config = SluiceConfig {
        fsync: "always".into(),
        disk_extra: vec!["segment_size_mib: 1".into()],
        ..SluiceConfig::new(dir.path(), backend.port())
    };
    let log_dir = config.buffer_dir.join("traces").join(REUSE_TENANT);
    let mut sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let channel = channel(&sluice.otlp_endpoint()).await;
    let mut sent = BTreeSet::new();
    let send = async |r: usize, sent: &mut BTreeSet<String>| {
        // The same sequence numbers every time: every request, and so every record, is as
        // long as every other.
        let spans = named_spans(&format!("reuse-r{r:05}"), 0, SPANS);
        sent.extend(spans.iter().map(|s| s.name.clone()));
        let request = trace_request("reuse-svc", None, spans);
        export_traces(&channel, Some(REUSE_TENANT), request)
            .await
            .expect("acknowledged");
        active_segment(&log_dir)
    };

    // About four segments of 1 MiB, all exported: the newest retired one is the log's spare.
    for r in 0..150 {
        send(r, &mut sent).await;
    }
    settle(&sluice, &backend, &log_dir, &sent, 150).await;
    // The next segment starts in the spare; two records go into it.
    let before = active_segment(&log_dir);
    let (mut r, mut after_roll) = (150, 0);
    while after_roll < 2 {
        if send(r, &mut sent).await != before {
            after_roll += 1;
        }
        r += 1;
    }
    settle(&sluice, &backend, &log_dir, &sent, r).await;
    let active = active_segment(&log_dir).expect("an active segment");
    let size = std::fs::metadata(log_dir.join(&active))
        .expect("segment")
        .len();
    assert!(
        size > 512 * 1024,
        "segment {active} holds two records of {SPANS} spans in {size} bytes: a new file, not a reused one"
    );
    let delivered = backend.span_count(REUSE_TENANT);
    assert_eq!(delivered, sent.len(), "each span once before the kill");

    sluice.kill();
    let sluice = SluiceProcess::start(&config.with_fresh_ports().yaml(), dir.path()).await;
    let restarted = common::otlp::channel(&sluice.otlp_endpoint()).await;
    let marker = named_spans("reuse-marker", 0, 1);
    let names: BTreeSet<String> = marker.iter().map(|s| s.name.clone()).collect();
    export_traces(
        &restarted,
        Some(REUSE_TENANT),
        trace_request("reuse-svc", None, marker),
    )
    .await
    .expect("acknowledged after the restart");
    backend
        .wait_span_names(REUSE_TENANT, &names, Duration::from_secs(30))
        .await;
    // Delivered in order: anything read back from before the marker has arrived by now.
    assert_eq!(
        backend.span_count(REUSE_TENANT),
        delivered + 1,
        "spans arrived again after the restart"
    );
    let damage = sluice
        .metric("sluice_buffer_truncated_bytes_total", &[])
        .await;
    assert_eq!(
        damage, 0.0,
        "the reused file's old records reported as damage"
    );
}

const REUSE_TENANT: &str = "reuse";

/// The name of the log's active (newest) segment file.
fn active_segment(log_dir: &Path) -> Option<String> {
    std::fs::read_dir(log_dir)
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| name.ends_with(".seg"))
        .max()
}

/// Waits until every span sent reached the backend and the log's cursor, as the next start
/// reads it, is past all `records`.
async fn settle(
    sluice: &SluiceProcess,
    backend: &Backend,
    log_dir: &Path,
    sent: &BTreeSet<String>,
    records: usize,
) {
    let timeout = Duration::from_secs(30);
    backend.wait_span_names(REUSE_TENANT, sent, timeout).await;
    sluice.wait_settled(REUSE_TENANT, "traces", timeout).await;
    let cursor = log_dir.join("cursor");
    wait_for("the cursor past every record", timeout, || {
        let at = std::fs::read(&cursor)
            .ok()
            .and_then(|b| Some(u64::from_le_bytes(b.get(..8)?.try_into().ok()?)));
        async move {
            match at {
                Some(at) if at >= records as u64 => Ok(()),
                other => Err(format!("cursor at {other:?} of {records}")),
            }
        }
    })
    .await;
}
