//! Sluice: a multi-tenant OpenTelemetry pipeline daemon.
//!
//! OTLP requests come in through a [`receiver`], are assigned to a tenant by [`tenant`]
//! resolution, and are appended to a durable [`buffer`] before the client is answered
//! ([`pipeline::ingest`]). Export workers ([`pipeline::export`]) read each tenant+signal
//! stream of the buffer and hand the batches to [`exporter`]s, acknowledging the buffer only
//! after the backend accepted. [`service`] assembles all of it from the config. The layers
//! and contracts are described in docs/architecture.md and docs/contracts.md.

pub mod admin;
pub mod allocator;
pub mod batch;
pub mod buffer;
pub mod config;
pub mod error;
pub mod exporter;
#[cfg(any(fuzzing, test))]
pub mod fuzzing;
pub mod otlp;
pub mod pipeline;
pub mod processor;
pub mod receiver;
pub mod secret;
pub mod service;
pub mod signal;
pub mod telemetry;
pub mod tenant;
pub mod tls;
