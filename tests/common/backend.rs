//! An OTLP gRPC backend inside the test: it decodes what sluice forwards, records every
//! request with its `x-scope-orgid`, and answers per tenant as told (accept, or fail with a
//! given gRPC code).

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::metrics::v1::Metric;
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::codec::CompressionEncoding;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status};

use super::wait_for;

pub const TENANT_HEADER: &str = "x-scope-orgid";

/// One request the backend accepted, with the tenant header it carried.
#[derive(Clone, Debug)]
pub struct Received<T> {
    pub tenant: Option<String>,
    /// The `authorization` header it carried.
    pub authorization: Option<String>,
    pub request: T,
}

#[derive(Default)]
pub struct Recorded {
    pub traces: Vec<Received<ExportTraceServiceRequest>>,
    pub metrics: Vec<Received<ExportMetricsServiceRequest>>,
    pub logs: Vec<Received<ExportLogsServiceRequest>>,
    /// Requests answered with an error (tenant header, signal).
    pub refused: Vec<(Option<String>, &'static str)>,
    /// Requests of hanging tenants that arrived and are being held (tenant header).
    pub hanging: Vec<Option<String>>,
}

#[derive(Default)]
struct State {
    recorded: Mutex<Recorded>,
    /// Tenant -> the code every request of that tenant is answered with.
    failures: Mutex<HashMap<String, Code>>,
    /// Tenants whose requests are never answered (a hung backend).
    hanging: Mutex<std::collections::HashSet<String>>,
    /// Every request is answered UNAVAILABLE (a backend that is down).
    down: std::sync::atomic::AtomicBool,
    /// How long every request takes.
    latency: Mutex<Duration>,
    /// Requests being handled now, and the most there ever were at once.
    in_flight: Mutex<(usize, usize)>,
}

impl State {
    /// Never returns for a hanging tenant, like a backend that accepted the connection and
    /// then stopped answering.
    async fn hang_if_asked(&self, tenant: &Option<String>) {
        let hang = tenant
            .as_ref()
            .is_some_and(|t| self.hanging.lock().unwrap().contains(t));
        if hang {
            self.recorded.lock().unwrap().hanging.push(tenant.clone());
            std::future::pending::<()>().await;
        }
    }

    /// Admits (or refuses, or hangs on) a request, then keeps it in the list `list` picks.
    async fn record<T>(
        &self,
        signal: &'static str,
        request: Request<T>,
        list: impl FnOnce(&mut Recorded) -> &mut Vec<Received<T>>,
    ) -> Result<(), Status> {
        let _counted = InFlight::enter(self);
        let latency = *self.latency.lock().unwrap();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let tenant = self.admit(signal, &request)?;
        self.hang_if_asked(&tenant).await;
        let authorization = request
            .metadata()
            .get("authorization")
            .map(|v| v.to_str().unwrap_or("<non-ascii>").to_string());
        let request = request.into_inner();
        list(&mut self.recorded.lock().unwrap()).push(Received {
            tenant,
            authorization,
            request,
        });
        Ok(())
    }

    fn admit<T>(
        &self,
        signal: &'static str,
        request: &Request<T>,
    ) -> Result<Option<String>, Status> {
        let tenant = request
            .metadata()
            .get(TENANT_HEADER)
            .map(|v| v.to_str().unwrap_or("<non-ascii>").to_string());
        let failure = if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            Some(Code::Unavailable)
        } else {
            tenant
                .as_ref()
                .and_then(|t| self.failures.lock().unwrap().get(t).copied())
        };
        match failure {
            Some(code) => {
                self.recorded
                    .lock()
                    .unwrap()
                    .refused
                    .push((tenant.clone(), signal));
                Err(Status::new(
                    code,
                    format!("test backend refuses tenant {tenant:?}"),
                ))
            }
            None => Ok(tenant),
        }
    }
}

/// Counts a request as in flight until dropped.
struct InFlight<'a>(&'a State);

