//! The export worker and its settling, against a fake buffer stream and a scripted exporter,
//! on tokio's paused clock: retries, hangs and lingering take no real time.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::*;
use crate::exporter::retry::RetryConfig;
use crate::exporter::{Accepted, BoxError, ExportError, Exporter};
use crate::processor::{Part, Processed, Processor};
use crate::signal::Signal;
use crate::tenant::TenantId;

// === a fake buffer stream ===

/// What the worker did with the stream, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Settled {
    Ack(String),
    DeadLetter(String, String),
    GiveUp(String, String),
}

#[derive(Default)]
struct Journal(Mutex<Vec<Settled>>);

impl Journal {
    fn push(&self, s: Settled) {
        self.0.lock().unwrap().push(s);
    }
    fn all(&self) -> Vec<Settled> {
        self.0.lock().unwrap().clone()
    }
}

/// Hands out one delivery per name, then waits forever (as a stream with no new data does).
/// `next` takes from the queue without awaiting first, so it is cancel-safe.
struct FakeStream {
    tenant: TenantId,
    queue: VecDeque<Delivery>,
    cancel_safe: bool,
    journal: Arc<Journal>,
}

fn delivery(tenant: &TenantId, name: &str, position: u64) -> Delivery {
    Delivery {
        batch: Batch {
            tenant: tenant.clone(),
            signal: Signal::Traces,
            payload: name.as_bytes().to_vec().into(),
            items: 1,
            received_at_ms: crate::batch::now_ms(),
            traceparent: None,
        },
        records: 1,
        redelivered: false,
        traceparents: Vec::new(),
        end_position: position,
    }
}

fn name(d: &Delivery) -> String {
    String::from_utf8_lossy(&d.batch.payload.contiguous()).into_owned()
}

#[async_trait]
impl BufferStream for FakeStream {
    fn tenant(&self) -> &TenantId {
        &self.tenant
    }
    fn signal(&self) -> Signal {
        Signal::Traces
    }
    async fn next(&mut self, _: &ReadLimits) -> Result<Option<Delivery>, BufferError> {
        match self.queue.pop_front() {
            Some(d) => Ok(Some(d)),
            None => std::future::pending().await,
        }
    }
    fn next_is_cancel_safe(&self) -> bool {
        self.cancel_safe
    }
    async fn ack(&mut self, d: &Delivery) -> Result<(), BufferError> {
        self.journal.push(Settled::Ack(name(d)));
        Ok(())
    }
    async fn dead_letter(&mut self, d: &Delivery, reason: &str) -> Result<(), BufferError> {
        self.journal
            .push(Settled::DeadLetter(name(d), reason.into()));
        Ok(())
    }
    async fn give_up(&mut self, d: &Delivery, reason: &str) -> Result<GaveUp, BufferError> {
        self.journal.push(Settled::GiveUp(name(d), reason.into()));
        Ok(GaveUp::Redeliver)
    }
}

// === a scripted exporter ===

#[derive(Clone, Copy, Debug)]
enum Step {
    /// Accept after this long.
    Accept(Duration),
    Retryable,
    Permanent,
}

/// Answers each batch (by payload) with its script, one step per attempt; the last step
/// repeats. Batches without a script are accepted at once.
#[derive(Default)]
struct Scripted {
    script: Mutex<HashMap<String, VecDeque<Step>>>,
    attempts: Mutex<Vec<String>>,
    /// How long an unscripted batch takes to be accepted.
    latency: Duration,
    /// Sends in progress now, and the most there ever were.
    in_flight: Mutex<(usize, usize)>,
}

impl Scripted {
    fn with(steps: &[(&str, &[Step])]) -> Arc<Self> {
        let s = Scripted::default();
        for (name, list) in steps {
            s.script
                .lock()
                .unwrap()
                .insert(name.to_string(), list.iter().copied().collect());
        }
        Arc::new(s)
    }
    fn attempts(&self) -> Vec<String> {
        self.attempts.lock().unwrap().clone()
    }
}

fn failure() -> BoxError {
    "scripted failure".into()
}

