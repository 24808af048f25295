//! Retry with exponential backoff, shared by every exporter.
//!
//! An exporter only says whether a failure is worth retrying ([`ExportError::Retryable`]);
//! [`send_with_retry`] owns the policy around it: backoff with jitter, the backend's
//! `retry_after` hint, the elapsed-time budget, cancellation on shutdown, and the exporter's
//! self-metrics. The data is safe in the durable buffer, so the default is to retry forever;
//! the caller dead-letters a batch whose outcome is [`RetryOutcome::Permanent`] or
//! [`RetryOutcome::RetriesExhausted`] and leaves it in the buffer on
//! [`RetryOutcome::Cancelled`], to be redelivered after a restart.

use std::time::Duration;

use rand::Rng;
use serde::Deserialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::batch::{now_ms, Batch};
use crate::config::FieldError;
use crate::error::error_chain;
use crate::exporter::{Accepted, ExportError, ExporterHandle};
use crate::telemetry::tenant_label;

#[cfg(test)]
mod tests;

/// The longest wait a backend's `retry_after` hint can impose. A hint above `max_interval`
/// is honoured (the backend knows best when it will have capacity), but a buggy or hostile
/// hint of hours must not park a tenant's stream.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(5 * 60);

/// `retry_on_failure`: how an exporter retries a batch the backend refused for a transient
/// reason. Same keys and defaults as the OpenTelemetry Collector's, except that
/// `max_elapsed_time` defaults to 0 (retry forever) because the batch waits in a durable
/// buffer, not in memory.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Retry retryable failures. When `false`, a retryable failure is handled like a batch
    /// whose retries are exhausted: it goes to the dead letters at once. Default `true`.
    pub enabled: bool,
    /// Wait before the first retry, e.g. `5s` (the default). Must be above zero.
    #[serde(with = "humantime_serde")]
    pub initial_interval: Duration,
    /// Upper bound of the computed wait between two retries, e.g. `30s` (the default).
    /// A backend's explicit `retry_after` hint may exceed it, up to 5 minutes.
    #[serde(with = "humantime_serde")]
    pub max_interval: Duration,
    /// Give up on a batch once this much time has passed since its first attempt; it then
    /// goes to the dead letters. `0` (the default) retries forever, which is safe because the
    /// batch stays in the durable buffer until the backend takes it.
    #[serde(with = "humantime_serde")]
    pub max_elapsed_time: Duration,
    /// Factor by which the wait grows after each retry. At least 1. Default `1.5`.
    pub multiplier: f64,
    /// Jitter: each wait is drawn uniformly from `interval * (1 ± randomization_factor)`, so
    /// exporters that failed together do not retry in lockstep. Between 0 and 1. Default `0.5`.
    pub randomization_factor: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            enabled: true,
            initial_interval: Duration::from_secs(5),
            max_interval: Duration::from_secs(30),
            max_elapsed_time: Duration::ZERO,
            multiplier: 1.5,
            randomization_factor: 0.5,
        }
    }
}

impl RetryConfig {
    /// Checks the values without side effects. Checked even when `enabled` is false, so a
    /// wrong value does not lie in wait for the day someone turns retries on.
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.initial_interval.is_zero() {
            return Err(FieldError::new(
                "initial_interval",
                "must be above zero, or a failing backend would be retried in a busy loop",
            ));
        }
        if self.max_interval < self.initial_interval {
            return Err(FieldError::new(
                "max_interval",
                format!(
                    "must not be below initial_interval ({:?})",
                    self.initial_interval
                ),
            ));
        }
        if !self.max_elapsed_time.is_zero() && self.max_elapsed_time < self.initial_interval {
            return Err(FieldError::new(
                "max_elapsed_time",
                "must be 0 (retry forever) or at least initial_interval",
            ));
        }
        if !self.multiplier.is_finite() || self.multiplier < 1.0 {
            return Err(FieldError::new(
                "multiplier",
                "must be a number of at least 1",
            ));
        }
        if !(0.0..=1.0).contains(&self.randomization_factor) {
            return Err(FieldError::new(
                "randomization_factor",
                "must be between 0 and 1",
            ));
        }
        Ok(())
    }
}

