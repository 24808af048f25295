use super::*;

// =============================================================================================
// B: the Collector writes, Sluice reads
// =============================================================================================

/// An export-only Sluice reading a fresh tenant's topics into the test backend, and a
/// Collector (OTLP in) writing them.
pub(crate) struct CollectorToSluice {
    pub(crate) collector: Collector,
    pub(crate) sluice: SluiceProcess,
    pub(crate) backend: Backend,
    pub(crate) tenant: String,
    /// The Collector's OTLP/gRPC endpoint, `host:port`.
    pub(crate) otlp: String,
    pub(crate) out: PathBuf,
    pub(crate) _dir: tempfile::TempDir,
}

/// How many items Sluice delivered, per signal.
pub(crate) struct Delivered {
    pub(crate) spans: usize,
    pub(crate) points: usize,
    pub(crate) records: usize,
}

impl CollectorToSluice {
    /// Through Pulsar: the pulsarexporter writes to the topics (named in its config) of a
    /// fresh tenant `<name>-<run>`.
    /// `env`: extra environment of the Collector (PEER_COMPRESSION, PEER_BATCHING_DELAY, …).
    pub(crate) async fn start(
        peers: &Peers,
        name: &str,
        env: &[(&str, String)],
    ) -> CollectorToSluice {
        let tenant = pulsar::tenant(name);
        // Sluice reads this tenant's topics (they do not exist yet: its consumers create
        // them, and start at the earliest message).
        let consumer = format!(
            "consumer: {{ subscription: {}, tenants: [{tenant}] }}",
            pulsar::tenant("sluice")
        );
        let buffer = |config: SluiceConfig| {
            config.with_pulsar(&pulsar::service_url(), &["send_timeout: 10s", &consumer])
        };
        let mut collector_env = vec![
            ("PEER_PULSAR_URL", pulsar::service_url()),
            ("PEER_TENANT", tenant.clone()),
        ];
        collector_env.extend(env.iter().cloned());
        CollectorToSluice::start_with(
            peers,
            tenant,
            buffer,
            std::future::ready(()),
            "collector-otlp-to-pulsar.yaml",
            collector_env,
        )
        .await
    }

    /// An export-only Sluice with the buffer `buffer` adds to its config, reading `tenant`'s
    /// topics into the test backend; once `topics_ready` is done, the Collector with
    /// `deploy/peers/<collector_config>` and `env` (PEER_OTLP_ENDPOINT and PEER_OUT_DIR added).
    pub(crate) async fn start_with(
        peers: &Peers,
        tenant: String,
        buffer: impl FnOnce(SluiceConfig) -> SluiceConfig,
        topics_ready: impl std::future::Future<Output = ()>,
        collector_config: &str,
        mut env: Vec<(&str, String)>,
    ) -> CollectorToSluice {
        let dir = temp_dir();
        let out = dir.path().join("collector-out");
        std::fs::create_dir_all(&out).unwrap();
        let backend = Backend::start().await;

        let mut config = buffer(SluiceConfig::new(dir.path(), backend.port()));
        config.receive = false;
        let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
        topics_ready.await;

        let otlp = format!("127.0.0.1:{}", free_port());
        env.push(("PEER_OTLP_ENDPOINT", otlp.clone()));
        env.push(("PEER_OUT_DIR", out.display().to_string()));
        let collector =
            Collector::start(&peers.collector, collector_config, &env, dir.path()).await;
        CollectorToSluice {
            collector,
            sluice,
            backend,
            tenant,
            otlp,
            out,
            _dir: dir,
        }
    }

    /// The spans the Collector recorded sending, once there are at least `n`.
    pub(crate) async fn sent_spans(&self, n: usize) -> Vec<Item> {
        let file = self.out.join("sent-traces.pb");
        wait_items("the Collector's record of the spans it sent", n, || {
            read_proto_file::<ExportTraceServiceRequest>(&file)
                .iter()
                .flat_map(span_items)
                .collect()
        })
        .await
    }

    /// The spans the backend got, once there are at least `n`.
    pub(crate) async fn delivered_spans(&self, n: usize) -> Vec<Item> {
        wait_items("Sluice to deliver every span", n, || {
            backend_spans(&self.backend)
        })
        .await
    }

