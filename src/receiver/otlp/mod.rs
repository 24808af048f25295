//! The `otlp` receiver. gRPC is served by [`grpc`], HTTP by [`http`]; requests are framed,
//! decompressed ([`decompress`], shared) and size-checked there, then handed whole (as
//! protobuf bytes) to the ingest path. Either may serve TLS, terminated by [`tls`].

mod config;
pub mod decompress;
pub mod grpc;
pub mod http;
pub mod tls;

pub use config::{
    CorsConfig, GrpcConfig, HttpConfig, OtlpReceiverConfig, Protocols, UnknownJsonFields,
};
pub use tls::ReceiverTlsConfig;
