//! OTLP wire handling that never decodes more than it must.

pub mod decoded;
pub mod walk;
pub mod wire;
