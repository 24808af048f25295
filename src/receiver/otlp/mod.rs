//! The `otlp` receiver. gRPC is served by [`grpc`]; requests are framed, decompressed and
//! size-checked here, then handed whole (still protobuf bytes) to the ingest path.

mod config;
pub mod grpc;

pub use config::{GrpcConfig, OtlpReceiverConfig, Protocols};
