//! Collector-shaped YAML config: loading, `${VAR}` expansion and validation into a typed model.
//!
//! Validation is pure: it checks every component's config and the pipeline graph without
//! opening a socket or a file, so `sluice validate` can check a file anywhere. Every error
//! names the path of what is wrong.

mod component_id;
mod error;
mod expand;
mod load;

pub use component_id::ComponentId;
pub use error::{parse_component, ConfigError, FieldError};
pub use expand::expand;
pub use load::{Config, PipelineConfig};
