//! Config of the `otlp` receiver.

use serde::Deserialize;

use crate::config::FieldError;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OtlpReceiverConfig {
    /// Transports to listen on. At least one must be given.
    pub protocols: Protocols,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Protocols {
    /// OTLP/gRPC. `grpc: {}` listens on the default endpoint.
    #[serde(default)]
    pub grpc: Option<GrpcConfig>,
    /// OTLP/HTTP: not available yet; configuring it is an error rather than silently ignored.
    #[serde(default)]
    pub http: Option<serde_yaml::Value>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GrpcConfig {
    /// Address to listen on, `host:port`. Default `0.0.0.0:4317`.
    #[serde(default = "default_grpc_endpoint")]
    pub endpoint: String,
    /// Largest request accepted, in MiB, both as sent and after decompression. Larger
    /// requests get `RESOURCE_EXHAUSTED`. Default 16.
    #[serde(default = "default_max_recv_msg_size_mib")]
    pub max_recv_msg_size_mib: u64,
    /// Concurrent HTTP/2 streams per client connection. Default: no limit.
    #[serde(default)]
    pub max_concurrent_streams: Option<u32>,
}

fn default_grpc_endpoint() -> String {
    "0.0.0.0:4317".into()
}

fn default_max_recv_msg_size_mib() -> u64 {
    16
}

impl GrpcConfig {
    pub fn max_recv_msg_size_bytes(&self) -> usize {
        (self.max_recv_msg_size_mib as usize).saturating_mul(1024 * 1024)
    }
}

impl OtlpReceiverConfig {
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.protocols.http.is_some() {
            return Err(FieldError::new(
                "protocols.http",
                "the OTLP/HTTP receiver is not available in this version of sluice yet; remove it and use protocols.grpc",
            ));
        }
        let Some(grpc) = &self.protocols.grpc else {
            return Err(FieldError::new(
                "protocols",
                "enable at least one protocol, e.g. `grpc: {}`",
            ));
        };
        grpc.endpoint.parse::<std::net::SocketAddr>().map_err(|e| {
            FieldError::new(
                "protocols.grpc.endpoint",
                format!("{:?} is not host:port: {e}", grpc.endpoint),
            )
        })?;
        if grpc.max_recv_msg_size_mib == 0 || grpc.max_recv_msg_size_mib > 1024 {
            return Err(FieldError::new(
                "protocols.grpc.max_recv_msg_size_mib",
                "must be between 1 and 1024",
            ));
        }
        Ok(())
    }
}