impl<'a> InFlight<'a> {
    fn enter(state: &'a State) -> Self {
        let mut n = state.in_flight.lock().unwrap();
        n.0 += 1;
        n.1 = n.1.max(n.0);
        InFlight(state)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.lock().unwrap().0 -= 1;
    }
}

#[derive(Clone)]
struct Svc(Arc<State>);

#[tonic::async_trait]
impl TraceService for Svc {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        self.0.record("traces", request, |r| &mut r.traces).await?;
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Svc {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        self.0
            .record("metrics", request, |r| &mut r.metrics)
            .await?;
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Svc {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        self.0.record("logs", request, |r| &mut r.logs).await?;
        Ok(Response::new(ExportLogsServiceResponse::default()))
    }
}

pub struct Backend {
    pub addr: SocketAddr,
    state: Arc<State>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Backend {
    /// On an ephemeral port.
    pub async fn start() -> Backend {
        Backend::start_on(0).await
    }

    /// On a chosen port (retries the bind for a few seconds, the port may be in TIME_WAIT).
    pub async fn start_on(port: u16) -> Backend {
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let listener = wait_for(
            "the backend port to bind",
            Duration::from_secs(10),
            || async {
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| e.to_string())
            },
        )
        .await;
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let svc = Svc(state.clone());
        const MAX: usize = 256 * 1024 * 1024;
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let result = tonic::transport::Server::builder()
                .add_service(
                    TraceServiceServer::new(svc.clone())
                        .accept_compressed(CompressionEncoding::Gzip)
                        .accept_compressed(CompressionEncoding::Zstd)
                        .max_decoding_message_size(MAX),
                )
                .add_service(
                    MetricsServiceServer::new(svc.clone())
                        .accept_compressed(CompressionEncoding::Gzip)
                        .accept_compressed(CompressionEncoding::Zstd)
                        .max_decoding_message_size(MAX),
                )
                .add_service(
                    LogsServiceServer::new(svc)
                        .accept_compressed(CompressionEncoding::Gzip)
                        .accept_compressed(CompressionEncoding::Zstd)
                        .max_decoding_message_size(MAX),
                )
                .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = result {
                eprintln!("test backend stopped with an error: {e}");
            }
        });
        Backend {
            addr,
            state,
            shutdown: Some(tx),
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every later request of `tenant` is answered with `code`.
    pub fn fail_tenant(&self, tenant: &str, code: Code) {
        self.state
            .failures
            .lock()
            .unwrap()
            .insert(tenant.to_string(), code);
    }

    /// Later requests of `tenant` are accepted again.
    pub fn heal_tenant(&self, tenant: &str) {
        self.state.failures.lock().unwrap().remove(tenant);
    }

    /// While `down`, every request is answered UNAVAILABLE, whatever its tenant.
    pub fn set_down(&self, down: bool) {
        self.state
            .down
            .store(down, std::sync::atomic::Ordering::SeqCst);
    }

    /// Every later request takes `latency` before it is answered.
    pub fn set_latency(&self, latency: Duration) {
        *self.state.latency.lock().unwrap() = latency;
    }

    /// The most requests that were ever being handled at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.in_flight.lock().unwrap().1
    }

    /// Every later request of `tenant` hangs: it is never answered.
    pub fn hang_tenant(&self, tenant: &str) {
        self.state
            .hanging
            .lock()
            .unwrap()
            .insert(tenant.to_string());
    }

    /// Runs `f` on what was recorded so far.
    pub fn with<R>(&self, f: impl FnOnce(&Recorded) -> R) -> R {
        f(&self.state.recorded.lock().unwrap())
    }

    /// Every span received for `tenant` (by its `x-scope-orgid`), in arrival order.
    pub fn spans(&self, tenant: &str) -> Vec<Span> {
        self.with(|r| {
            r.traces
                .iter()
                .filter(|x| x.tenant.as_deref() == Some(tenant))
                .flat_map(|x| x.request.resource_spans.iter())
                .flat_map(|rs| rs.scope_spans.iter())
                .flat_map(|ss| ss.spans.iter().cloned())
                .collect()
        })
    }

