use super::*;

// =============================================================================================
// C: redelivery of the Collector's messages: a backend outage, an exporter SIGKILLed;
// with the pulsarexporter's producer batching off (passes) and on (its default; known gap)
// =============================================================================================

/// An OTLP trace backend that accepts the first `accept` requests, then answers
/// `UNAVAILABLE` (retryable) while `failing` is set, and accepts again once it is cleared;
/// records what it accepted.
pub(crate) struct Flaky {
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) failing: Arc<AtomicBool>,
    pub(crate) accepted: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    pub(crate) task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
pub(crate) struct FlakySvc {
    pub(crate) accept: usize,
    pub(crate) seen: Arc<AtomicUsize>,
    pub(crate) failing: Arc<AtomicBool>,
    pub(crate) accepted: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
}

#[tonic::async_trait]
impl TraceService for FlakySvc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let n = self.seen.fetch_add(1, Ordering::SeqCst);
        if n >= self.accept && self.failing.load(Ordering::SeqCst) {
            return Err(tonic::Status::unavailable("test backend: down for now"));
        }
        self.accepted.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(Default::default()))
    }
}

impl Flaky {
    pub(crate) async fn start(accept: usize) -> Flaky {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let failing = Arc::new(AtomicBool::new(true));
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let svc = FlakySvc {
            accept,
            seen: Default::default(),
            failing: failing.clone(),
            accepted: accepted.clone(),
        };
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(
                    TraceServiceServer::new(svc)
                        .accept_compressed(CompressionEncoding::Gzip)
                        .accept_compressed(CompressionEncoding::Zstd),
                )
                .serve_with_incoming(TcpIncoming::from(listener))
                .await;
        });
        Flaky {
            addr,
            failing,
            accepted,
            task,
        }
    }

    pub(crate) fn recover(&self) {
        self.failing.store(false, Ordering::SeqCst);
    }

    pub(crate) fn spans(&self) -> Vec<Item> {
        self.accepted
            .lock()
            .unwrap()
            .iter()
            .flat_map(span_items)
            .collect()
    }
}

impl Drop for Flaky {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Everything a scenario of C/D needs: a Collector that batches hard (1 s window), ten
/// requests of 20 spans written through it (checked to share broker entries), and an
/// export-only Sluice config for the tenant (no batch processor: one message per delivery;
/// short retries, then a nack).
pub(crate) struct Batched {
    pub(crate) _collector: Collector,
    pub(crate) tenant: String,
    pub(crate) topic: String,
    /// The spans of the messages as the Collector wrote them.
    pub(crate) written: Vec<Item>,
    pub(crate) messages: usize,
    pub(crate) entries: u64,
    pub(crate) subscription: String,
    pub(crate) config: SluiceConfig,
}

impl Batched {
    /// `batching`: the pulsarexporter's default producer batching (a 1 s window here), or
    /// `producer.disable_batching: true` (one message per entry, like Sluice's producer).
    pub(crate) async fn write(
        peers: &Peers,
        name: &str,
        dir: &Path,
        backend_port: u16,
        batching: bool,
    ) -> Batched {
        let tenant = pulsar::tenant(name);
        let out = dir.join("collector-out");
        std::fs::create_dir_all(&out).unwrap();
        let otlp = format!("127.0.0.1:{}", free_port());
        let collector = Collector::start(
            &peers.collector,
            "collector-otlp-to-pulsar.yaml",
            &[
                ("PEER_PULSAR_URL", pulsar::service_url()),
                ("PEER_TENANT", tenant.clone()),
                ("PEER_OTLP_ENDPOINT", otlp.clone()),
                ("PEER_OUT_DIR", out.display().to_string()),
                ("PEER_BATCHING_DELAY", "1s".to_string()),
                ("PEER_DISABLE_BATCHING", (!batching).to_string()),
            ],
            dir,
        )
        .await;
        // Ten requests of 20 spans, back to back: ten messages in one (or very few) entries.
        let client = channel(&format!("http://{otlp}")).await;
        for r in 0..10u64 {
            let spans = common::otlp::named_spans(&format!("{tenant}-r{r}"), r * 20, 20);
            export_traces(
                &client,
                None,
                common::otlp::trace_request(name, None, spans),
            )
            .await
            .unwrap_or_else(|status| panic!("the Collector refused a request: {status:?}"));
        }
        let topic = pulsar::topic("traces", &tenant);
        let messages = pulsar::read_topic(&topic, 10, WAIT).await;
        assert_eq!(messages.len(), 10, "messages on {topic}");
        let entries = entries(&topic).await;
        if batching {
            assert!(
                entries < messages.len() as u64,
                "the Collector's producer should have batched ({} messages in {entries} entries)",
                messages.len()
            );
        } else {
            assert_eq!(
                entries,
                messages.len() as u64,
                "one entry per message on {topic}"
            );
        }
        let written = messages
            .iter()
            .map(|m| ExportTraceServiceRequest::decode(m.payload.as_slice()).expect("OTLP"))
            .flat_map(|r| span_items(&r))
            .collect();

        let subscription = pulsar::tenant("sluice");
        let consumer = format!(
            "consumer: {{ subscription: {subscription}, tenants: [{tenant}], \
             redelivery_delay: 100ms, max_redeliveries: 1000 }}"
        );
        let mut config = SluiceConfig::new(dir, backend_port)
            .with_pulsar(&pulsar::service_url(), &["send_timeout: 10s", &consumer]);
        config.receive = false;
        config.batch_traces = false;
        config.otlp_retry =
            "{ initial_interval: 50ms, max_interval: 100ms, max_elapsed_time: 300ms }".into();
        Batched {
            _collector: collector,
            tenant,
            topic,
            written,
            messages: messages.len(),
            entries,
            subscription,
            config,
        }
    }

