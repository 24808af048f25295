use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::exporter::{Accepted, Exporter};
use crate::signal::Signal;
use crate::telemetry::test_recorder::TestRecorder;
use crate::tenant::TenantId;

/// Fails with the scripted errors in order, then succeeds; records when each call started.
#[derive(Default)]
struct ScriptedExporter {
    script: Mutex<VecDeque<ExportError>>,
    calls: Mutex<Vec<Instant>>,
    /// Never answer: for cancelling an in-flight send.
    hang: bool,
}

#[async_trait]
impl Exporter for ScriptedExporter {
    async fn send(&self, _batch: &Batch) -> Result<Accepted, ExportError> {
        self.calls.lock().unwrap().push(Instant::now());
        if self.hang {
            std::future::pending::<()>().await;
        }
        match self.script.lock().unwrap().pop_front() {
            Some(e) => Err(e),
            None => Ok(Accepted::ALL),
        }
    }
}

impl ScriptedExporter {
    fn failing(errors: impl IntoIterator<Item = ExportError>) -> Arc<Self> {
        Arc::new(ScriptedExporter {
            script: Mutex::new(errors.into_iter().collect()),
            ..Default::default()
        })
    }

    /// When each call started, relative to `t0`, in whole milliseconds.
    fn call_offsets_ms(&self, t0: Instant) -> Vec<u128> {
        let calls = self.calls.lock().unwrap();
        calls.iter().map(|c| (*c - t0).as_millis()).collect()
    }
}

fn unavailable(retry_after: Option<Duration>) -> ExportError {
    ExportError::Retryable {
        reason: "unavailable",
        retry_after,
        source: "backend down".into(),
    }
}

fn invalid() -> ExportError {
    ExportError::Permanent {
        reason: "invalid_argument",
        source: "malformed".into(),
    }
}

/// No jitter, so waits are predictable. Intervals are in milliseconds and the tests run in
/// real time, asserting lower bounds and orderings rather than exact instants.
fn steady(initial_ms: u64, multiplier: f64, max_ms: u64) -> RetryConfig {
    RetryConfig {
        initial_interval: Duration::from_millis(initial_ms),
        max_interval: Duration::from_millis(max_ms),
        multiplier,
        randomization_factor: 0.0,
        ..RetryConfig::default()
    }
}

fn handle(exporter: Arc<ScriptedExporter>, retry: RetryConfig) -> ExporterHandle {
    ExporterHandle {
        id: "otlp/test".to_string(),
        exporter,
        retry,
        slots: None,
    }
}

fn batch() -> Batch {
    Batch {
        tenant: TenantId::parse("team-a").unwrap(),
        signal: Signal::Traces,
        payload: Bytes::from_static(b"\x0a\x00").into(),
        items: 7,
        received_at_ms: now_ms(),
        traceparent: None,
    }
}

const LABELS: &[(&str, &str)] = &[
    ("exporter", "otlp/test"),
    ("signal", "traces"),
    ("tenant", "team-a"),
];

/// Gaps between consecutive calls.
fn gaps(offsets: &[u128]) -> Vec<u128> {
    offsets.windows(2).map(|w| w[1] - w[0]).collect()
}

#[tokio::test]
async fn retries_with_growing_backoff_then_succeeds() {
    let recorder = TestRecorder::default();
    let _guard = recorder.install();
    let exporter =
        ScriptedExporter::failing([unavailable(None), unavailable(None), unavailable(None)]);
    let handle = handle(exporter.clone(), steady(20, 2.0, 60));
    let t0 = Instant::now();

    let outcome = send_with_retry(&handle, &batch(), &CancellationToken::new()).await;

    assert!(matches!(outcome, RetryOutcome::Sent), "{outcome:?}");
    // Waits of 20ms, 40ms, then 80ms capped at max_interval 60ms.
    let gaps = gaps(&exporter.call_offsets_ms(t0));
    assert_eq!(gaps.len(), 3);
    for (gap, expected) in gaps.iter().zip([20, 40, 60]) {
        assert!(*gap >= expected && *gap < expected + 500, "{gaps:?}");
    }
    assert_eq!(recorder.counter("sluice_exporter_retries_total", LABELS), 3);
    assert_eq!(
        recorder.counter("sluice_exporter_sent_items_total", LABELS),
        7
    );
    assert_eq!(
        recorder.counter("sluice_exporter_failed_items_total", LABELS),
        0
    );
    assert_eq!(
        recorder
            .histogram("sluice_exporter_send_duration_seconds", LABELS)
            .len(),
        4
    );
    assert_eq!(
        recorder
            .histogram("sluice_export_latency_seconds", LABELS)
            .len(),
        1
    );
}

