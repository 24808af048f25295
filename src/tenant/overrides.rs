//! `tenancy.overrides_file`: per-tenant limits and tokens in a file of their own, kept apart
//! from the main config (as Grafana Mimir's runtime config is) so that onboarding a tenant
//! or changing its quota is one small file, re-read when it changes.
//!
//! ```yaml
//! limits:            # per tenant; an entry here replaces the tenant's entry in tenancy.limits
//!   acme: { items_per_second: 5000, buffer_max_mib: 512 }
//! bearer_tokens:     # added to tenancy.auth.bearer_tokens (and turn authentication on)
//!   - { tenant: acme, token_file: /etc/sluice/tokens/acme }
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::auth::{AuthConfig, TokenConfig};
use super::config::TenancyConfig;
use super::limits::TenantLimits;
use crate::config::FieldError;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    #[serde(default)]
    pub limits: BTreeMap<String, TenantLimits>,
    #[serde(default)]
    pub bearer_tokens: Vec<TokenConfig>,
}

impl Overrides {
    /// Reads `path`. Errors name the file and, for a bad field, where it is.
    pub fn read(path: &Path) -> Result<Overrides, FieldError> {
        let at = |message: String| {
            FieldError::new("overrides_file", format!("{}: {message}", path.display()))
        };
        let text = std::fs::read_to_string(path).map_err(|e| at(format!("cannot read it: {e}")))?;
        if text.trim().is_empty() {
            return Ok(Overrides::default());
        }
        let deserializer = serde_yaml::Deserializer::from_str(&text);
        serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let field = e.path().to_string();
            at(format!("{field}: {}", e.into_inner()))
        })
    }

    /// `tenancy` with these overrides applied, validated as a whole.
    pub fn apply(self, tenancy: &TenancyConfig) -> Result<TenancyConfig, FieldError> {
        let mut merged = tenancy.clone();
        merged.limits.tenants.extend(self.limits);
        if !self.bearer_tokens.is_empty() {
            let auth = merged.auth.get_or_insert_with(|| AuthConfig {
                bearer_tokens: Vec::new(),
            });
            auth.bearer_tokens.extend(self.bearer_tokens);
        }
        merged
            .validate()
            .map_err(|e| FieldError::new(format!("overrides_file: {}", e.field), e.message))?;
        Ok(merged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_replace_per_tenant_and_tokens_add_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("overrides.yaml");
        std::fs::write(
            &path,
            "limits:\n  acme: { items_per_second: 5 }\nbearer_tokens:\n  - { tenant: acme, token: acme-token-0123456789 }\n",
        )
        .unwrap();
        let base: TenancyConfig = crate::config::parse_component(
            serde_yaml::from_str("limits: { tenants: { acme: { items_per_second: 1 }, other: { max_in_flight: 2 } } }").unwrap(),
        )
        .unwrap();
        let merged = Overrides::read(&path).unwrap().apply(&base).unwrap();
        assert_eq!(merged.limits.tenants["acme"].items_per_second, 5.0);
        assert_eq!(merged.limits.tenants["other"].max_in_flight, 2);
        assert_eq!(merged.auth.unwrap().bearer_tokens.len(), 1);

        std::fs::write(&path, "limits:\n  acme: { items_per_secnd: 5 }\n").unwrap();
        let err = Overrides::read(&path).unwrap_err();
        assert!(err.message.contains("items_per_secnd"), "{err}");
        std::fs::write(&path, "limits:\n  'bad/tenant': { items_per_second: 5 }\n").unwrap();
        let err = Overrides::read(&path).unwrap().apply(&base).unwrap_err();
        assert!(err.field.starts_with("overrides_file"), "{err}");
    }
}
