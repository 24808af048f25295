//! OTLP wire handling that never decodes more than it must.

pub mod walk;
pub mod wire;