    /// Sends `sent` to the Collector from this test's OTLP client, then `TELEMETRYGEN_ITEMS`
    /// of each signal from `telemetrygen`; every request carries `metadata(signal)`.
    pub(crate) async fn send(
        &self,
        peers: &Peers,
        sent: &Sent,
        metadata: impl Fn(&str) -> Metadata,
    ) {
        sent.send_with(&format!("http://{}", self.otlp), &metadata)
            .await;
        for signal in ["traces", "metrics", "logs"] {
            telemetrygen(
                &peers.telemetrygen,
                signal,
                TELEMETRYGEN_ITEMS,
                &self.otlp,
                &metadata(signal),
            )
            .await;
        }
    }

    /// After [`CollectorToSluice::send`]: Sluice delivered exactly what the Collector's file
    /// exporter recorded sending (item by item), the test's own items among them unchanged,
    /// every request with the topic's tenant, Sluice's item counts right, and nothing counted
    /// in `undecodable` (the buffer's undecodable-message counter).
    pub(crate) async fn assert_delivered_as_sent(
        &self,
        sent: &Sent,
        undecodable: &str,
    ) -> Delivered {
        let (tenant, backend, sluice) = (&self.tenant, &self.backend, &self.sluice);

        // What the Collector sent (its file exporter, next to the broker's exporter in the
        // same pipelines). telemetrygen makes 2 spans per trace (a root and one child).
        let tee = |name: &str| self.out.join(name);
        let sent_spans = self
            .sent_spans(sent.spans().len() + 2 * TELEMETRYGEN_ITEMS)
            .await;
        let sent_points = wait_items(
            "the Collector's record of the data points it sent",
            sent.points().len() + TELEMETRYGEN_ITEMS,
            || {
                read_proto_file::<ExportMetricsServiceRequest>(&tee("sent-metrics.pb"))
                    .iter()
                    .flat_map(point_items)
                    .collect()
            },
        )
        .await;
        let sent_records = wait_items(
            "the Collector's record of the log records it sent",
            sent.records().len() + TELEMETRYGEN_ITEMS,
            || {
                read_proto_file::<ExportLogsServiceRequest>(&tee("sent-logs.pb"))
                    .iter()
                    .flat_map(record_items)
                    .collect()
            },
        )
        .await;

        // Sluice delivers every item with the topic's tenant.
        let got_spans = self.delivered_spans(sent_spans.len()).await;
        let got_points = wait_items(
            "Sluice to deliver every data point",
            sent_points.len(),
            || backend_points(backend),
        )
        .await;
        let got_records = wait_items(
            "Sluice to deliver every log record",
            sent_records.len(),
            || backend_records(backend),
        )
        .await;
        assert_same_items("spans Sluice delivered", &sent_spans, &got_spans);
        assert_same_items("data points Sluice delivered", &sent_points, &got_points);
        assert_same_items("log records Sluice delivered", &sent_records, &got_records);

        // The test's own items are among them exactly (the Collector changed nothing either).
        let contains = |what: &str, want: Vec<Item>, got: &[Item]| {
            let got: Vec<Item> = got
                .iter()
                .filter(|g| want.iter().any(|w| w.bytes == g.bytes))
                .cloned()
                .collect();
            assert_same_items(what, &want, &got);
        };
        contains("the test's spans", sent.spans(), &got_spans);
        contains("the test's data points", sent.points(), &got_points);
        contains("the test's log records", sent.records(), &got_records);

        let tenants = backend.with(|r| {
            let mut t: Vec<Option<String>> = r.traces.iter().map(|x| x.tenant.clone()).collect();
            t.extend(r.metrics.iter().map(|x| x.tenant.clone()));
            t.extend(r.logs.iter().map(|x| x.tenant.clone()));
            t
        });
        assert!(
            tenants
                .iter()
                .all(|t| t.as_deref() == Some(tenant.as_str())),
            "every request must carry the topic's tenant {tenant}: {tenants:?}"
        );

        // The item counts Sluice derived (the Collector's messages carry no `items` property
        // or header, so Sluice walks the payload) and no message refused as undecodable.
        for (signal, n) in [
            ("traces", sent_spans.len()),
            ("metrics", sent_points.len()),
            ("logs", sent_records.len()),
        ] {
            let labels = [("signal", signal), ("tenant", tenant.as_str())];
            let exported = sluice
                .metric("sluice_exporter_sent_items_total", &labels)
                .await;
            assert_eq!(
                exported, n as f64,
                "sluice_exporter_sent_items_total of {signal}"
            );
            let refused = sluice.metric(undecodable, &labels).await;
            assert_eq!(refused, 0.0, "{undecodable} of {signal}");
        }
        Delivered {
            spans: got_spans.len(),
            points: got_points.len(),
            records: got_records.len(),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn sluice_exports_what_the_collector_pulsarexporter_wrote() {
    let peers = preflight();
    // Wider than the 10 ms default, so that messages share broker entries for sure.
    let env = [("PEER_BATCHING_DELAY", "200ms".to_string())];
    let b = CollectorToSluice::start(&peers, "interop-b", &env).await;
    let tenant = &b.tenant;

    // Known data from this test's OTLP client (no tenant header: the Collector would not
    // forward it anyway; the topic is what names the tenant), then telemetrygen's.
    let sent = Sent::new("interop-b");
    b.send(&peers, &sent, |_| Metadata::new()).await;
    let delivered = b
        .assert_delivered_as_sent(&sent, "sluice_pulsar_undecodable_messages_total")
        .await;

    // What the Collector's messages look like next to Sluice's contract (for the record), and
    // that its producer did batch (so batched entries were read above).
    for signal in ["traces", "metrics", "logs"] {
        let topic = pulsar::topic(signal, tenant);
        let messages = pulsar::read_topic(&topic, usize::MAX, Duration::from_secs(2)).await;
        let keys: BTreeSet<Option<String>> = messages.iter().map(|m| m.key.clone()).collect();
        let properties: BTreeSet<BTreeMap<String, String>> = messages
            .iter()
            .map(|m| m.properties.clone().into_iter().collect())
            .collect();
        let entries = entries(&topic).await;
        if signal == "traces" {
            assert!(
                entries < messages.len() as u64,
                "the Collector's producer should have batched ({} messages in {entries} entries)",
                messages.len()
            );
        }
        eprintln!(
            "B: {topic}: {} messages in {entries} broker entries; keys {:?}; properties {:?}",
            messages.len(),
            keys,
            properties,
        );
    }

    b.collector.assert_no_problems();
    eprintln!(
        "B: Sluice delivered {} spans, {} data points, {} log records that the Collector wrote, \
         all as sent",
        delivered.spans, delivered.points, delivered.records
    );
}

/// Every compression the pulsarexporter offers is one Sluice's consumer reads.
#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn sluice_reads_every_collector_compression() {
    let peers = preflight();
    for compression in ["none", "lz4", "zlib", "zstd"] {
        let env = [("PEER_COMPRESSION", compression.to_string())];
        let run = CollectorToSluice::start(&peers, &format!("interop-y-{compression}"), &env).await;
        let sent = trace_requests(0x5111_ce00_7900_0000, compression, 2, 2);
        let channel = channel(&format!("http://{}", run.otlp)).await;
        for request in &sent {
            export_traces(&channel, None, request.clone())
                .await
                .unwrap_or_else(|status| panic!("the Collector refused: {status:?}"));
        }
        let n = sent.iter().flat_map(span_items).count();
        let written = run.sent_spans(n).await;
        let delivered = run.delivered_spans(written.len()).await;
        let what = format!("spans the Collector wrote with compression {compression}");
        assert_same_items(&what, &written, &delivered);
        let labels = [("signal", "traces"), ("tenant", run.tenant.as_str())];
        let undecodable = run
            .sluice
            .metric("sluice_pulsar_undecodable_messages_total", &labels)
            .await;
        assert_eq!(undecodable, 0.0, "undecodable messages with {compression}");
        run.collector.assert_no_problems();
    }
}