#[tokio::test]
async fn permanent_failure_is_not_retried() {
    let recorder = TestRecorder::default();
    let _guard = recorder.install();
    let exporter = ScriptedExporter::failing([invalid()]);
    let handle = handle(exporter.clone(), RetryConfig::default());

    let outcome = send_with_retry(&handle, &batch(), &CancellationToken::new()).await;

    assert!(matches!(outcome, RetryOutcome::Permanent(ref e) if e.reason() == "invalid_argument"));
    assert_eq!(exporter.calls.lock().unwrap().len(), 1);
    let failed = [LABELS, &[("reason", "invalid_argument")]].concat();
    assert_eq!(
        recorder.counter("sluice_exporter_failed_items_total", &failed),
        7
    );
    assert_eq!(recorder.counter("sluice_exporter_retries_total", LABELS), 0);
    assert_eq!(
        recorder.counter("sluice_exporter_sent_items_total", LABELS),
        0
    );
}

#[tokio::test]
async fn gives_up_before_max_elapsed_time_would_be_exceeded() {
    let recorder = TestRecorder::default();
    let _guard = recorder.install();
    let exporter = ScriptedExporter::failing((0..100).map(|_| unavailable(None)));
    let budget = Duration::from_millis(175);
    let retry = RetryConfig {
        max_elapsed_time: budget,
        ..steady(50, 1.0, 50)
    };
    let handle = handle(exporter.clone(), retry);
    let t0 = Instant::now();

    let outcome = send_with_retry(&handle, &batch(), &CancellationToken::new()).await;

    assert!(
        matches!(outcome, RetryOutcome::RetriesExhausted(ref e) if e.reason() == "unavailable")
    );
    // It never sleeps past the budget: it stops when the next wait would cross it. Ideally
    // calls at 0, 50, 100 and 150ms; a slow machine may fit fewer.
    assert!(Instant::now() - t0 <= budget);
    let calls = exporter.calls.lock().unwrap().len() as u64;
    assert!((2..=4).contains(&calls), "{calls} calls");
    let failed = [LABELS, &[("reason", "unavailable")]].concat();
    assert_eq!(
        recorder.counter("sluice_exporter_failed_items_total", &failed),
        7
    );
    assert_eq!(
        recorder.counter("sluice_exporter_retries_total", LABELS),
        calls - 1
    );
}

