//! Many tenants in one process (tenant isolation: file descriptors are a shared resource).
//! 20 000 tenants each send one span and one log record to a Sluice whose open-files limit is
//! 4 096 (soft and hard, so it cannot raise it): 40 000 disk logs, ten times the descriptors
//! the process has. Every request is acknowledged and every item delivered to the backend,
//! because the disk buffer keeps only a budget of log files open (docs/architecture.md,
//! "Disk buffer"). Prints the open descriptors and resident memory at the end.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::otlp::{export_log, export_traces, named_spans, trace_request};
use common::{temp_dir, wait_for, Backend, SluiceConfig, SluiceProcess};
use futures::StreamExt;

const TENANTS: usize = 20_000;
const OPEN_FILES_LIMIT: u64 = 4096;
/// Requests in flight at once.
const CONCURRENCY: usize = 64;

fn proc_status(pid: u32, field: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .map(|l| l[field.len()..].trim().to_string())
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_thousand_tenants_with_two_signals_each_under_4096_open_files() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let mut config = SluiceConfig::new(dir.path(), backend.port());
    // The test is about descriptors, not fsync latency.
    config.fsync = "interval".into();
    let sluice =
        SluiceProcess::start_with_open_files_limit(&config.yaml(), dir.path(), OPEN_FILES_LIMIT)
            .await;
    // No per-call deadline: on a loaded machine a debug build may take its time, and a call
    // cut short by the client would be no refusal of Sluice's.
    let connect = || async {
        tonic::transport::Channel::from_shared(sluice.otlp_endpoint())
            .expect("endpoint")
            .connect()
            .await
            .expect("connect")
    };
    let channels = [connect().await, connect().await];
    let tenant = |t: usize| format!("tenant-{t:05}");

    let sent = futures::stream::iter(0..TENANTS * 2)
        .map(|i| {
            let (t, channel) = (tenant(i / 2), &channels[i % 2]);
            async move {
                let result = if i % 2 == 0 {
                    let spans = named_spans(&t, 0, 1);
                    export_traces(channel, Some(&t), trace_request("svc", None, spans)).await
                } else {
                    export_log(channel, &t, &t).await
                };
                result.map_err(|status| format!("{t} ({}): {status:?}", i % 2))
            }
        })
        .buffer_unordered(CONCURRENCY)
        .filter_map(|r| async move { r.err() })
        .collect::<Vec<_>>()
        .await;
    assert!(
        sent.is_empty(),
        "{} refused, e.g. {:?}",
        sent.len(),
        sent.first()
    );

    let want: BTreeSet<String> = (0..TENANTS).map(tenant).collect();
    let delivered = |signal: &str| {
        backend.with(|r| {
            let tenants: Vec<Option<String>> = match signal {
                "traces" => r.traces.iter().map(|x| x.tenant.clone()).collect(),
                _ => r.logs.iter().map(|x| x.tenant.clone()).collect(),
            };
            tenants.into_iter().flatten().collect::<BTreeSet<_>>()
        })
    };
    wait_for(
        "every tenant's span and log delivered",
        Duration::from_secs(600),
        || async {
            let counts = backend.with(|r| (r.traces.len(), r.logs.len()));
            // Comparing 20 000 names is only worth it once enough requests arrived.
            if counts.0 >= TENANTS
                && counts.1 >= TENANTS
                && delivered("traces") == want
                && delivered("logs") == want
            {
                return Ok(());
            }
            Err(format!(
                "{} trace and {} log requests so far",
                counts.0, counts.1
            ))
        },
    )
    .await;
    let spans = backend.with(|r| r.traces.len());
    let logs = backend.with(|r| r.logs.len());
    assert!(spans >= TENANTS && logs >= TENANTS);

    let pid = sluice.pid();
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    let exhausted = sluice
        .metric("sluice_buffer_descriptors_exhausted_total", &[])
        .await;
    assert_eq!(exhausted, 0.0, "no log was refused for lack of descriptors");
    eprintln!(
        "{TENANTS} tenants x 2 signals under a {OPEN_FILES_LIMIT}-file limit: {open} descriptors open, VmRSS {}, VmHWM {}",
        proc_status(pid, "VmRSS:"),
        proc_status(pid, "VmHWM:")
    );
}