    /// The subscription's backlog as the broker sees it.
    pub(crate) async fn backlog(&self) -> String {
        match stats(&self.topic, "stats").await {
            Ok(s) => {
                let sub = &s["subscriptions"][self.subscription.as_str()];
                format!(
                    "msgBacklog {}, unackedMessages {}",
                    sub["msgBacklog"], sub["unackedMessages"]
                )
            }
            Err(e) => e,
        }
    }

    /// Waits until every span written but not in `delivered_before` is among `got()`, or 30 s;
    /// then asserts it (duplicates allowed: at least once).
    pub(crate) async fn assert_rest_arrives(
        &self,
        what: &str,
        delivered_before: &[Item],
        got: impl Fn() -> Vec<Item>,
    ) {
        let want: Vec<Item> = self
            .written
            .iter()
            .filter(|w| !delivered_before.iter().any(|a| a.bytes == w.bytes))
            .cloned()
            .collect();
        let found = |got: &[Item]| -> Vec<Item> {
            let mut found: Vec<Item> = got
                .iter()
                .filter(|g| want.iter().any(|w| w.bytes == g.bytes))
                .cloned()
                .collect();
            found.sort_by(|a, b| a.bytes.cmp(&b.bytes));
            found.dedup_by(|a, b| a.bytes == b.bytes);
            found
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while found(&got()).len() < want.len() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_same_items(what, &want, &found(&got()));
    }
}

pub(crate) async fn wait_metric(
    sluice: &SluiceProcess,
    name: &str,
    labels: &[(&str, &str)],
    at_least: f64,
) {
    let what = format!("{name} {labels:?} >= {at_least}");
    wait_for(&what, WAIT, || async {
        let v = sluice.metric(name, labels).await;
        if v >= at_least {
            Ok(())
        } else {
            Err(format!("{v}"))
        }
    })
    .await;
}

/// The backend takes the first request and then is down, so the other messages are refused
/// and nacked after their retries; once the backend is back, they must all arrive.
pub(crate) async fn backend_outage(name: &str, batching: bool) {
    let peers = preflight();
    let dir = temp_dir();
    let backend = Flaky::start(1).await;
    let b = Batched::write(&peers, name, dir.path(), backend.addr.port(), batching).await;
    let sluice = SluiceProcess::start(&b.config.yaml(), dir.path()).await;
    let labels = [("signal", "traces"), ("tenant", b.tenant.as_str())];
    wait_metric(&sluice, "sluice_exporter_sent_items_total", &labels, 20.0).await;
    wait_metric(&sluice, "sluice_pulsar_redeliveries_total", &labels, 1.0).await;
    let backlog = b.backlog().await;
    backend.recover();
    let first = backend.spans();
    eprintln!(
        "{name}: {} messages in {} entries; {} spans accepted, then the backend refused and \
         Sluice nacked; subscription at that point: {backlog}",
        b.messages,
        b.entries,
        first.len()
    );
    b.assert_rest_arrives(
        "spans delivered after the backend came back",
        &first,
        || backend.spans(),
    )
    .await;
}

/// The exporter is SIGKILLed while the backend is down, after one message was delivered; a
/// new exporter (and a healthy backend) must deliver everything the first one had not.
pub(crate) async fn exporter_killed(name: &str, batching: bool) {
    let peers = preflight();
    let dir = temp_dir();
    let first = Flaky::start(1).await;
    let mut b = Batched::write(&peers, name, dir.path(), first.addr.port(), batching).await;
    let mut exporter = SluiceProcess::start(&b.config.yaml(), dir.path()).await;
    let labels = [("signal", "traces"), ("tenant", b.tenant.as_str())];
    wait_metric(&exporter, "sluice_exporter_sent_items_total", &labels, 20.0).await;
    wait_metric(&exporter, "sluice_exporter_retries_total", &labels, 1.0).await;
    let backlog = b.backlog().await;
    exporter.kill();
    let accepted = first.spans();
    eprintln!(
        "{name}: {} messages in {} entries; exporter 1 delivered {} spans, then was killed; \
         subscription before the kill: {backlog}",
        b.messages,
        b.entries,
        accepted.len()
    );

    let backend = Backend::start().await;
    b.config.backend_port = backend.port();
    let config = b.config.clone().with_fresh_ports();
    let _exporter = SluiceProcess::start(&config.yaml(), dir.path()).await;
    b.assert_rest_arrives(
        "spans the restarted exporter delivered (everything exporter 1 had not)",
        &accepted,
        || backend_spans(&backend),
    )
    .await;
}

/// With `producer.disable_batching: true` every Collector message is an entry of its own,
/// and Sluice redelivers exactly what it has not acknowledged.
#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn unbatched_collector_messages_survive_a_backend_outage() {
    backend_outage("interop-c", false).await;
}

#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn unbatched_collector_messages_survive_an_exporter_killed() {
    exporter_killed("interop-d", false).await;
}

/// The Collector's default: its producer batches, several messages share one broker entry,
/// and the broker acknowledges an entry as a whole. Sluice must acknowledge an entry only once
/// all its messages are settled, and a nack must bring the whole entry back.
#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn batched_collector_entries_survive_a_backend_outage() {
    backend_outage("interop-e", true).await;
}

/// As above, with the exporter SIGKILLed after the first message: the rest of the entry must
/// still reach the next exporter.
#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn batched_collector_entries_survive_an_exporter_killed_mid_entry() {
    exporter_killed("interop-f", true).await;
}