/// What became of a batch handed to [`send_with_retry`].
#[derive(Debug)]
pub enum RetryOutcome {
    /// The backend accepted it: ack the buffer.
    Sent,
    /// The backend can never accept it: dead-letter it.
    Permanent(ExportError),
    /// Still failing when the retry budget ran out (or retries are disabled): dead-letter it.
    RetriesExhausted(ExportError),
    /// Shutdown began: neither ack nor dead-letter, so the buffer redelivers it later.
    Cancelled,
}

// === Backoff ===

/// The exponential sequence of waits for one batch.
struct Backoff<'a> {
    config: &'a RetryConfig,
    /// The interval before jitter for the next wait.
    current: Duration,
}

impl<'a> Backoff<'a> {
    fn new(config: &'a RetryConfig) -> Self {
        Backoff {
            config,
            current: config.initial_interval,
        }
    }

    /// The next wait, jittered, and advances the sequence.
    fn next_delay(&mut self) -> Duration {
        let base = self.current.as_secs_f64();
        let spread = base * self.config.randomization_factor;
        let secs = if spread > 0.0 {
            rand::rng().random_range((base - spread)..=(base + spread))
        } else {
            base
        };
        let grown = base * self.config.multiplier;
        let max = self.config.max_interval.as_secs_f64();
        // `min` before converting: a long run of growth must not overflow `Duration`.
        self.current = to_duration(grown.min(max));
        to_duration(secs)
    }
}

/// Seconds to a `Duration`, saturating: absurd configured intervals (`1000000years`) with
/// jitter on top must not panic.
fn to_duration(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(Duration::MAX)
}

/// The wait before the next attempt. A backend hint replaces the computed backoff (the
/// backend knows when it will have room), capped at [`MAX_RETRY_AFTER`]; a zero hint is read
/// as "no preference", so it cannot turn into a busy loop.
fn delay_for(error: &ExportError, backoff: &mut Backoff<'_>) -> Duration {
    // Advance the sequence either way, so later unhinted waits keep growing.
    let computed = backoff.next_delay();
    match error {
        ExportError::Retryable {
            retry_after: Some(hint),
            ..
        } if !hint.is_zero() => (*hint).min(MAX_RETRY_AFTER),
        _ => computed,
    }
}

// === send_with_retry ===

/// Metric labels shared by every series this module records for one batch.
struct Labels {
    exporter: String,
    signal: &'static str,
    tenant: String,
}

/// What [`send_observed`] tells its caller of each retry: its number, the failure that
/// caused it, and the wait before it.
pub type OnRetry<'a> = &'a mut (dyn FnMut(u64, &ExportError, Duration) + Send);

/// Sends `batch` through `handle.exporter`, retrying retryable failures per `handle.retry`,
/// until it is accepted, fails permanently, exhausts its retry budget, or `shutdown` is
/// cancelled. Cancellation interrupts an in-flight send as well as a wait, and returns
/// [`RetryOutcome::Cancelled`] promptly.
pub async fn send_with_retry(
    handle: &ExporterHandle,
    batch: &Batch,
    shutdown: &CancellationToken,
) -> RetryOutcome {
    send_observed(handle, batch, shutdown, &mut |_, _, _| {}).await
}

