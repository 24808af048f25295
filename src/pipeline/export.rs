//! The export half of a pipeline: one worker per tenant+signal buffer stream, so a tenant
//! whose backend is slow or down only ever holds up its own stream.
//!
//! A worker reads a delivery, offers it to every exporter of the pipeline (each with the
//! shared retry machinery), and only then acknowledges it to the buffer. A permanent failure
//! moves the delivery to the dead-letter store instead; it is never dropped. Where the buffer
//! allows it, a worker keeps several deliveries in flight and settles them in read order.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesOrdered, StreamExt};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::batch::{now_ms, Batch};
use crate::buffer::{BufferError, BufferStream, Delivery, GaveUp, ReadLimits};
use crate::error::error_chain;
use crate::exporter::retry::{send_observed, RetryOutcome};
use crate::exporter::{ExportError, ExporterHandle};
use crate::pipeline::control::ExportControl;
use crate::processor::{Chain, ProcessError};
use crate::telemetry::tenant_label;
use crate::telemetry::traces::{self, Span, SpanContext, SpanKind};
use crate::telemetry::usage::{usage, TenantCounters};
use crate::tenant::limits::LimitsConfig;

/// What the workers of one pipeline share.
pub struct ExportPlan {
    pub pipeline: String,
    pub exporters: Vec<ExporterHandle>,
    pub limits: ReadLimits,
    /// Data-changing processors, only for export-only pipelines (otherwise they ran at ingest).
    pub processors: Chain,
    /// Each tenant's `buffer_max_age`: older data is dead-lettered instead of retried on.
    pub tenant_limits: Arc<LimitsConfig>,
    /// Exports paused by an operator: a paused stream reads nothing new.
    pub control: Arc<ExportControl>,
}

/// A pipeline's current plan. A config reload replaces it; each worker takes the current one
/// for every delivery it reads, and settles that delivery with the plan it was sent with.
pub struct PlanSlot(std::sync::RwLock<Arc<ExportPlan>>);

impl PlanSlot {
    pub fn new(plan: ExportPlan) -> PlanSlot {
        PlanSlot(std::sync::RwLock::new(Arc::new(plan)))
    }

    pub fn current(&self) -> Arc<ExportPlan> {
        Arc::clone(
            &self
                .0
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    pub fn replace(&self, plan: ExportPlan) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(plan);
    }
}

/// Pause after a buffer read error before trying again, so a failing disk does not spin.
const READ_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Starts a worker for every stream the buffer announces, until `stop`.
pub fn spawn_dispatcher(
    plan: Arc<PlanSlot>,
    mut streams: mpsc::UnboundedReceiver<Box<dyn BufferStream>>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    let workers = tracker.clone();
    let read_ahead = Arc::new(Semaphore::new(READ_AHEAD_PER_PIPELINE));
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
            tracing::debug!(pipeline = %plan.current().pipeline, tenant = %stream.tenant(), signal = %stream.signal(), "export worker started");
            workers.spawn(run_worker(
                plan.clone(),
                stream,
                Arc::clone(&read_ahead),
                stop.clone(),
            ));
        }
    });
}

/// Deliveries of one stream exported at the same time, at most, for buffers whose `next` may
/// be abandoned halfway. More than one lets the next read overlap with the backend's answer
/// to the previous delivery, which otherwise caps a stream at one round trip per delivery.
/// Results are settled in read order, so a buffer whose ack covers everything before a
/// position never skips an unsettled delivery. Eight, not four: at saturation with large
/// requests four left the export behind intake, its backlog the end-to-end p99
/// (docs/performance.md, "What changed" 16).
const IN_FLIGHT_PER_STREAM: usize = 8;

/// Deliveries beyond each stream's first that the workers of one pipeline may have in flight
/// together. Each stream always has one; read-ahead is shared, so a pipeline's memory in
/// flight is bounded by its streams plus this, not by its streams times
/// `IN_FLIGHT_PER_STREAM` (hundreds of tenants with a backlog after an outage). Two streams
/// at saturation still each reach the per-stream depth, with two to spare.
const READ_AHEAD_PER_PIPELINE: usize = 16;

/// A delivery and what each exporter of the pipeline made of it (in the order of
/// `ExportPlan::exporters`), or why it could not be sent at all.
struct Exported {
    /// The plan it was sent with: its exporters are the ones `outcomes` speak of.
    plan: Arc<ExportPlan>,
    delivery: Delivery,
    outcomes: Result<Vec<RetryOutcome>, NotSent>,
    /// The consumer span of Sluice's own trace, ended once the delivery is settled.
    span: Option<Span>,
    /// The pipeline's read-ahead this delivery holds, if it was read beside others in flight;
    /// given back once it is settled.
    read_ahead: Option<OwnedSemaphorePermit>,
}

