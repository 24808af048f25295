//! The `otlp` receiver. gRPC is served by [`grpc`], HTTP by [`http`]; requests are framed,
//! decompressed ([`decompress`], shared) and size-checked there, then handed whole (as
//! protobuf bytes) to the ingest path. Either may serve TLS, terminated by [`tls`].

mod config;
pub mod decompress;
pub mod grpc;
pub mod http;
pub mod inflight;

pub use crate::tls::server::ListenerTlsConfig;
pub use config::{
    CorsConfig, GrpcConfig, HttpConfig, OtlpReceiverConfig, Protocols, UnknownJsonFields,
};

use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::{Listening, Receiver, StartError};
use crate::pipeline::ingest::Ingest;

/// The `otlp` receiver: gRPC, HTTP or both, feeding the same ingest.
#[derive(Debug)]
pub struct OtlpReceiver {
    config: OtlpReceiverConfig,
}

impl OtlpReceiver {
    pub fn new(config: OtlpReceiverConfig) -> Self {
        OtlpReceiver { config }
    }
}

#[async_trait]
impl Receiver for OtlpReceiver {
    async fn start(
        &self,
        ingest: Arc<Ingest>,
        stop: CancellationToken,
    ) -> Result<Vec<Listening>, StartError> {
        let mut listening = Vec::new();
        // One budget for both transports: memory is one resource.
        let budget = inflight::InflightBudget::new(self.config.max_inflight_bytes());
        if let Some(grpc) = &self.config.protocols.grpc {
            let served = grpc::serve(grpc, ingest.clone(), budget.clone(), stop.clone()).await?;
            listening.push(served);
        }
        if let Some(http) = &self.config.protocols.http {
            listening.push(http::serve(http, ingest, budget, stop).await?);
        }
        Ok(listening)
    }
}
