//! The two runtime halves of a pipeline, between the components: [`ingest`] (the seam every
//! receiver calls: tenant, limits, processors, durable append) and [`export`] (the workers
//! that read each tenant+signal stream of a buffer and hand it to the exporters), plus the
//! operator's hold on them: [`control`] (paused exports), [`tap`] (live copies of what a
//! tenant sends) and [`replay`] (retained data sent again). The service wires them to the configured components (docs/architecture.md).

pub mod control;
pub mod export;
pub mod ingest;
pub mod replay;
pub mod tap;