/// Why a delivery goes to the dead letters without every exporter's verdict.
#[derive(Debug, thiserror::Error)]
enum NotSent {
    #[error("processors")]
    Processors(#[from] ProcessError),
    /// Older than the tenant's `buffer_max_age` before every exporter took it.
    #[error("older than the tenant's buffer_max_age of {max:?}")]
    Expired { max: Duration },
}

/// What a worker turn ended with.
enum Turn {
    Read(Result<Option<Delivery>, BufferError>),
    /// The oldest delivery in flight finished.
    Finished(Exported),
    /// An operator paused or resumed something.
    Control,
    Stop,
}

async fn run_worker(
    slot: Arc<PlanSlot>,
    mut stream: Box<dyn BufferStream>,
    read_ahead: Arc<Semaphore>,
    stop: CancellationToken,
) {
    let cancel_safe = stream.next_is_cancel_safe();
    // A `next` that is not cancel-safe cannot run beside sends in flight: a send finishing
    // meanwhile could only be settled once `next` returns, which may be long after.
    let depth = if cancel_safe { IN_FLIGHT_PER_STREAM } else { 1 };
    let mut in_flight = FuturesOrdered::new();
    // Receive times of the deliveries in flight, in read order: the first is the oldest
    // item not yet exported, the lag the usage table reports.
    let mut waiting: VecDeque<u64> = VecDeque::new();
    let usage = usage().tenant(stream.tenant(), stream.signal());
    let mut control = slot.current().control.subscribe();
    let mut paused = false;
    // A delivery read just as its stream was paused: exported once it is resumed.
    let mut parked: Option<(Delivery, Option<OwnedSemaphorePermit>)> = None;
    // The read-ahead taken for the next read, while other deliveries are in flight.
    let mut ahead: Option<OwnedSemaphorePermit> = None;
    loop {
        let plan = slot.current();
        let now_paused = control
            .borrow_and_update()
            .is_paused(stream.tenant(), stream.signal());
        if now_paused != paused {
            paused = now_paused;
            let state = if paused { "paused" } else { "resumed" };
            tracing::info!(pipeline = %plan.pipeline, tenant = %stream.tenant(), signal = %stream.signal(), "export {state} by an operator");
        }
        if !paused {
            if let Some((delivery, permit)) = parked.take() {
                if stream.purged(&delivery) {
                    // Purged while it waited: acknowledged (a no-op for what is gone), never sent.
                    if let Err(e) = stream.ack(&delivery).await {
                        tracing::warn!(tenant = %stream.tenant(), signal = %stream.signal(), error = %error_chain(&e), "cannot settle a purged delivery");
                    }
                    waiting.pop_back();
                    usage.set_oldest_unexported(waiting.front().copied());
                } else {
                    in_flight.push_back(export(Arc::clone(&plan), delivery, permit, &stop));
                }
            }
        }
        // `next` runs beside sends in flight, or beside a pause, only when it is cancel-safe
        // (depth > 1), so it may be dropped to settle a send that finished. A paused stream
        // settles what it sent and reads nothing more; one whose `next` may not be dropped
        // sees the pause when that read returns.
        let mut reading = in_flight.len() < depth && !paused && parked.is_none();
        if in_flight.is_empty() {
            // A stream's first delivery needs none of the shared read-ahead.
            ahead = None;
        } else if reading && ahead.is_none() {
            // Not waited for: without it the stream goes on with what it has in flight.
            ahead = Arc::clone(&read_ahead).try_acquire_owned().ok();
            reading = ahead.is_some();
        }
        let turn = tokio::select! {
            biased;
            _ = stop.cancelled() => Turn::Stop,
            Some(done) = in_flight.next(), if !in_flight.is_empty() => Turn::Finished(done),
            Ok(()) = control.changed(), if cancel_safe || !reading => Turn::Control,
            read = stream.next(&plan.limits), if reading => Turn::Read(read),
        };
        match turn {
            Turn::Control => {}
            Turn::Read(Ok(Some(delivery)))
                if control.borrow().is_paused(stream.tenant(), stream.signal()) =>
            {
                waiting.push_back(delivery.batch.received_at_ms);
                usage.set_oldest_unexported(waiting.front().copied());
                parked = Some((delivery, ahead.take()));
            }
            Turn::Finished(done) => {
                if !settle(stream.as_mut(), &usage, done).await {
                    return;
                }
                waiting.pop_front();
                usage.set_oldest_unexported(waiting.front().copied());
            }
            Turn::Read(Ok(Some(delivery))) => {
                waiting.push_back(delivery.batch.received_at_ms);
                usage.set_oldest_unexported(waiting.front().copied());
                in_flight.push_back(export(Arc::clone(&plan), delivery, ahead.take(), &stop));
            }
            Turn::Read(Err(e)) => {
                tracing::error!(tenant = %stream.tenant(), signal = %stream.signal(), error = %error_chain(&e), "buffer read failed");
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = tokio::time::sleep(READ_ERROR_PAUSE) => {}
                }
            }
            Turn::Read(Ok(None)) | Turn::Stop => {
                // Settle, in order, what the exporters answer before they see the shutdown.
                while let Some(done) = in_flight.next().await {
                    if !settle(stream.as_mut(), &usage, done).await {
                        return;
                    }
                }
                return;
            }
        }
    }
}

