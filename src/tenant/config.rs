//! `tenancy:` section of the config.

use serde::Deserialize;

use super::auth::AuthConfig;
use super::id::TenantId;
use super::limits::LimitsConfig;
use crate::config::FieldError;

pub const DEFAULT_TENANT_HEADER: &str = "x-scope-orgid";
pub const DEFAULT_TENANT_ATTRIBUTE: &str = "tenant.id";

/// How each request's tenant is found. Sources are tried in order and the first that names a
/// tenant wins; when none does, `default` is used, and without a default the request is
/// refused.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TenancyConfig {
    /// Ordered sources. Default: `[{header: x-scope-orgid}, {resource_attribute: tenant.id}]`.
    #[serde(default = "default_sources")]
    pub resolve: Vec<TenantSourceConfig>,
    /// Tenant for data that no source assigns. Omit it to refuse such data with
    /// `INVALID_ARGUMENT`.
    #[serde(default)]
    pub default: Option<String>,
    /// Bearer-token authentication. When set, every request needs a token, the token's
    /// tenant is the tenant of the whole request, and a header or resource attribute naming
    /// another tenant is refused with `PERMISSION_DENIED` / 403.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// Per-tenant ingest limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// A file of per-tenant limits and bearer tokens merged over these (see
    /// [`super::overrides`]); re-read, with the whole config, when it changes.
    #[serde(default)]
    pub overrides_file: Option<std::path::PathBuf>,
}

/// One tenant source, written `{ header: NAME }` or `{ resource_attribute: KEY }`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(try_from = "RawSource")]
pub enum TenantSourceConfig {
    /// A request header (gRPC metadata), e.g. `x-scope-orgid` as used by Mimir, Loki and
    /// Tempo. It names the tenant of the whole request.
    Header(String),
    /// A string attribute of each resource, e.g. `tenant.id`. A request whose resources name
    /// several tenants is split per tenant.
    ResourceAttribute(String),
}

/// The YAML shape of a source: a map with exactly one of the keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    header: Option<String>,
    resource_attribute: Option<String>,
}

impl TryFrom<RawSource> for TenantSourceConfig {
    type Error = &'static str;
    fn try_from(raw: RawSource) -> Result<Self, Self::Error> {
        match (raw.header, raw.resource_attribute) {
            (Some(h), None) => Ok(TenantSourceConfig::Header(h)),
            (None, Some(k)) => Ok(TenantSourceConfig::ResourceAttribute(k)),
            _ => Err("a tenant source has exactly one key: `header` or `resource_attribute`"),
        }
    }
}

fn default_sources() -> Vec<TenantSourceConfig> {
    vec![
        TenantSourceConfig::Header(DEFAULT_TENANT_HEADER.into()),
        TenantSourceConfig::ResourceAttribute(DEFAULT_TENANT_ATTRIBUTE.into()),
    ]
}

impl Default for TenancyConfig {
    /// Without a `tenancy:` section, unassigned data goes to the tenant `default`, so a first
    /// run works with any client.
    fn default() -> Self {
        TenancyConfig {
            resolve: default_sources(),
            default: Some("default".into()),
            auth: None,
            limits: LimitsConfig::default(),
            overrides_file: None,
        }
    }
}

impl TenancyConfig {
    pub fn validate(&self) -> Result<(), FieldError> {
        for (i, source) in self.resolve.iter().enumerate() {
            match source {
                TenantSourceConfig::Header(name) => {
                    http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).map_err(
                        |_| {
                            FieldError::new(
                                format!("resolve[{i}].header"),
                                format!("{name:?} is not a valid header name"),
                            )
                        },
                    )?;
                }
                TenantSourceConfig::ResourceAttribute(key) if key.is_empty() => {
                    return Err(FieldError::new(
                        format!("resolve[{i}].resource_attribute"),
                        "attribute key must not be empty",
                    ));
                }
                TenantSourceConfig::ResourceAttribute(_) => {}
            }
        }
        if let Some(default) = &self.default {
            TenantId::parse(default).map_err(|e| FieldError::new("default", e.to_string()))?;
        }
        if let Some(auth) = &self.auth {
            auth.validate()
                .map_err(|e| FieldError::new(format!("auth.{}", e.field), e.message))?;
        }
        self.limits
            .validate()
            .map_err(|e| FieldError::new(format!("limits.{}", e.field), e.message))
    }
}