#[async_trait]
impl Exporter for Scripted {
    async fn send(&self, batch: &Batch) -> Result<Accepted, ExportError> {
        let name = String::from_utf8_lossy(&batch.payload.contiguous()).into_owned();
        self.attempts.lock().unwrap().push(name.clone());
        let step = {
            let mut script = self.script.lock().unwrap();
            match script.get_mut(&name) {
                Some(steps) if steps.len() > 1 => steps.pop_front(),
                Some(steps) => steps.front().copied(),
                None => None,
            }
        };
        match step.unwrap_or(Step::Accept(self.latency)) {
            Step::Accept(after) => {
                {
                    let mut n = self.in_flight.lock().unwrap();
                    n.0 += 1;
                    n.1 = n.1.max(n.0);
                }
                tokio::time::sleep(after).await;
                self.in_flight.lock().unwrap().0 -= 1;
                Ok(Accepted::ALL)
            }
            Step::Retryable => Err(ExportError::Retryable {
                reason: "unavailable",
                retry_after: None,
                source: failure(),
            }),
            Step::Permanent => Err(ExportError::Permanent {
                reason: "bad_data",
                source: failure(),
            }),
        }
    }
}

// === harness ===

struct Harness {
    journal: Arc<Journal>,
    /// Kept open: a closed channel would end the dispatcher.
    _streams: mpsc::UnboundedSender<Box<dyn BufferStream>>,
    stop: CancellationToken,
    tracker: TaskTracker,
}

fn handle(id: &str, exporter: Arc<Scripted>, retry: RetryConfig) -> ExporterHandle {
    ExporterHandle {
        id: id.into(),
        exporter,
        retry,
        slots: None,
    }
}

fn fast_retry() -> RetryConfig {
    RetryConfig {
        initial_interval: Duration::from_secs(1),
        randomization_factor: 0.0,
        ..RetryConfig::default()
    }
}

/// One stream of tenant `t` with a delivery per name.
fn start(
    names: &[&str],
    cancel_safe: bool,
    exporters: Vec<ExporterHandle>,
    processors: Chain,
) -> Harness {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    start_streams(
        &[("t", names)],
        cancel_safe,
        exporters,
        processors,
        LimitsConfig::default(),
    )
}

/// A stream per tenant, each with a delivery per name.
fn start_streams(
    streams: &[(&str, Vec<String>)],
    cancel_safe: bool,
    exporters: Vec<ExporterHandle>,
    processors: Chain,
    tenant_limits: LimitsConfig,
) -> Harness {
    let journal = Arc::new(Journal::default());
    let (tx, rx) = mpsc::unbounded_channel();
    for (tenant, names) in streams {
        let tenant = TenantId::parse(tenant).unwrap();
        let stream = FakeStream {
            queue: names
                .iter()
                .enumerate()
                .map(|(i, n)| delivery(&tenant, n, i as u64 + 1))
                .collect(),
            tenant,
            cancel_safe,
            journal: journal.clone(),
        };
        tx.send(Box::new(stream) as Box<dyn BufferStream>).unwrap();
    }
    let plan = Arc::new(PlanSlot::new(ExportPlan {
        pipeline: "traces".into(),
        exporters,
        limits: ReadLimits::single_record(),
        processors,
        tenant_limits: Arc::new(tenant_limits),
        control: Arc::new(crate::pipeline::control::ExportControl::ephemeral()),
    }));
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    spawn_dispatcher(plan, rx, stop.clone(), tracker.clone());
    Harness {
        journal,
        _streams: tx,
        stop,
        tracker,
    }
}