/// Offers one delivery to every exporter of the pipeline, each with the shared retry.
async fn export(
    plan: Arc<ExportPlan>,
    delivery: Delivery,
    read_ahead: Option<OwnedSemaphorePermit>,
    stop: &CancellationToken,
) -> Exported {
    let batch = &delivery.batch;
    if delivery.redelivered {
        metrics::counter!("sluice_redelivered_items_total", "signal" => batch.signal.as_str(), "tenant" => tenant_label(&batch.tenant))
            .increment(u64::from(batch.items));
    }
    // How long the delivery may still wait for its backends (`buffer_max_age`): the receive
    // time is wall-clock milliseconds, stamped by the receiver.
    let max_age = plan.tenant_limits.buffer_max_age(&batch.tenant);
    let left = max_age.map(|max| {
        let age = Duration::from_millis(now_ms().saturating_sub(batch.received_at_ms));
        (max, max.saturating_sub(age))
    });
    let span = process_span(&delivery);
    let parent = span.as_ref().map(Span::context);
    // Cloning a batch clones a reference to its bytes, not the bytes.
    let outcomes = match plan.processors.run(batch.clone()) {
        Ok(parts) => {
            let sends = plan
                .exporters
                .iter()
                .map(|h| traced_send(h, &parts, stop, parent));
            let all = futures::future::join_all(sends);
            match left {
                Some((max, left)) => tokio::time::timeout(left, all)
                    .await
                    .map_err(|_| NotSent::Expired { max }),
                None => Ok(all.await),
            }
        }
        Err(e) => Err(NotSent::from(e)),
    };
    Exported {
        plan,
        delivery,
        outcomes,
        span,
        read_ahead,
    }
}

/// The consumer span of a delivery (docs/contracts.md, "Own traces"): a child of the first
/// sampled context among its records', linked to every one of them, since a delivery merged
/// from several records has several parents.
fn process_span(delivery: &Delivery) -> Option<Span> {
    if !traces::enabled() {
        return None;
    }
    let parents: Vec<SpanContext> = delivery
        .traceparents
        .iter()
        .filter_map(|t| SpanContext::parse(t))
        .collect();
    let parent = parents.iter().find(|p| p.sampled()).or(parents.first());
    let batch = &delivery.batch;
    let mut span = traces::start(
        format!("process {}", batch.signal),
        SpanKind::Consumer,
        parent,
        &parents,
    )?;
    span.set("messaging.operation.type", "process");
    span.set(
        "messaging.destination.name",
        format!("{}/{}", batch.signal, batch.tenant),
    );
    span.set("messaging.batch.message_count", delivery.records);
    span.set("sluice.tenant", batch.tenant.as_str());
    span.set("sluice.items", batch.items);
    span.set("sluice.redelivered", delivery.redelivered);
    Some(span)
}

/// [`send_parts`] in a client span of its own.
async fn traced_send(
    handle: &ExporterHandle,
    parts: &[Batch],
    stop: &CancellationToken,
    parent: Option<SpanContext>,
) -> RetryOutcome {
    let mut span = traces::child(format!("export {}", handle.id), SpanKind::Client, parent);
    let outcome = send_parts(handle, parts, stop, span.as_mut()).await;
    if let Some(mut span) = span {
        span.set("sluice.exporter", handle.id.as_str());
        match &outcome {
            RetryOutcome::Sent => span.set("sluice.outcome", "sent"),
            RetryOutcome::Cancelled => span.set("sluice.outcome", "cancelled"),
            RetryOutcome::Permanent(e) | RetryOutcome::RetriesExhausted(e) => {
                span.set("sluice.outcome", e.reason());
                span.fail(error_chain(e));
            }
        }
    }
    outcome
}

