//! The admin API (docs/contracts.md, "Operations"): a listener of its own
//! (`service.admin.address`, loopback by default) where an operator acts on one tenant —
//! reads its usage, pauses and resumes its export, taps what it sends, handles its dead
//! letters, replays what it sent — and reloads the config, and where the
//! `sluice tenants|pause|resume|tap|dlq|purge|replay` commands ([`cli`]) connect.
//!
//! It sits between the service and the pipeline runtime: it uses the pipeline's
//! [`ExportControl`](crate::pipeline::control::ExportControl) and taps, the usage table and
//! tenant auth, and is handed what it shows of the config; it never imports the service.

pub mod api;
mod auth;
mod buffered;
pub mod cli;
pub mod config;
mod otlp_json;
mod replay;

use std::sync::Arc;

pub use api::{AdminViews, PipelineView, ReloadRequest};
pub use auth::AdminAuthError;
pub use config::AdminConfig;

use tokio_util::sync::CancellationToken;

use crate::pipeline::control::ExportControl;
use crate::telemetry::listener::{self, ServeError};
use crate::tenant::auth::AuthConfig;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Auth(#[from] AdminAuthError),
    #[error("service.admin")]
    Serve(#[from] ServeError),
}

/// What the admin API is started with.
pub struct AdminSetup<'a> {
    pub config: &'a AdminConfig,
    /// Tenants' ingest tokens, so a tenant may tap itself.
    pub tenancy_auth: Option<&'a AuthConfig>,
    pub control: Arc<ExportControl>,
    /// The effective config and pipelines shown; the caller replaces them after a reload.
    pub views: Arc<AdminViews>,
    /// The running buffers by id, for `sluice dlq`.
    pub buffers: Vec<(String, Arc<dyn crate::buffer::Buffer>)>,
    /// Where `POST /api/v1/reload` sends its requests.
    pub reload: Option<tokio::sync::mpsc::Sender<ReloadRequest>>,
    /// Each pipeline's export plan, for `sluice replay`.
    pub replay: crate::pipeline::replay::ReplayTargets,
}

/// Starts the admin API; `None` when `service.admin.address` is empty.
pub async fn serve(
    setup: AdminSetup<'_>,
    shutdown: CancellationToken,
) -> Result<Option<tokio::task::JoinHandle<()>>, AdminError> {
    let Some(address) = setup.config.address else {
        return Ok(None);
    };
    let state = Arc::new(api::AdminState {
        auth: auth::AdminAuth::load(setup.config, setup.tenancy_auth)?,
        control: setup.control,
        views: setup.views,
        buffers: setup.buffers,
        reload: setup.reload,
        replay: setup.replay,
    });
    let task = listener::serve(
        "admin",
        "service.admin.tls",
        address,
        setup.config.tls.as_ref(),
        api::routes()
            .merge(buffered::routes())
            .merge(replay::routes())
            .with_state(state),
        shutdown,
    )
    .await?;
    tracing::info!(%address, "admin API listening");
    Ok(Some(task))
}
