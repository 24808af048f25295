//! A torn tail in the disk buffer is detected and cut, never fed downstream.
//!
//! Sluice runs with no backend, receives spans (one buffer record per request: requests are
//! sent one after another and each is acknowledged only once durable), and is stopped with
//! SIGTERM. The last segment file of the tenant is then damaged (cut mid-record, or garbage
//! appended), and sluice restarts with the backend up: every intact record arrives, nothing
//! corrupt does, and the truncation shows in `sluice_buffer_truncated_bytes_total`.

mod common;

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::otlp::{channel, export_traces, named_spans, trace_request};
use common::{free_port, temp_dir, wait_for, Backend, SluiceConfig, SluiceProcess};

const TENANT: &str = "torn";
const REQUESTS: usize = 12;
const SPANS_PER_REQUEST: usize = 5;

enum Damage {
    /// Cut this many bytes off the end of the last segment (inside the last record).
    CutTail(u64),
    /// Append these bytes after the last record.
    AppendGarbage(&'static [u8]),
}

fn request_names(r: usize) -> Vec<String> {
    (0..SPANS_PER_REQUEST)
        .map(|i| format!("{TENANT}-r{r}-{i}"))
        .collect()
}

fn list_tree(dir: &Path, out: &mut Vec<String>) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
            out.push(format!("{} ({len} bytes)", path.display()));
            if path.is_dir() {
                list_tree(&path, out);
            }
        }
    }
}

/// The last (by name) non-empty `*.seg` file under `<buffer>/traces/<tenant>/`.
fn last_segment(buffer_dir: &Path) -> PathBuf {
    let dir = buffer_dir.join("traces").join(TENANT);
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "seg"))
                .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0))
                .collect()
        })
        .unwrap_or_default();
    segments.sort();
    segments.pop().unwrap_or_else(|| {
        let mut tree = Vec::new();
        list_tree(buffer_dir, &mut tree);
        panic!(
            "no *.seg file in {}; the buffer holds:\n{}",
            dir.display(),
            tree.join("\n")
        )
    })
}

async fn run(damage: Damage) {
    let dir = temp_dir();
    let backend_port = free_port();
    let mut config = SluiceConfig::new(dir.path(), backend_port);
    config.batch_traces = false;
    config.shutdown_timeout = "2s".to_string();
    let mut sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;

    let client = channel(&sluice.otlp_endpoint()).await;
    for r in 0..REQUESTS {
        let spans = named_spans(
            &format!("{TENANT}-r{r}"),
            (r * SPANS_PER_REQUEST) as u64,
            SPANS_PER_REQUEST,
        );
        let request = trace_request("torn-svc", None, spans);
        if let Err(status) = export_traces(&client, Some(TENANT), request).await {
            panic!("request {r} refused: {status:?}");
        }
    }
    drop(client);
    let status = sluice.terminate().await;
    assert!(
        status.success(),
        "sluice exited with {status} after SIGTERM"
    );
    drop(sluice);

    let segment = last_segment(&config.buffer_dir);
    let len = std::fs::metadata(&segment).unwrap().len();
    let expected: BTreeSet<String> = match damage {
        Damage::CutTail(cut) => {
            assert!(len > cut, "{} has only {len} bytes", segment.display());
            let file = OpenOptions::new().write(true).open(&segment).unwrap();
            file.set_len(len - cut).unwrap();
            file.sync_all().unwrap();
            (0..REQUESTS - 1).flat_map(request_names).collect()
        }
        Damage::AppendGarbage(garbage) => {
            let mut file = OpenOptions::new().append(true).open(&segment).unwrap();
            file.write_all(garbage).unwrap();
            file.sync_all().unwrap();
            (0..REQUESTS).flat_map(request_names).collect()
        }
    };

    let backend = Backend::start_on(backend_port).await;
    let config = config.with_fresh_ports();
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;

    backend
        .wait_spans(TENANT, expected.len(), Duration::from_secs(30))
        .await;
    // A wrongly replayed torn record would sit in the log before this marker, so it is read
    // no later than the marker; once the marker has arrived and no delivery is in flight,
    // everything read so far has reached the backend and can be counted exactly.
    let client = channel(&sluice.otlp_endpoint()).await;
    let marker = named_spans(&format!("{TENANT}-marker"), 1 << 20, SPANS_PER_REQUEST);
    let expected: BTreeSet<String> = expected
        .into_iter()
        .chain((0..SPANS_PER_REQUEST).map(|i| format!("{TENANT}-marker-{i}")))
        .collect();
    if let Err(status) = export_traces(
        &client,
        Some(TENANT),
        trace_request("torn-svc", None, marker),
    )
    .await
    {
        panic!("marker request refused: {status:?}");
    }
    backend
        .wait_spans(TENANT, expected.len(), Duration::from_secs(30))
        .await;
    let running = &sluice;
    wait_for(
        "no delivery in flight",
        Duration::from_secs(30),
        || async move {
            let metrics = running.metrics().await;
            let in_flight = common::metric_sum(&metrics, "sluice_exporter_sends_in_flight", &[]);
            if in_flight == 0.0 {
                Ok(())
            } else {
                Err(format!("{in_flight} in flight"))
            }
        },
    )
    .await;

    let spans = backend.spans(TENANT);
    let got: BTreeSet<String> = spans.iter().map(|s| s.name.clone()).collect();
    assert_eq!(got, expected, "span names at the backend");
    assert_eq!(
        spans.len(),
        expected.len(),
        "spans delivered more than once"
    );

    let metrics = sluice.metrics().await;
    let truncated = common::metric_sum(&metrics, "sluice_buffer_truncated_bytes_total", &[]);
    assert!(truncated > 0.0, "no truncation counted:\n{metrics}");
    for name in [
        "sluice_exporter_failed_items_total",
        "sluice_dead_lettered_items_total",
    ] {
        assert_eq!(
            common::metric_sum(&metrics, name, &[]),
            0.0,
            "{name}\n{metrics}"
        );
    }
    let stderr = sluice.stderr().to_lowercase();
    assert!(
        stderr.contains("trunc") || stderr.contains("torn"),
        "sluice did not log the truncation:\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn record_cut_mid_way_is_dropped_and_the_rest_delivered() {
    run(Damage::CutTail(9)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_after_the_last_record_is_cut() {
    // Looks like the start of a large record, then stops.
    run(Damage::AppendGarbage(
        b"\x00\x00\x10\x00\xde\xad\xbe\xef\x0a\x0bgarbage-tail",
    ))
    .await;
}
