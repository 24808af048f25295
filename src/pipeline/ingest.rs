//! The ingest half of a pipeline: tenant resolution, limits, processors, then a durable
//! append per tenant. A receiver hands every decoded-from-transport request here and answers
//! its client with whatever this returns (docs/architecture.md, "Ingest").

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderMap;

use crate::batch::{now_ms, Batch};
use crate::buffer::{Amount, Buffer, BufferError};
use crate::otlp::walk;
use crate::pipeline::tap::taps;
use crate::processor::memory_limiter::{MemoryLimited, MemoryLimiter};
use crate::processor::{Chain, ProcessError};
use crate::signal::Signal;
use crate::telemetry::tenant_label;
use crate::telemetry::traces::{self, Span, SpanContext, SpanKind};
use crate::telemetry::usage::usage;
use crate::tenant::limits::{Admission, LimitExceeded, Limiter};
use crate::tenant::{ResolveError, TenantId, TenantResolver};

/// Why the pipeline refused a request. Receivers map it to their transport's status codes
/// (`ReceiveError`), in one place.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Tenant(#[from] ResolveError),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Limited(#[from] LimitExceeded),
    #[error("no pipeline takes {0} from this receiver")]
    NoPipeline(Signal),
    #[error(transparent)]
    MemoryLimited(#[from] MemoryLimited),
    #[error(
        "buffer is full ({used_bytes} of {cap_bytes} bytes in use); retry after {retry_after:?}"
    )]
    BufferFull {
        used_bytes: u64,
        cap_bytes: u64,
        retry_after: Duration,
    },
    /// The tenant holds its share of the buffer; other tenants are still accepted.
    #[error("tenant {tenant} holds its share of the buffer ({held} of {share}); retry after {retry_after:?}")]
    TenantBufferFull {
        tenant: TenantId,
        held: Amount,
        share: Amount,
        retry_after: Duration,
    },
    #[error("buffer refused the data")]
    Buffer(#[source] BufferError),
}

impl IngestError {
    /// Fixed label for `sluice_receiver_refused_*{reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            IngestError::Tenant(ResolveError::Malformed(_)) => "malformed",
            IngestError::Tenant(ResolveError::NoTenant { .. }) => "no_tenant",
            IngestError::Tenant(ResolveError::Unauthenticated(_)) => "unauthenticated",
            IngestError::Tenant(ResolveError::PermissionDenied { .. }) => "permission_denied",
            IngestError::Tenant(_) => "invalid_tenant",
            IngestError::Limited(e) => e.reason(),
            IngestError::Process(_) => "malformed",
            IngestError::NoPipeline(_) => "no_pipeline",
            IngestError::MemoryLimited(_) => "memory_limited",
            IngestError::BufferFull { .. } => "buffer_full",
            IngestError::TenantBufferFull { .. } => "tenant_buffer_full",
            IngestError::Buffer(BufferError::RecordTooLarge { .. }) => "too_large",
            IngestError::Buffer(BufferError::TenantNameConflict { .. }) => "invalid_tenant",
            IngestError::Buffer(_) => "buffer_unavailable",
        }
    }
}

impl From<BufferError> for IngestError {
    fn from(e: BufferError) -> Self {
        match e {
            BufferError::Full {
                used_bytes,
                cap_bytes,
                retry_after,
            } => IngestError::BufferFull {
                used_bytes,
                cap_bytes,
                retry_after,
            },
            BufferError::TenantFull {
                tenant,
                held,
                share,
                retry_after,
            } => IngestError::TenantBufferFull {
                tenant,
                held,
                share,
                retry_after,
            },
            other => IngestError::Buffer(other),
        }
    }
}

/// What the client sent for one tenant, before processors.
struct Part {
    tenant: TenantId,
    items: u32,
    bytes: usize,
}

/// `tenant` label of items refused before a tenant could be assigned. The leading underscore
/// keeps it apart from every valid tenant id.
pub const UNKNOWN_TENANT: &str = "_unknown";

/// Where one signal goes: the buffer of the pipeline fed by the receiver.
#[derive(Clone)]
pub struct Route {
    pub buffer: Arc<dyn Buffer>,
    /// Data-changing processors of the pipeline, applied to each tenant's part.
    pub processors: Chain,
    /// Checks that may refuse a request before anything is stored (`memory_limiter`).
    pub guards: Vec<Arc<MemoryLimiter>>,
}

/// What one receiver's requests go through: tenancy, limits and the route of each signal.
/// Built from the config; a reload builds a new one and swaps it in.
pub struct IngestState {
    resolver: Arc<TenantResolver>,
    limiter: Arc<Limiter>,
    routes: [Option<Route>; 3],
}

impl IngestState {
    pub fn new(resolver: Arc<TenantResolver>, limiter: Arc<Limiter>) -> Self {
        IngestState {
            resolver,
            limiter,
            routes: [None, None, None],
        }
    }

    pub fn set_route(&mut self, signal: Signal, route: Route) {
        self.routes[signal as usize] = Some(route);
    }

