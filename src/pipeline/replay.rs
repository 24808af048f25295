//! Where `sluice replay` sends what a buffer retained: through a pipeline's current
//! processors (for an export-only pipeline; otherwise they ran before the data was buffered)
//! and exporters, each with its retry, beside the live export of the same tenant and without
//! touching its position (docs/contracts.md, "Operations").

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::export::{send_parts, ExportPlan};
use crate::batch::Batch;
use crate::buffer::BufferError;
use crate::error::error_chain;
use crate::exporter::retry::RetryOutcome;
use crate::telemetry::tenant_label;
use crate::telemetry::usage::usage;

/// Sends one replayed batch to `exporters` of `plan` (every exporter when `None`), and counts
/// it as replayed once all took it. A batch an exporter does not take stops the replay: the
/// error says which exporter and why.
pub async fn replay_batch(
    plan: &ExportPlan,
    exporters: Option<&str>,
    batch: Batch,
) -> Result<(), BufferError> {
    let parts = plan.processors.run(batch.clone()).map_err(|e| {
        BufferError::Unsupported(format!(
            "the processors of pipeline {} refused a replayed batch: {}",
            plan.pipeline,
            error_chain(&e)
        ))
    })?;
    // A replay is the operator's request: it ends when its caller goes away, not at shutdown.
    let never = CancellationToken::new();
    for handle in plan
        .exporters
        .iter()
        .filter(|h| exporters.is_none_or(|id| h.id == id))
    {
        let why = match send_parts(handle, &parts, &never, None).await {
            RetryOutcome::Sent => continue,
            RetryOutcome::Permanent(e) | RetryOutcome::RetriesExhausted(e) => error_chain(&e),
            RetryOutcome::Cancelled => "cancelled".to_string(),
        };
        return Err(BufferError::Unavailable {
            what: format!(
                "exporter {} did not take a replayed batch: {why}",
                handle.id
            ),
            retry_after: std::time::Duration::ZERO,
            source: Box::new(std::io::Error::other(why)),
        });
    }
    usage()
        .tenant(&batch.tenant, batch.signal)
        .replayed(u64::from(batch.items));
    metrics::counter!("sluice_replayed_items_total", "signal" => batch.signal.as_str(), "tenant" => tenant_label(&batch.tenant))
        .increment(u64::from(batch.items));
    Ok(())
}

/// The pipelines whose exports an operator may replay into, by id.
pub type ReplayTargets = Vec<(String, Arc<super::export::PlanSlot>)>;
