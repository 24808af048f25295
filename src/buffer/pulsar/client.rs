//! The Pulsar client of a buffer: service URL, TLS, authentication and the retry and timeout
//! settings that make a broker outage show up as errors within `send_timeout`, and a broker
//! that comes back get used again without a restart.

use std::time::Duration;

use pulsar::compression::{
    Compression, CompressionLz4, CompressionSnappy, CompressionZlib, CompressionZstd,
};
use pulsar::{ConnectionRetryOptions, OperationRetryOptions, Pulsar, TokioExecutor};

use super::config::{CompressionConfig, PulsarBufferConfig};
use super::{detached, unavailable};
use crate::buffer::BufferError;

/// Connects to the broker. Fails with [`BufferError::Unavailable`] when it cannot be reached
/// within `send_timeout`.
pub(super) async fn connect(
    config: &PulsarBufferConfig,
) -> Result<Pulsar<TokioExecutor>, BufferError> {
    let mut builder = Pulsar::builder(config.service_url.clone(), TokioExecutor)
        .with_connection_retry_options(ConnectionRetryOptions {
            min_backoff: Duration::from_millis(100),
            // Short, so a restarted broker is found again within seconds.
            max_backoff: Duration::from_secs(2),
            max_retries: 5,
            connection_timeout: config.send_timeout.min(Duration::from_secs(10)),
            // Pings find a dead connection (e.g. a broker host gone without a FIN).
            keep_alive: Duration::from_secs(15),
            connection_max_idle: Duration::from_secs(120),
        })
        .with_operation_retry_options(OperationRetryOptions {
            // The client's own per-message deadline, resends after a reconnect included.
            operation_timeout: config.send_timeout,
            retry_delay: Duration::from_millis(500),
            max_retries: Some(20),
        });
    if let Some(ca) = &config.tls.ca_file {
        builder = builder
            .with_certificate_chain_file(ca)
            .map_err(|e| BufferError::io(ca, e))?;
    }
    if let Some(auth) = &config.auth {
        builder = builder.with_auth_provider(auth.provider()?);
    }
    let what = format!(
        "cannot connect to the Pulsar broker at {}",
        config.service_url
    );
    detached(config.send_timeout, builder.build())
        .await
        .map_err(|e| unavailable(&what, e))
}

pub(super) fn compression(config: CompressionConfig) -> Compression {
    match config {
        CompressionConfig::None => Compression::None,
        CompressionConfig::Lz4 => Compression::Lz4(CompressionLz4::default()),
        CompressionConfig::Zstd => Compression::Zstd(CompressionZstd::default()),
        CompressionConfig::Zlib => Compression::Zlib(CompressionZlib::default()),
        CompressionConfig::Snappy => Compression::Snappy(CompressionSnappy::default()),
    }
}