#[tokio::test]
async fn disabled_retry_exhausts_at_the_first_retryable_failure() {
    let exporter = ScriptedExporter::failing([unavailable(None)]);
    let retry = RetryConfig {
        enabled: false,
        ..RetryConfig::default()
    };
    let handle = handle(exporter.clone(), retry);

    let outcome = send_with_retry(&handle, &batch(), &CancellationToken::new()).await;

    assert!(matches!(outcome, RetryOutcome::RetriesExhausted(_)));
    assert_eq!(exporter.calls.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn retry_after_hint_replaces_the_computed_backoff() {
    // The computed backoff would be 10s; the backend asks for 30ms.
    let exporter = ScriptedExporter::failing([unavailable(Some(Duration::from_millis(30)))]);
    let handle = handle(exporter.clone(), steady(10_000, 1.0, 10_000));
    let t0 = Instant::now();

    let outcome = send_with_retry(&handle, &batch(), &CancellationToken::new()).await;

    assert!(matches!(outcome, RetryOutcome::Sent));
    let gaps = gaps(&exporter.call_offsets_ms(t0));
    assert!(
        gaps.len() == 1 && gaps[0] >= 30 && gaps[0] < 5_000,
        "{gaps:?}"
    );
}

#[test]
fn retry_after_hint_may_exceed_max_interval_up_to_five_minutes() {
    let config = steady(1000, 2.0, 30_000);
    let mut backoff = Backoff::new(&config);
    let secs = |s| Some(Duration::from_secs(s));
    assert_eq!(
        delay_for(&unavailable(secs(60)), &mut backoff),
        Duration::from_secs(60)
    );
    assert_eq!(
        delay_for(&unavailable(secs(3600)), &mut backoff),
        MAX_RETRY_AFTER
    );
    // A zero hint falls back to the computed backoff, which kept growing: 1s, 2s, then 4s.
    assert_eq!(
        delay_for(&unavailable(secs(0)), &mut backoff),
        Duration::from_secs(4)
    );
    assert_eq!(
        delay_for(&unavailable(None), &mut backoff),
        Duration::from_secs(8)
    );
}

#[tokio::test]
async fn cancel_during_backoff_returns_promptly() {
    let exporter = ScriptedExporter::failing((0..100).map(|_| unavailable(None)));
    let handle = handle(exporter.clone(), steady(60_000, 1.0, 60_000));
    let shutdown = CancellationToken::new();
    let canceller = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        canceller.cancel();
    });
    let t0 = Instant::now();

    let outcome = send_with_retry(&handle, &batch(), &shutdown).await;

    assert!(matches!(outcome, RetryOutcome::Cancelled));
    assert!(Instant::now() - t0 < Duration::from_secs(10));
    assert_eq!(exporter.calls.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn cancel_interrupts_an_in_flight_send() {
    let exporter = Arc::new(ScriptedExporter {
        hang: true,
        ..Default::default()
    });
    let handle = handle(exporter.clone(), RetryConfig::default());
    let shutdown = CancellationToken::new();
    let canceller = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        canceller.cancel();
    });

    let outcome = tokio::time::timeout(
        Duration::from_secs(10),
        send_with_retry(&handle, &batch(), &shutdown),
    )
    .await
    .expect("cancellation must end the in-flight send");

    assert!(matches!(outcome, RetryOutcome::Cancelled));
    assert_eq!(exporter.calls.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn already_cancelled_sends_nothing() {
    let exporter = ScriptedExporter::failing([]);
    let handle = handle(exporter.clone(), RetryConfig::default());
    let shutdown = CancellationToken::new();
    shutdown.cancel();

    let outcome = send_with_retry(&handle, &batch(), &shutdown).await;

    assert!(matches!(outcome, RetryOutcome::Cancelled));
    assert!(exporter.calls.lock().unwrap().is_empty());
}

#[test]
fn jitter_stays_within_the_randomization_factor() {
    let config = RetryConfig {
        initial_interval: Duration::from_secs(10),
        max_interval: Duration::from_secs(10),
        ..RetryConfig::default()
    };
    let mut backoff = Backoff::new(&config);
    for _ in 0..1000 {
        let d = backoff.next_delay();
        assert!(
            d >= Duration::from_secs(5) && d <= Duration::from_secs(15),
            "{d:?}"
        );
    }
}

#[test]
fn absurd_intervals_saturate_instead_of_panicking() {
    let config = RetryConfig {
        initial_interval: Duration::MAX,
        max_interval: Duration::MAX,
        multiplier: 1e300,
        ..RetryConfig::default()
    };
    config.validate().unwrap();
    let mut backoff = Backoff::new(&config);
    for _ in 0..3 {
        assert!(backoff.next_delay() > Duration::from_secs(1));
    }
}

#[test]
fn config_defaults_match_the_collector_except_max_elapsed_time() {
    let parsed: RetryConfig = serde_yaml::from_str("{}").unwrap();
    assert_eq!(parsed, RetryConfig::default());
    assert!(parsed.enabled);
    assert_eq!(parsed.initial_interval, Duration::from_secs(5));
    assert_eq!(parsed.max_interval, Duration::from_secs(30));
    assert_eq!(parsed.max_elapsed_time, Duration::ZERO);
    assert_eq!(parsed.multiplier, 1.5);
    assert_eq!(parsed.randomization_factor, 0.5);
    parsed.validate().unwrap();

    let parsed: RetryConfig =
        serde_yaml::from_str("initial_interval: 250ms\nmax_elapsed_time: 10m").unwrap();
    assert_eq!(parsed.initial_interval, Duration::from_millis(250));
    assert_eq!(parsed.max_elapsed_time, Duration::from_secs(600));

    assert!(serde_yaml::from_str::<RetryConfig>("max_retries: 3").is_err());
}

#[test]
fn validate_names_the_wrong_field() {
    let cases = [
        ("initial_interval: 0s", "initial_interval"),
        ("initial_interval: 1m\nmax_interval: 30s", "max_interval"),
        ("max_elapsed_time: 1s", "max_elapsed_time"),
        ("multiplier: 0.5", "multiplier"),
        ("multiplier: .nan", "multiplier"),
        ("randomization_factor: 1.5", "randomization_factor"),
        ("randomization_factor: -0.1", "randomization_factor"),
    ];
    for (yaml, field) in cases {
        let config: RetryConfig = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(config.validate().unwrap_err().field, field, "{yaml}");
    }
}

struct PartlyRejecting;

#[async_trait]
impl Exporter for PartlyRejecting {
    async fn send(&self, _batch: &Batch) -> Result<Accepted, ExportError> {
        Ok(Accepted { rejected_items: 3 })
    }
}

#[tokio::test]
async fn partial_success_counts_only_accepted_items_as_sent() {
    let recorder = TestRecorder::default();
    let _guard = recorder.install();
    let handle = ExporterHandle {
        id: "otlp/test".to_string(),
        exporter: Arc::new(PartlyRejecting),
        retry: RetryConfig::default(),
        slots: None,
    };
    let outcome = send_with_retry(&handle, &batch(), &CancellationToken::new()).await;
    assert!(matches!(outcome, RetryOutcome::Sent));
    assert_eq!(
        recorder.counter("sluice_exporter_sent_items_total", LABELS),
        4
    );
    let failed: Vec<(&str, &str)> = LABELS
        .iter()
        .copied()
        .chain([("reason", "partial_success")])
        .collect();
    assert_eq!(
        recorder.counter("sluice_exporter_failed_items_total", &failed),
        3
    );
}