/// [`send_with_retry`], telling `on_retry` of every retry (a trace's span records them).
pub async fn send_observed(
    handle: &ExporterHandle,
    batch: &Batch,
    shutdown: &CancellationToken,
    on_retry: OnRetry<'_>,
) -> RetryOutcome {
    let config = &handle.retry;
    let labels = Labels {
        exporter: handle.id.clone(),
        signal: batch.signal.as_str(),
        tenant: tenant_label(&batch.tenant),
    };
    let started = Instant::now();
    let mut backoff = Backoff::new(config);
    let mut retries: u64 = 0;

    loop {
        let attempt = async {
            // A slot of the exporter's `sending_queue` for this attempt only, not for the
            // wait before a retry (exporter::sending).
            let _slot = match &handle.slots {
                Some(slots) => Some(slots.acquire(&batch.tenant).await),
                None => None,
            };
            let attempt_started = Instant::now();
            let result = handle.exporter.send(batch).await;
            (result, attempt_started.elapsed())
        };
        let (result, took) = tokio::select! {
            // Biased: once shutdown begins, no new attempt starts.
            biased;
            _ = shutdown.cancelled() => return RetryOutcome::Cancelled,
            done = attempt => done,
        };
        metrics::histogram!(
            "sluice_exporter_send_duration_seconds",
            "exporter" => labels.exporter.clone(),
            "signal" => labels.signal,
            "tenant" => labels.tenant.clone(),
        )
        .record(took.as_secs_f64());

        let error = match result {
            Ok(accepted) => {
                record_sent(&labels, batch, accepted);
                return RetryOutcome::Sent;
            }
            Err(e @ ExportError::Permanent { .. }) => {
                record_failed(&labels, batch, &e);
                tracing::warn!(
                    exporter = %labels.exporter, tenant = %batch.tenant, signal = labels.signal,
                    items = batch.items, error = %error_chain(&e),
                    "backend refused the batch permanently"
                );
                return RetryOutcome::Permanent(e);
            }
            Err(e @ ExportError::Retryable { .. }) => e,
        };

        let delay = delay_for(&error, &mut backoff);
        let elapsed = started.elapsed();
        let over_budget = !config.max_elapsed_time.is_zero()
            && elapsed.saturating_add(delay) > config.max_elapsed_time;
        if !config.enabled || over_budget {
            record_failed(&labels, batch, &error);
            tracing::warn!(
                exporter = %labels.exporter, tenant = %batch.tenant, signal = labels.signal,
                items = batch.items, retries, elapsed = ?elapsed, error = %error_chain(&error),
                "giving up on the batch after retryable failures"
            );
            return RetryOutcome::RetriesExhausted(error);
        }

        retries += 1;
        on_retry(retries, &error, delay);
        metrics::counter!(
            "sluice_exporter_retries_total",
            "exporter" => labels.exporter.clone(),
            "signal" => labels.signal,
            "tenant" => labels.tenant.clone(),
        )
        .increment(1);
        // Warn on retries 1, 2, 4, 8, …: visible in a long outage without one line per wait.
        if retries.is_power_of_two() {
            tracing::warn!(
                exporter = %labels.exporter, tenant = %batch.tenant, signal = labels.signal,
                retry = retries, delay = ?delay, error = %error_chain(&error),
                "export failed, will retry"
            );
        } else {
            tracing::debug!(
                exporter = %labels.exporter, tenant = %batch.tenant, signal = labels.signal,
                retry = retries, delay = ?delay, error = %error_chain(&error),
                "export failed, will retry"
            );
        }

        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return RetryOutcome::Cancelled,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

fn record_sent(labels: &Labels, batch: &Batch, accepted: Accepted) {
    let rejected = accepted.rejected_items.min(u64::from(batch.items));
    metrics::counter!(
        "sluice_exporter_sent_items_total",
        "exporter" => labels.exporter.clone(),
        "signal" => labels.signal,
        "tenant" => labels.tenant.clone(),
    )
    .increment(u64::from(batch.items) - rejected);
    if rejected > 0 {
        metrics::counter!(
            "sluice_exporter_failed_items_total",
            "exporter" => labels.exporter.clone(),
            "signal" => labels.signal,
            "tenant" => labels.tenant.clone(),
            "reason" => "partial_success",
        )
        .increment(rejected);
    }
    // Wall clock, because `received_at_ms` was stamped by the receiver, maybe in another
    // process; saturating, so clock skew between hosts cannot record a negative latency.
    let latency_ms = now_ms().saturating_sub(batch.received_at_ms);
    metrics::histogram!(
        "sluice_export_latency_seconds",
        "exporter" => labels.exporter.clone(),
        "signal" => labels.signal,
        "tenant" => labels.tenant.clone(),
    )
    .record(latency_ms as f64 / 1000.0);
}

fn record_failed(labels: &Labels, batch: &Batch, error: &ExportError) {
    metrics::counter!(
        "sluice_exporter_failed_items_total",
        "exporter" => labels.exporter.clone(),
        "signal" => labels.signal,
        "tenant" => labels.tenant.clone(),
        "reason" => error.reason(),
    )
    .increment(u64::from(batch.items));
}
