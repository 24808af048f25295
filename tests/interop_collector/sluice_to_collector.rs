use super::*;

// =============================================================================================
// A: Sluice writes, the Collector reads
// =============================================================================================

/// A Collector reading a fresh tenant's topics into files, and an ingest-only Sluice
/// writing them (through Pulsar: [`SluiceToCollector::start`]; through Kafka: kafka.rs).
pub(crate) struct SluiceToCollector {
    pub(crate) collector: Collector,
    pub(crate) sluice: SluiceProcess,
    pub(crate) tenant: String,
    pub(crate) out: PathBuf,
    pub(crate) _dir: tempfile::TempDir,
}

impl SluiceToCollector {
    /// `pulsar`: extra lines under Sluice's `buffers.pulsar` (e.g. `compression: zstd`).
    pub(crate) async fn start(peers: &Peers, name: &str, pulsar: &[&str]) -> SluiceToCollector {
        let tenant = pulsar::tenant(name);
        let dir = temp_dir();
        let out = dir.path().join("collector-out");
        std::fs::create_dir_all(&out).unwrap();

        // The Collector first: the Pulsar Go client subscribes at the latest position, so it
        // must be subscribed before Sluice publishes.
        let peer_subscription = pulsar::tenant("collector");
        let collector = Collector::start(
            &peers.collector,
            "collector-pulsar-to-file.yaml",
            &[
                ("PEER_PULSAR_URL", pulsar::service_url()),
                ("PEER_TENANT", tenant.clone()),
                ("PEER_SUBSCRIPTION", peer_subscription.clone()),
                ("PEER_OUT_DIR", out.display().to_string()),
            ],
            dir.path(),
        )
        .await;
        for signal in ["traces", "metrics", "logs"] {
            wait_subscribed(&pulsar::topic(signal, &tenant), &peer_subscription).await;
        }

        // Sluice, ingest only, with the default topic template.
        let subscription = format!("consumer: {{ subscription: {} }}", pulsar::tenant("sluice"));
        let mut lines = vec!["send_timeout: 10s", subscription.as_str()];
        lines.extend_from_slice(pulsar);
        let mut config =
            SluiceConfig::new(dir.path(), free_port()).with_pulsar(&pulsar::service_url(), &lines);
        config.export = false;
        let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
        SluiceToCollector {
            collector,
            sluice,
            tenant,
            out,
            _dir: dir,
        }
    }

    /// Waits for the spans of `sent` in the Collector's OTLP/JSON file, and compares.
    pub(crate) async fn assert_spans(&self, what: &str, sent: &[ExportTraceServiceRequest]) {
        let want = normalise_status(sent.to_vec())
            .iter()
            .flat_map(span_items)
            .collect::<Vec<_>>();
        let traces_file = self.out.join("traces.jsonl");
        let got = wait_items("the Collector to write every span", want.len(), || {
            read_json_traces(&traces_file)
                .iter()
                .flat_map(span_items)
                .collect()
        })
        .await;
        assert_same_items(what, &want, &got);
    }

    /// Waits for every span, data point and log record of `sent` in the Collector's files,
    /// compares them item by item, and checks the Collector logged no problem.
    pub(crate) async fn assert_read_as_sent(&self, sent: &Sent) {
        // Traces: OTLP/JSON lines, parsed strictly.
        self.assert_spans("spans the Collector read from Sluice's topic", &sent.traces)
            .await;

        let metrics_file = self.out.join("metrics.pb");
        let want = sent.points();
        let got = wait_items(
            "the Collector to write every data point",
            want.len(),
            || {
                read_proto_file::<ExportMetricsServiceRequest>(&metrics_file)
                    .iter()
                    .flat_map(point_items)
                    .collect()
            },
        )
        .await;
        assert_same_items("data points the Collector read", &want, &got);

        let logs_file = self.out.join("logs.pb");
        let want = sent.records();
        let got = wait_items(
            "the Collector to write every log record",
            want.len(),
            || {
                read_proto_file::<ExportLogsServiceRequest>(&logs_file)
                    .iter()
                    .flat_map(record_items)
                    .collect()
            },
        )
        .await;
        assert_same_items("log records the Collector read", &want, &got);

        self.collector.assert_no_problems();
        eprintln!(
            "the Collector read {} spans, {} data points, {} log records from {}'s topics, all \
             as sent",
            sent.spans().len(),
            sent.points().len(),
            sent.records().len(),
            self.tenant
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn collector_pulsarreceiver_reads_what_sluice_wrote() {
    let peers = preflight();
    // Sluice's default compression, lz4.
    let a = SluiceToCollector::start(&peers, "interop-a", &[]).await;
    let sent = Sent::new("interop-a");
    sent.send(&a.sluice.otlp_endpoint(), Some(&a.tenant)).await;
    a.assert_read_as_sent(&sent).await;
}

/// Sluice with `compression: <compression>` writes traces the Collector reads as sent.
pub(crate) async fn sluice_compression_is_read_by_the_collector(peers: &Peers, compression: &str) {
    let line = format!("compression: {compression}");
    let name = format!("interop-z-{compression}");
    let run = SluiceToCollector::start(peers, &name, &[&line]).await;
    let sent = trace_requests(0x5111_ce00_7a00_0000, compression, 2, 2);
    let channel = channel(&run.sluice.otlp_endpoint()).await;
    for request in &sent {
        export_traces(&channel, Some(&run.tenant), request.clone())
            .await
            .unwrap_or_else(|status| panic!("trace export refused: {status:?}"));
    }
    let what = format!("spans Sluice wrote with compression {compression}");
    run.assert_spans(&what, &sent).await;
    run.collector.assert_no_problems();
}

/// The compressions of Sluice's producer that the Collector's Pulsar (Go) client reads.
#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn collector_pulsarreceiver_reads_sluice_compressions() {
    let peers = preflight();
    for compression in ["none", "lz4", "zstd", "zlib"] {
        sluice_compression_is_read_by_the_collector(&peers, compression).await;
    }
}