/// Sends what the processors kept of a delivery (usually one batch; none when they dropped
/// it all) through one exporter. The first part that is not sent decides the outcome. Each
/// retry is an event of `span`, when there is one.
pub(super) async fn send_parts(
    handle: &ExporterHandle,
    parts: &[Batch],
    stop: &CancellationToken,
    mut span: Option<&mut Span>,
) -> RetryOutcome {
    for part in parts {
        let mut on_retry = |retry: u64, error: &ExportError, delay: Duration| {
            if let Some(span) = span.as_deref_mut() {
                span.event(
                    "retry",
                    vec![
                        ("retry", retry.into()),
                        ("reason", error.reason().into()),
                        ("error", error_chain(error).into()),
                        (
                            "delay_ms",
                            u64::try_from(delay.as_millis()).unwrap_or(u64::MAX).into(),
                        ),
                    ],
                );
            }
        };
        match send_observed(handle, part, stop, &mut on_retry).await {
            RetryOutcome::Sent => {}
            other => return other,
        }
    }
    RetryOutcome::Sent
}

/// Settles an exported delivery with the buffer: ack, give up, or dead-letter. Returns false
/// when an export was cancelled by shutdown; nothing after it may then be settled.
async fn settle(stream: &mut dyn BufferStream, usage: &TenantCounters, exported: Exported) -> bool {
    // The read-ahead is given back when this returns, once the delivery is settled.
    let Exported {
        plan,
        delivery,
        outcomes,
        span,
        read_ahead: _read_ahead,
    } = exported;
    let batch = &delivery.batch;
    let mut permanent = Vec::new();
    let mut exhausted = Vec::new();
    match outcomes {
        Ok(outcomes) => {
            for (handle, outcome) in plan.exporters.iter().zip(outcomes) {
                match outcome {
                    RetryOutcome::Sent => {}
                    // Not acknowledged: the delivery stays in the buffer and comes back later.
                    RetryOutcome::Cancelled => return false,
                    RetryOutcome::Permanent(e) => {
                        permanent.push(format!("{}: {}", handle.id, error_chain(&e)))
                    }
                    RetryOutcome::RetriesExhausted(e) => {
                        exhausted.push(format!("{}: {}", handle.id, error_chain(&e)))
                    }
                }
            }
        }
        Err(e) => permanent.push(error_chain(&e)),
    }

    let mut settle_span = traces::child(
        "settle",
        SpanKind::Internal,
        span.as_ref().map(Span::context),
    );
    let settled = if permanent.is_empty() && exhausted.is_empty() {
        note(&mut settle_span, "ack");
        stream
            .ack(&delivery)
            .await
            .map(|()| usage.exported(batch.items))
    } else if permanent.is_empty() {
        let reason = exhausted.join("; ");
        tracing::warn!(tenant = %batch.tenant, signal = %batch.signal, items = batch.items, %reason, "export retries exhausted; handing back to the buffer");
        stream.give_up(&delivery, &reason).await.map(|gave_up| {
            if gave_up == GaveUp::DeadLettered {
                note(&mut settle_span, "dead_letter");
                count_dead_letters(batch, usage);
            } else {
                note(&mut settle_span, "redeliver");
            }
        })
    } else {
        note(&mut settle_span, "dead_letter");
        // One permanent failure decides: retrying can never make that exporter accept it.
        permanent.extend(exhausted);
        let reason = permanent.join("; ");
        tracing::warn!(tenant = %batch.tenant, signal = %batch.signal, items = batch.items, %reason, "export failed permanently; moving to dead letters");
        stream
            .dead_letter(&delivery, &reason)
            .await
            .map(|()| count_dead_letters(batch, usage))
    };
    if let Err(e) = settled {
        if let Some(span) = &mut settle_span {
            span.fail(error_chain(&e));
        }
        // The persisted position did not move, so the delivery is offered again after a
        // restart: a duplicate at worst, never a loss.
        tracing::error!(tenant = %batch.tenant, signal = %batch.signal, error = %error_chain(&e), "could not settle delivery with the buffer");
    }
    true
}

/// Records how a delivery was settled on its settle span, if it has one.
fn note(span: &mut Option<Span>, settled: &'static str) {
    if let Some(span) = span {
        span.set("sluice.settle", settled);
    }
}

fn count_dead_letters(batch: &Batch, usage: &TenantCounters) {
    usage.dead_lettered(batch.items);
    metrics::counter!("sluice_dead_lettered_items_total", "signal" => batch.signal.as_str(), "tenant" => tenant_label(&batch.tenant))
        .increment(u64::from(batch.items));
}

#[cfg(test)]
mod tests;
