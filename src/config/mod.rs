//! The generic pieces of Collector-shaped YAML config that every component uses: component
//! ids, errors with paths, `${VAR}` expansion, and the [`Registry`] of component types. The
//! typed config of a whole process is assembled above the components, in `service::config`.
//!
//! Validation is pure: it checks every component's config and the pipeline graph without
//! opening a socket or a file, so `sluice validate` can check a file anywhere. Every error
//! names the path of what is wrong.

mod component_id;
mod error;
mod expand;
pub mod mask;
mod registry;

pub use component_id::ComponentId;
pub use error::{parse_component, ConfigError, FieldError};
pub use expand::expand;
pub(crate) use registry::factory;
pub use registry::{parse_validated, Factory, Registry, Validate};
