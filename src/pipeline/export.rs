//! The export half of a pipeline: one worker per tenant+signal buffer stream, so a tenant
//! whose backend is slow or down only ever holds up its own stream.
//!
//! A worker reads a delivery, offers it to every exporter of the pipeline (each with the
//! shared retry machinery), and only then acknowledges it to the buffer. A permanent failure
//! moves the delivery to the dead-letter store instead; it is never dropped.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::batch::Batch;
use crate::buffer::{BufferStream, Delivery, GaveUp, ReadLimits};
use crate::error::error_chain;
use crate::exporter::retry::{send_with_retry, RetryOutcome};
use crate::exporter::ExporterHandle;
use crate::processor::{run_all, BatchProcessor};
use crate::telemetry::tenant_label;

/// What the workers of one pipeline share.
pub struct ExportPlan {
    pub pipeline: String,
    pub exporters: Vec<ExporterHandle>,
    pub limits: ReadLimits,
    /// Data-changing processors, only for export-only pipelines (otherwise they ran at ingest).
    pub processors: Vec<Arc<dyn BatchProcessor>>,
}

/// Pause after a buffer read error before trying again, so a failing disk does not spin.
const READ_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Starts a worker for every stream the buffer announces, until `stop`.
pub fn spawn_dispatcher(
    plan: Arc<ExportPlan>,
    mut streams: mpsc::UnboundedReceiver<Box<dyn BufferStream>>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    let workers = tracker.clone();
    tracker.spawn(async move {
        loop {
            let stream = tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                s = streams.recv() => match s {
                    Some(s) => s,
                    None => return,
                },
            };
            tracing::debug!(pipeline = %plan.pipeline, tenant = %stream.tenant(), signal = %stream.signal(), "export worker started");
            workers.spawn(run_worker(plan.clone(), stream, stop.clone()));
        }
    });
}

async fn run_worker(
    plan: Arc<ExportPlan>,
    mut stream: Box<dyn BufferStream>,
    stop: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            next = stream.next(&plan.limits) => next,
        };
        let delivery = match next {
            Ok(Some(d)) => d,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(tenant = %stream.tenant(), signal = %stream.signal(), error = %error_chain(&e), "buffer read failed");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(READ_ERROR_PAUSE) => continue,
                }
            }
        };
        if !deliver(&plan, stream.as_mut(), delivery, &stop).await {
            return;
        }
    }
}

/// Exports one delivery and settles it with the buffer. Returns false when shutting down.
async fn deliver(
    plan: &ExportPlan,
    stream: &mut dyn BufferStream,
    delivery: Delivery,
    stop: &CancellationToken,
) -> bool {
    let batch = &delivery.batch;
    let tenant = tenant_label(&batch.tenant);
    if delivery.redelivered {
        metrics::counter!("sluice_redelivered_items_total", "signal" => batch.signal.as_str(), "tenant" => tenant.clone())
            .increment(u64::from(batch.items));
    }
    let mut permanent = Vec::new();
    let mut exhausted = Vec::new();
    // Cloning a batch clones a reference to its bytes, not the bytes.
    let outcomes = match run_all(&plan.processors, batch.clone()) {
        Ok(to_send) => {
            let sends = plan
                .exporters
                .iter()
                .map(|h| send_with_retry(h, &to_send, stop));
            futures::future::join_all(sends).await
        }
        Err(e) => {
            permanent.push(format!("processors: {}", error_chain(&e)));
            Vec::new()
        }
    };
    for (handle, outcome) in plan.exporters.iter().zip(outcomes) {
        match outcome {
            RetryOutcome::Sent => {}
            // Not acknowledged: the delivery stays in the buffer and comes back after restart.
            RetryOutcome::Cancelled => return false,
            RetryOutcome::Permanent(e) => {
                permanent.push(format!("{}: {}", handle.id, error_chain(&e)))
            }
            RetryOutcome::RetriesExhausted(e) => {
                exhausted.push(format!("{}: {}", handle.id, error_chain(&e)))
            }
        }
    }

    let settled = if permanent.is_empty() && exhausted.is_empty() {
        stream.ack(&delivery).await
    } else if permanent.is_empty() {
        let reason = exhausted.join("; ");
        tracing::warn!(tenant = %batch.tenant, signal = %batch.signal, items = batch.items, %reason, "export retries exhausted; handing back to the buffer");
        stream.give_up(&delivery, &reason).await.map(|gave_up| {
            if gave_up == GaveUp::DeadLettered {
                count_dead_letters(batch, &tenant);
            }
        })
    } else {
        // One permanent failure decides: retrying can never make that exporter accept it.
        permanent.extend(exhausted);
        let reason = permanent.join("; ");
        tracing::warn!(tenant = %batch.tenant, signal = %batch.signal, items = batch.items, %reason, "export failed permanently; moving to dead letters");
        stream
            .dead_letter(&delivery, &reason)
            .await
            .map(|()| count_dead_letters(batch, &tenant))
    };
    if let Err(e) = settled {
        // The persisted position did not move, so the delivery is offered again after a
        // restart: a duplicate at worst, never a loss.
        tracing::error!(tenant = %batch.tenant, signal = %batch.signal, error = %error_chain(&e), "could not settle delivery with the buffer");
    }
    true
}

fn count_dead_letters(batch: &Batch, tenant: &str) {
    metrics::counter!("sluice_dead_lettered_items_total", "signal" => batch.signal.as_str(), "tenant" => tenant.to_string())
        .increment(u64::from(batch.items));
}