    pub fn span_count(&self, tenant: &str) -> usize {
        self.spans(tenant).len()
    }

    pub fn data_point_count(&self, tenant: &str) -> usize {
        self.with(|r| {
            r.metrics
                .iter()
                .filter(|x| x.tenant.as_deref() == Some(tenant))
                .flat_map(|x| x.request.resource_metrics.iter())
                .flat_map(|rm| rm.scope_metrics.iter())
                .flat_map(|sm| sm.metrics.iter())
                .map(data_points)
                .sum()
        })
    }

    pub fn log_record_count(&self, tenant: &str) -> usize {
        self.with(|r| {
            r.logs
                .iter()
                .filter(|x| x.tenant.as_deref() == Some(tenant))
                .flat_map(|x| x.request.resource_logs.iter())
                .flat_map(|rl| rl.scope_logs.iter())
                .map(|sl| sl.log_records.len())
                .sum()
        })
    }

    /// How many requests were answered with an error for `tenant`.
    /// Requests of `tenant` held without an answer so far.
    pub fn hanging_count(&self, tenant: &str) -> usize {
        self.with(|r| {
            r.hanging
                .iter()
                .filter(|t| t.as_deref() == Some(tenant))
                .count()
        })
    }

    pub fn refused_count(&self, tenant: &str) -> usize {
        self.with(|r| {
            r.refused
                .iter()
                .filter(|(t, _)| t.as_deref() == Some(tenant))
                .count()
        })
    }

    /// Waits until `count(self)` reaches at least `n`; returns the count then.
    pub async fn wait_count(
        &self,
        what: &str,
        n: usize,
        timeout: Duration,
        count: impl Fn(&Backend) -> usize,
    ) -> usize {
        wait_for(what, timeout, || {
            let seen = count(self);
            async move {
                if seen >= n {
                    Ok(seen)
                } else {
                    Err(format!("{seen} of {n}"))
                }
            }
        })
        .await
    }

    pub async fn wait_spans(&self, tenant: &str, n: usize, timeout: Duration) -> usize {
        let what = format!("{n} spans of tenant {tenant} at the backend");
        self.wait_count(&what, n, timeout, |b| b.span_count(tenant))
            .await
    }

    /// Waits until every span named in `names` reached the backend under `tenant`; names
    /// a few missing ones on timeout.
    pub async fn wait_span_names(&self, tenant: &str, names: &BTreeSet<String>, timeout: Duration) {
        let what = format!("every acknowledged span of {tenant} at the backend");
        wait_for(&what, timeout, || {
            let got: BTreeSet<String> = self.spans(tenant).into_iter().map(|s| s.name).collect();
            let missing: Vec<&String> = names.difference(&got).collect();
            let result = if missing.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{} of {} missing, e.g. {:?}",
                    missing.len(),
                    names.len(),
                    &missing[..missing.len().min(5)]
                ))
            };
            async move { result }
        })
        .await
    }

    pub async fn wait_data_points(&self, tenant: &str, n: usize, timeout: Duration) -> usize {
        let what = format!("{n} data points of tenant {tenant} at the backend");
        self.wait_count(&what, n, timeout, |b| b.data_point_count(tenant))
            .await
    }

    pub async fn wait_log_records(&self, tenant: &str, n: usize, timeout: Duration) -> usize {
        let what = format!("{n} log records of tenant {tenant} at the backend");
        self.wait_count(&what, n, timeout, |b| b.log_record_count(tenant))
            .await
    }

    /// Stops serving and releases the port.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.abort();
    }
}

/// Number of data points of one metric, whatever its type.
pub fn data_points(metric: &Metric) -> usize {
    sluice::otlp::decoded::data_point_count(metric)
}
