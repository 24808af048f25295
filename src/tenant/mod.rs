//! Tenancy: validated tenant ids, and the ordered chain that decides which tenant each part
//! of a request belongs to (docs/contracts.md, "Tenancy").

pub mod auth;
mod config;
mod id;
pub mod limits;
pub mod overrides;
mod resolver;

pub use config::{TenancyConfig, TenantSourceConfig};
pub use id::{InvalidTenantId, TenantId, MAX_TENANT_LEN};
pub use resolver::{ResolveError, TenantPart, TenantResolver};