impl Harness {
    /// Waits (in virtual time) until `n` deliveries are settled.
    async fn settled(&self, n: usize) -> Vec<Settled> {
        for _ in 0..100_000 {
            let all = self.journal.all();
            if all.len() >= n {
                return all;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("only {:?} settled", self.journal.all());
    }

    async fn stop(self) -> Vec<Settled> {
        self.stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        self.journal.all()
    }
}

fn acks(names: &[&str]) -> Vec<Settled> {
    names.iter().map(|n| Settled::Ack(n.to_string())).collect()
}

// === tests ===

#[tokio::test(start_paused = true)]
async fn acks_each_delivery_after_every_exporter_took_it() {
    let (a, b) = (Scripted::with(&[]), Scripted::with(&[]));
    let h = start(
        &["one", "two"],
        false,
        vec![
            handle("otlp/a", a.clone(), fast_retry()),
            handle("otlp/b", b.clone(), fast_retry()),
        ],
        Chain::default(),
    );
    assert_eq!(h.settled(2).await, acks(&["one", "two"]));
    assert_eq!(a.attempts(), ["one", "two"]);
    assert_eq!(b.attempts(), ["one", "two"]);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn deliveries_in_flight_are_settled_in_read_order() {
    // "slow" is read first and answered last; the cumulative ack must still come first.
    let exporter = Scripted::with(&[("slow", &[Step::Accept(Duration::from_secs(30))])]);
    let h = start(
        &["slow", "fast1", "fast2"],
        true,
        vec![handle("otlp", exporter.clone(), fast_retry())],
        Chain::default(),
    );
    assert_eq!(h.settled(3).await, acks(&["slow", "fast1", "fast2"]));
    // All three were at the backend at once: the fast ones did not wait for the slow one.
    assert_eq!(exporter.attempts(), ["slow", "fast1", "fast2"]);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_stream_whose_next_is_not_cancel_safe_has_one_delivery_in_flight() {
    let exporter = Scripted::with(&[("slow", &[Step::Accept(Duration::from_secs(30))])]);
    let h = start(
        &["slow", "fast"],
        false,
        vec![handle("otlp", exporter.clone(), fast_retry())],
        Chain::default(),
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        exporter.attempts(),
        ["slow"],
        "read only after the first settled"
    );
    assert_eq!(h.settled(2).await, acks(&["slow", "fast"]));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_permanent_failure_dead_letters_the_delivery_naming_the_exporter() {
    let bad = Scripted::with(&[("poison", &[Step::Permanent])]);
    let good = Scripted::with(&[]);
    let h = start(
        &["poison", "fine"],
        true,
        vec![
            handle("otlp/bad", bad, fast_retry()),
            handle("otlp/good", good, fast_retry()),
        ],
        Chain::default(),
    );
    let settled = h.settled(2).await;
    match &settled[0] {
        Settled::DeadLetter(name, reason) => {
            assert_eq!(name, "poison");
            assert!(reason.starts_with("otlp/bad: permanent"), "{reason}");
        }
        other => panic!("expected a dead letter, got {other:?}"),
    }
    assert_eq!(settled[1], Settled::Ack("fine".into()));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn retryable_failures_are_retried_with_backoff_then_acked() {
    let exporter = Scripted::with(&[(
        "flaky",
        &[
            Step::Retryable,
            Step::Retryable,
            Step::Accept(Duration::ZERO),
        ],
    )]);
    let h = start(
        &["flaky"],
        true,
        vec![handle("otlp", exporter.clone(), fast_retry())],
        Chain::default(),
    );
    let began = tokio::time::Instant::now();
    assert_eq!(h.settled(1).await, acks(&["flaky"]));
    // Waits of 1 s and 1.5 s (no jitter) passed on the paused clock.
    assert!(
        began.elapsed() >= Duration::from_millis(2500),
        "{:?}",
        began.elapsed()
    );
    assert_eq!(exporter.attempts(), ["flaky", "flaky", "flaky"]);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn exhausted_retries_hand_the_delivery_back_to_the_buffer() {
    let exporter = Scripted::with(&[("down", &[Step::Retryable])]);
    let retry = RetryConfig {
        max_elapsed_time: Duration::from_secs(10),
        ..fast_retry()
    };
    let h = start(
        &["down"],
        false,
        vec![handle("otlp", exporter, retry)],
        Chain::default(),
    );
    match &h.settled(1).await[0] {
        Settled::GiveUp(name, reason) => {
            assert_eq!(name, "down");
            assert!(reason.starts_with("otlp: retryable"), "{reason}");
        }
        other => panic!("expected give-up, got {other:?}"),
    }
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_leaves_an_unfinished_delivery_and_everything_after_it_unsettled() {
    // "stuck" retries forever; "later" is accepted at once but is behind it in read order.
    let exporter = Scripted::with(&[("stuck", &[Step::Retryable])]);
    let h = start(
        &["stuck", "later"],
        true,
        vec![handle("otlp", exporter.clone(), fast_retry())],
        Chain::default(),
    );
    while exporter.attempts().len() < 3 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(exporter.attempts().contains(&"later".to_string()));
    assert_eq!(h.stop().await, Vec::<Settled>::new());
}

/// Drops every batch whose payload starts with `drop`.
#[derive(Debug)]
struct DropNamed;

impl Processor for DropNamed {
    fn process(&self, part: Part) -> Result<Processed, crate::processor::ProcessError> {
        let batch = part.into_batch();
        if batch.payload.contiguous().starts_with(b"drop") {
            let items = batch.items;
            return Ok(Processed::reduced(None, items, "filtered"));
        }
        Ok(Processed::keep(batch.into()))
    }
}

#[tokio::test(start_paused = true)]
async fn export_side_processors_that_drop_a_delivery_still_ack_it() {
    let exporter = Scripted::with(&[]);
    let chain = Chain::new(vec![("filter".into(), Arc::new(DropNamed))]);
    let h = start(
        &["drop-me", "keep-me"],
        true,
        vec![handle("otlp", exporter.clone(), fast_retry())],
        chain,
    );
    assert_eq!(h.settled(2).await, acks(&["drop-me", "keep-me"]));
    assert_eq!(exporter.attempts(), ["keep-me"]);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_large_backlog_gets_no_more_turns_at_the_backend_than_small_ones() {
    // After an outage: one tenant with 40 batches waiting, five with 2 each, and an exporter
    // that takes two sends at a time, 100 ms each.
    let exporter = Arc::new(Scripted {
        latency: Duration::from_millis(100),
        ..Scripted::default()
    });
    let backlog =
        |tenant: &str, n: usize| (0..n).map(|i| format!("{tenant}/{i}")).collect::<Vec<_>>();
    let mut streams = vec![("big", backlog("big", 40))];
    for small in ["s1", "s2", "s3", "s4", "s5"] {
        streams.push((small, backlog(small, 2)));
    }
    let handle = ExporterHandle {
        slots: Some(crate::exporter::sending::FairSlots::new("otlp", 2)),
        ..handle("otlp", exporter.clone(), fast_retry())
    };
    let h = start_streams(
        &streams,
        true,
        vec![handle],
        Chain::default(),
        LimitsConfig::default(),
    );
    h.settled(50).await;

    let attempts = exporter.attempts();
    let last_small = attempts
        .iter()
        .rposition(|a| !a.starts_with("big/"))
        .expect("small tenants were sent");
    let big_before = attempts[..last_small]
        .iter()
        .filter(|a| a.starts_with("big/"))
        .count();
    assert!(
        big_before < 10,
        "the small backlogs waited for {big_before} of the big tenant's 40 batches: {attempts:?}"
    );
    assert_eq!(
        exporter.in_flight.lock().unwrap().1,
        2,
        "never more than num_consumers"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn data_older_than_the_tenants_buffer_max_age_is_dead_lettered_not_retried_forever() {
    let exporter = Scripted::with(&[("stale", &[Step::Retryable])]);
    let limits: LimitsConfig =
        serde_yaml::from_str("tenants: { t: { buffer_max_age: 30s } }").unwrap();
    let h = start_streams(
        &[("t", vec!["stale".to_string(), "next".to_string()])],
        false,
        vec![handle("otlp", exporter.clone(), fast_retry())],
        Chain::default(),
        limits,
    );
    let began = tokio::time::Instant::now();
    let settled = h.settled(2).await;
    match &settled[0] {
        Settled::DeadLetter(name, reason) => {
            assert_eq!(name, "stale");
            assert!(reason.contains("buffer_max_age"), "{reason}");
        }
        other => panic!("expected a dead letter, got {other:?}"),
    }
    assert!(
        began.elapsed() >= Duration::from_secs(30),
        "{:?}",
        began.elapsed()
    );
    assert!(exporter.attempts().len() > 3, "retried until it expired");
    assert_eq!(settled[1], Settled::Ack("next".into()));
    h.stop().await;
}

/// `n` deliveries named `{prefix}{i}`.
fn backlog(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

fn slow_backend() -> Arc<Scripted> {
    Arc::new(Scripted {
        latency: Duration::from_secs(1),
        ..Scripted::default()
    })
}

#[tokio::test(start_paused = true)]
async fn a_stream_with_a_backlog_has_its_depth_in_flight_and_no_more() {
    let exporter = slow_backend();
    let h = start_streams(
        &[("t", backlog("d", 20))],
        true,
        vec![handle("otlp", exporter.clone(), fast_retry())],
        Chain::default(),
        LimitsConfig::default(),
    );
    h.settled(20).await;
    assert_eq!(exporter.in_flight.lock().unwrap().1, IN_FLIGHT_PER_STREAM);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn streams_share_the_pipelines_read_ahead() {
    // Three streams with a backlog: each has its first delivery out, and what more is in
    // flight comes out of the shared read-ahead, which two of them can empty.
    let exporter = slow_backend();
    let h = start_streams(
        &[
            ("a", backlog("a", 20)),
            ("b", backlog("b", 20)),
            ("c", backlog("c", 20)),
        ],
        true,
        vec![handle("otlp", exporter.clone(), fast_retry())],
        Chain::default(),
        LimitsConfig::default(),
    );
    h.settled(60).await;
    // Without the sharing the three would have more out.
    const { assert!(3 * IN_FLIGHT_PER_STREAM > 3 + READ_AHEAD_PER_PIPELINE) };
    assert_eq!(
        exporter.in_flight.lock().unwrap().1,
        3 + READ_AHEAD_PER_PIPELINE
    );
    // Every read-ahead was given back with its delivery.
    assert_eq!(
        exporter.attempts().len(),
        60,
        "each delivery sent once: {:?}",
        exporter.attempts()
    );
    h.stop().await;
}
