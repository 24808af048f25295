//! Applies the tenancy chain to one request and splits it into one part per tenant.

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName};

use super::auth::{AuthError, AuthLoadError, Authenticator};
use super::config::{TenancyConfig, TenantSourceConfig};
use super::id::{InvalidTenantId, TenantId};
use crate::otlp::walk::{self, AttributeValue, MalformedRequest, ResourceEntry};
use crate::otlp::wire::WireError;
use crate::signal::Signal;

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Malformed(#[from] MalformedRequest),
    #[error("{origin}: {source}")]
    InvalidTenant {
        origin: String,
        #[source]
        source: InvalidTenantId,
    },
    #[error("resource attribute {key:?} must be a string to name a tenant")]
    AttributeNotString { key: String },
    #[error("no tenant given: set the {hint} and no default tenant is configured")]
    NoTenant { hint: String },
    #[error(transparent)]
    Unauthenticated(#[from] AuthError),
    /// The request is authenticated as one tenant but names another.
    #[error("the token is for tenant {authenticated}, but the {origin} names tenant {claimed:?}")]
    PermissionDenied {
        authenticated: TenantId,
        origin: String,
        claimed: String,
    },
    #[error(transparent)]
    AuthSetup(#[from] AuthLoadError),
}

enum Source {
    Header(HeaderName),
    Attribute(String),
}

/// The tenancy chain, built once from the config.
pub struct TenantResolver {
    sources: Vec<Source>,
    default: Option<TenantId>,
    auth: Option<Authenticator>,
}

/// The resource entries of a request that belong to one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantPart {
    pub tenant: TenantId,
    /// A valid export request of the same signal: the original bytes of those entries.
    pub payload: Bytes,
    /// Spans, data points or log records in `payload`.
    pub items: u32,
}

impl TenantResolver {
    /// Builds the chain; the config must have passed [`TenancyConfig::validate`].
    pub fn new(config: &TenancyConfig) -> Result<Self, ResolveError> {
        let sources = config
            .resolve
            .iter()
            .filter_map(|s| match s {
                TenantSourceConfig::Header(h) => {
                    HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes())
                        .ok()
                        .map(Source::Header)
                }
                TenantSourceConfig::ResourceAttribute(k) => Some(Source::Attribute(k.clone())),
            })
            .collect();
        let default = match &config.default {
            Some(d) => Some(
                TenantId::parse(d).map_err(|source| ResolveError::InvalidTenant {
                    origin: "tenancy.default".into(),
                    source,
                })?,
            ),
            None => None,
        };
        let auth = config.auth.as_ref().map(Authenticator::new).transpose()?;
        Ok(TenantResolver {
            sources,
            default,
            auth,
        })
    }

    /// Splits an export request into one part per tenant, each keeping the original bytes of
    /// its resource entries. A request with no resources yields no parts.
    pub fn split(
        &self,
        signal: Signal,
        payload: Bytes,
        headers: &HeaderMap,
    ) -> Result<Vec<TenantPart>, ResolveError> {
        let entries = walk::resource_entries(signal, &payload)?;
        let make = |tenant: TenantId, payload: Bytes, items: u32| TenantPart {
            tenant,
            payload,
            items,
        };
        let total: u32 = entries
            .iter()
            .fold(0u32, |acc, e| acc.saturating_add(e.items));

        if let Some(auth) = &self.auth {
            let tenant = auth.authenticate(
                headers
                    .get(http::header::AUTHORIZATION)
                    .map(|v| v.as_bytes()),
            )?;
            self.check_claims(signal, &tenant, headers, &payload, &entries)?;
            return Ok(whole(entries, || make(tenant, payload.clone(), total)));
        }

        // A header that comes before every attribute source decides for the whole request,
        // so the resources need not be looked at.
        for source in &self.sources {
            match source {
                Source::Header(name) => {
                    if let Some(tenant) = self.header_tenant(headers, name)? {
                        return Ok(whole(entries, || make(tenant, payload.clone(), total)));
                    }
                }
                Source::Attribute(_) => break,
            }
        }

        let mut groups: Vec<(TenantId, Vec<&ResourceEntry>)> = Vec::new();
        for entry in &entries {
            let tenant = self.entry_tenant(signal, headers, &payload[entry.span.clone()])?;
            match groups.iter_mut().find(|(t, _)| *t == tenant) {
                Some((_, list)) => list.push(entry),
                None => groups.push((tenant, vec![entry])),
            }
        }
        if groups.len() == 1 {
            let (tenant, _) = groups.remove(0);
            return Ok(vec![make(tenant, payload, total)]);
        }
        Ok(groups
            .into_iter()
            .map(|(tenant, list)| {
                let size = list.iter().map(|e| e.span.len()).sum();
                let mut buf = BytesMut::with_capacity(size);
                let mut items = 0u32;
                for e in list {
                    buf.extend_from_slice(&payload[e.span.clone()]);
                    items = items.saturating_add(e.items);
                }
                make(tenant, buf.freeze(), items)
            })
            .collect())
    }

    fn header_tenant(
        &self,
        headers: &HeaderMap,
        name: &HeaderName,
    ) -> Result<Option<TenantId>, ResolveError> {
        let Some(value) = headers.get(name) else {
            return Ok(None);
        };
        let origin = || format!("header {}", name.as_str());
        let raw = value.to_str().map_err(|_| ResolveError::InvalidTenant {
            origin: origin(),
            source: InvalidTenantId::not_text(value.as_bytes()),
        })?;
        TenantId::parse(raw)
            .map(Some)
            .map_err(|source| ResolveError::InvalidTenant {
                origin: origin(),
                source,
            })
    }

    fn entry_tenant(
        &self,
        signal: Signal,
        headers: &HeaderMap,
        entry: &[u8],
    ) -> Result<TenantId, ResolveError> {
        for source in &self.sources {
            match source {
                Source::Header(name) => {
                    if let Some(t) = self.header_tenant(headers, name)? {
                        return Ok(t);
                    }
                }
                Source::Attribute(key) => match walk::resource_attribute(entry, key)
                    .map_err(malformed_entry(signal))?
                {
                    Some(AttributeValue::String(raw)) => {
                        return TenantId::parse(raw).map_err(|source| ResolveError::InvalidTenant {
                            origin: format!("resource attribute {key}"),
                            source,
                        })
                    }
                    Some(AttributeValue::NotAString) => {
                        return Err(ResolveError::AttributeNotString { key: key.clone() })
                    }
                    None => {}
                },
            }
        }
        self.default
            .clone()
            .ok_or_else(|| ResolveError::NoTenant { hint: self.hint() })
    }

    /// With authentication on, every tenant the request names (by header or resource
    /// attribute) must be the token's tenant: obeying another would let one tenant write as
    /// another, and silently ignoring it would hide the mistake.
    fn check_claims(
        &self,
        signal: Signal,
        authenticated: &TenantId,
        headers: &HeaderMap,
        payload: &[u8],
        entries: &[ResourceEntry],
    ) -> Result<(), ResolveError> {
        let denied = |origin: String, claimed: &str| ResolveError::PermissionDenied {
            authenticated: authenticated.clone(),
            origin,
            claimed: claimed.chars().take(80).collect(),
        };
        for source in &self.sources {
            match source {
                Source::Header(name) => {
                    if let Some(value) = headers.get(name) {
                        let claimed = String::from_utf8_lossy(value.as_bytes());
                        if claimed != authenticated.as_str() {
                            return Err(denied(format!("header {}", name.as_str()), &claimed));
                        }
                    }
                }
                Source::Attribute(key) => {
                    for entry in entries {
                        let bytes = &payload[entry.span.clone()];
                        match walk::resource_attribute(bytes, key)
                            .map_err(malformed_entry(signal))?
                        {
                            Some(AttributeValue::String(claimed))
                                if claimed != authenticated.as_str() =>
                            {
                                return Err(denied(format!("resource attribute {key}"), claimed));
                            }
                            Some(AttributeValue::NotAString) => {
                                return Err(ResolveError::AttributeNotString { key: key.clone() })
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn hint(&self) -> String {
        let names: Vec<String> = self
            .sources
            .iter()
            .map(|s| match s {
                Source::Header(h) => format!("header {}", h.as_str()),
                Source::Attribute(k) => format!("resource attribute {k}"),
            })
            .collect();
        if names.is_empty() {
            "tenancy.default".into()
        } else {
            names.join(" or ")
        }
    }
}

/// A request that goes whole to one tenant: no part when it holds no resources.
fn whole(entries: Vec<ResourceEntry>, make: impl FnOnce() -> TenantPart) -> Vec<TenantPart> {
    if entries.is_empty() {
        Vec::new()
    } else {
        vec![make()]
    }
}

fn malformed_entry(signal: Signal) -> impl Fn(WireError) -> ResolveError {
    move |source| {
        ResolveError::Malformed(MalformedRequest {
            signal,
            context: "resource attributes",
            source,
        })
    }
}

#[cfg(test)]
mod tests;