    pub fn accepts(&self, signal: Signal) -> bool {
        self.routes[signal as usize].is_some()
    }
}

/// Shared by all connections of one receiver. Each request runs with the state current when
/// it arrives, so a reload never changes a request halfway.
pub struct Ingest {
    state: std::sync::RwLock<Arc<IngestState>>,
}

impl Ingest {
    pub fn new(state: IngestState) -> Self {
        Ingest {
            state: std::sync::RwLock::new(Arc::new(state)),
        }
    }

    fn current(&self) -> Arc<IngestState> {
        Arc::clone(
            &self
                .state
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Takes `state` for the requests that arrive from now on.
    pub fn replace(&self, state: IngestState) {
        *self
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(state);
    }

    pub fn accepts(&self, signal: Signal) -> bool {
        self.current().accepts(signal)
    }

    /// Resolves tenants, appends every tenant's part durably, and returns the items accepted.
    /// Refusals are counted here, in one place, whatever the transport.
    pub async fn accept(
        &self,
        transport: &'static str,
        signal: Signal,
        payload: Bytes,
        headers: &HeaderMap,
    ) -> Result<u32, IngestError> {
        let started = Instant::now();
        let result = self
            .current()
            .store(transport, signal, payload, headers)
            .await;
        match &result {
            Ok(_) => metrics::histogram!("sluice_receiver_durable_latency_seconds", "transport" => transport, "signal" => signal.as_str())
                .record(started.elapsed().as_secs_f64()),
            Err(e) => count_refused_request(transport, signal, e.reason(), e),
        }
        result
    }
}

impl IngestState {
    async fn store(
        &self,
        transport: &'static str,
        signal: Signal,
        payload: Bytes,
        headers: &HeaderMap,
    ) -> Result<u32, IngestError> {
        let Some(route) = &self.routes[signal as usize] else {
            return Err(IngestError::NoPipeline(signal));
        };
        let traceparent = headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut receive = receive_span(transport, signal, traceparent.as_deref(), headers);
        let received_at_ms = now_ms();
        let split_span = traces::child(
            "tenant split",
            SpanKind::Internal,
            receive.as_ref().map(Span::context),
        );
        let split = self.resolver.split(signal, payload.clone(), headers);
        drop(split_span);
        let parts = match split {
            Ok(parts) => parts,
            Err(e) => {
                let e = IngestError::from(e);
                // The request was readable but belongs to no acceptable tenant: its items can
                // still be counted, under a tenant label that no real tenant can have.
                if let Ok(entries) = walk::resource_entries(signal, &payload) {
                    let items: u64 = entries.iter().map(|e| u64::from(e.items)).sum();
                    metrics::counter!("sluice_receiver_refused_items_total", "transport" => transport, "signal" => signal.as_str(), "tenant" => UNKNOWN_TENANT, "reason" => e.reason())
                        .increment(items);
                }
                return Err(e);
            }
        };

        let batches: Vec<Batch> = parts
            .into_iter()
            .map(|part| Batch {
                tenant: part.tenant,
                signal,
                payload: part.payload.into(),
                items: part.items,
                received_at_ms,
                traceparent: traceparent.clone(),
            })
            .collect();

        // Short of memory: refuse before anything is stored, counting each tenant's items.
        if let Err(limited) = route.guards.iter().try_for_each(|g| g.check()) {
            let e = IngestError::from(limited);
            count_refused_items(transport, &batches, e.reason());
            return Err(e);
        }

        // Tenants' parts are appended concurrently; the client hears success only if all of
        // them are durable. A part that did land is not rolled back: the client's retry then
        // duplicates it, which at-least-once delivery allows.
        // Limits apply to what the client sent, before processors add to it. The admissions
        // hold the tenants' in-flight slots until the appends are done.
        let _admissions = self.admit(transport, &batches)?;
        // Each tenant's part goes through the processors, which may change, split or drop
        // it. Items they drop count as accepted: the client hears success for them.
        let mut parts = Vec::with_capacity(batches.len());
        for batch in batches {
            let part = Part {
                tenant: batch.tenant.clone(),
                items: batch.items,
                bytes: batch.payload.len(),
            };
            parts.push((part, route.processors.run(batch)?));
        }
        let receive_context = receive.as_ref().map(Span::context);
        let appends = parts.into_iter().map(|(part, kept)| {
            let buffer = route.buffer.clone();
            async move {
                let (mut items, mut bytes) = (0u32, 0usize);
                let tapped = taps().wants(&part.tenant, signal);
                for mut batch in kept {
                    let (n, len) = (batch.items, batch.payload.len());
                    let mut publish = publish_span(receive_context, buffer.kind(), &batch);
                    if let Some(span) = &publish {
                        // What the buffer stores with the batch: the exporting process
                        // continues this trace from it.
                        batch.traceparent = Some(span.context().to_string());
                    }
                    // A copy for a live tap, shown once it is durable (a clone of the bytes'
                    // handle, made only while a tap is open).
                    let copy = tapped.then(|| batch.clone());
                    if let Err(e) = buffer.append(batch).await {
                        if let Some(span) = &mut publish {
                            span.fail(crate::error::error_chain(&e));
                        }
                        return (part, Err(e));
                    }
                    if let Some(copy) = copy {
                        taps().offer(&copy);
                    }
                    items = items.saturating_add(n);
                    bytes = bytes.saturating_add(len);
                }
                (part, Ok((items, bytes)))
            }
        });
        let mut accepted = 0u32;
        let mut first_error = None;
        for (part, outcome) in futures::future::join_all(appends).await {
            let usage = usage().tenant(&part.tenant, signal);
            let tenant = tenant_label(&part.tenant);
            match outcome {
                Ok((stored_items, stored_bytes)) => {
                    accepted = accepted.saturating_add(part.items);
                    usage.accepted(part.items, part.bytes);
                    usage.stored(stored_items, stored_bytes);
                    metrics::counter!("sluice_receiver_accepted_items_total", "transport" => transport, "signal" => signal.as_str(), "tenant" => tenant.clone())
                        .increment(u64::from(part.items));
                    metrics::counter!("sluice_buffer_published_items_total", "buffer" => route.buffer.kind(), "signal" => signal.as_str(), "tenant" => tenant)
                        .increment(u64::from(stored_items));
                }
                Err(e) => {
                    let e = IngestError::from(e);
                    usage.refused(e.reason(), u64::from(part.items));
                    metrics::counter!("sluice_receiver_refused_items_total", "transport" => transport, "signal" => signal.as_str(), "tenant" => tenant, "reason" => e.reason())
                        .increment(u64::from(part.items));
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(span) = &mut receive {
            span.set("sluice.accepted_items", accepted);
            if let Some(e) = &first_error {
                span.fail(crate::error::error_chain(e));
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(accepted),
        }
    }
}

/// The span of one request's receipt (docs/contracts.md, "Own traces"): a child of the
/// client's `traceparent` when it sent one. Sluice's own spans are never traced again.
fn receive_span(
    transport: &'static str,
    signal: Signal,
    traceparent: Option<&str>,
    headers: &HeaderMap,
) -> Option<Span> {
    if !traces::enabled() || headers.contains_key(traces::OWN_TELEMETRY_HEADER) {
        return None;
    }
    let parent = traceparent.and_then(SpanContext::parse);
    let mut span = traces::start(
        format!("receive {signal}"),
        SpanKind::Server,
        parent.as_ref(),
        &[],
    )?;
    span.set("sluice.transport", transport);
    span.set("sluice.signal", signal.as_str());
    Some(span)
}

/// The producer span of one batch's append to the buffer.
fn publish_span(parent: Option<SpanContext>, buffer: &'static str, batch: &Batch) -> Option<Span> {
    let mut span = traces::child(
        format!("publish {}", batch.signal),
        SpanKind::Producer,
        parent,
    )?;
    span.set("messaging.system", buffer);
    span.set("messaging.operation.type", "send");
    span.set(
        "messaging.destination.name",
        format!("{}/{}", batch.signal, batch.tenant),
    );
    span.set("sluice.tenant", batch.tenant.as_str());
    span.set("messaging.batch.message_count", batch.items);
    Some(span)
}

impl IngestState {
    /// Admits every tenant's part, or none: a refused request is not partly charged.
    fn admit(
        &self,
        transport: &'static str,
        batches: &[Batch],
    ) -> Result<Vec<Admission>, IngestError> {
        let mut admitted = Vec::with_capacity(batches.len());
        for batch in batches {
            match self
                .limiter
                .admit(&batch.tenant, batch.items, batch.payload.len())
            {
                Ok(a) => admitted.push(a),
                Err(e) => {
                    admitted.into_iter().for_each(Admission::refund);
                    count_refused_items(transport, batches, e.reason());
                    return Err(e.into());
                }
            }
        }
        Ok(admitted)
    }
}

/// Counts the items of every tenant's part of a request refused whole, in the metrics and
/// the usage table.
fn count_refused_items(transport: &'static str, batches: &[Batch], reason: &'static str) {
    for b in batches {
        let items = u64::from(b.items);
        usage().tenant(&b.tenant, b.signal).refused(reason, items);
        metrics::counter!("sluice_receiver_refused_items_total", "transport" => transport, "signal" => b.signal.as_str(), "tenant" => tenant_label(&b.tenant), "reason" => reason)
            .increment(items);
    }
}

/// Counts a refused request. Used by receivers too, for refusals that happen before a request
/// reaches [`Ingest::accept`] (framing, size, decompression).
pub fn count_refused_request(
    transport: &'static str,
    signal: Signal,
    reason: &'static str,
    error: &dyn std::error::Error,
) {
    metrics::counter!("sluice_receiver_refused_requests_total", "transport" => transport, "signal" => signal.as_str(), "reason" => reason)
        .increment(1);
    tracing::debug!(transport, %signal, reason, error = %crate::error::error_chain(error), "refused request");
}
