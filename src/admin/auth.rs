//! Who is calling the admin API. Admin tokens are compared in constant time against every
//! configured token; a tenant's own ingest token (`tenancy.auth`) is accepted where a tenant
//! may act on itself (tapping its own data), and nowhere else.

use subtle::ConstantTimeEq;

use super::config::{AdminAuthMode, AdminConfig};
use crate::secret::Secret;
use crate::tenant::auth::{AuthConfig, AuthLoadError, Authenticator};
use crate::tenant::TenantId;

/// The caller of one admin request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// An admin token, by its name.
    Admin(String),
    /// `auth: none` on loopback.
    Local,
    /// A tenant's own ingest token.
    Tenant(TenantId),
}

impl Caller {
    /// The name the audit log gives this caller.
    pub fn name(&self) -> String {
        match self {
            Caller::Admin(name) => name.clone(),
            Caller::Local => "local (auth: none)".into(),
            Caller::Tenant(t) => format!("tenant {t}"),
        }
    }

    pub fn is_admin(&self) -> bool {
        !matches!(self, Caller::Tenant(_))
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    #[error("missing credentials: send `authorization: Bearer <admin token>`")]
    Missing,
    #[error("no admin token is configured: set service.admin.token_env or token_file (or auth: none on a loopback address)")]
    NoTokens,
    #[error("the bearer token is not valid")]
    Unknown,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminAuthError {
    #[error("service.admin: environment variable {0} is not set")]
    MissingEnv(String),
    #[error("service.admin: cannot read token file {path}")]
    File {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("service.admin: {0} must be at least 16 visible characters")]
    Weak(String),
    #[error(transparent)]
    Tenancy(#[from] AuthLoadError),
}

/// Shortest admin token accepted.
const MIN_TOKEN_LEN: usize = 16;

pub struct AdminAuth {
    mode: AdminAuthMode,
    tokens: Vec<(Secret, String)>,
    tenants: Option<Authenticator>,
}

impl AdminAuth {
    /// Reads the tokens (environment, files) once, at start.
    pub fn load(
        config: &AdminConfig,
        tenancy: Option<&AuthConfig>,
    ) -> Result<Self, AdminAuthError> {
        let mut sources: Vec<(String, Option<&String>, Option<&std::path::PathBuf>)> = Vec::new();
        if config.token_env.is_some() || config.token_file.is_some() {
            sources.push((
                "admin".into(),
                config.token_env.as_ref(),
                config.token_file.as_ref(),
            ));
        }
        for t in &config.tokens {
            sources.push((t.name.clone(), t.token_env.as_ref(), t.token_file.as_ref()));
        }
        let mut tokens = Vec::with_capacity(sources.len());
        for (name, env, file) in sources {
            let token = match (env, file) {
                (Some(var), _) => {
                    std::env::var(var).map_err(|_| AdminAuthError::MissingEnv(var.clone()))?
                }
                (None, Some(path)) => {
                    crate::secret::warn_if_exposed(path, "admin token file");
                    std::fs::read_to_string(path)
                        .map_err(|source| AdminAuthError::File {
                            path: path.clone(),
                            source,
                        })?
                        .trim()
                        .to_string()
                }
                (None, None) => continue,
            };
            if token.len() < MIN_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(AdminAuthError::Weak(format!("the token {name:?}")));
            }
            tokens.push((Secret::new(token), name));
        }
        Ok(AdminAuth {
            mode: config.auth,
            tokens,
            tenants: tenancy.map(Authenticator::new).transpose()?,
        })
    }

    /// The caller of a request with this `authorization` header.
    pub fn caller(&self, authorization: Option<&[u8]>) -> Result<Caller, Refused> {
        if self.mode == AdminAuthMode::None {
            return Ok(Caller::Local);
        }
        let value = authorization.ok_or(Refused::Missing)?;
        let presented = strip_bearer(value).ok_or(Refused::Unknown)?;
        let mut found: Option<&String> = None;
        for (secret, name) in &self.tokens {
            if bool::from(secret.expose().as_bytes().ct_eq(presented)) {
                found = Some(name);
            }
        }
        if let Some(name) = found {
            return Ok(Caller::Admin(name.clone()));
        }
        if let Some(tenants) = &self.tenants {
            if let Ok(tenant) = tenants.authenticate(Some(value)) {
                return Ok(Caller::Tenant(tenant));
            }
        }
        if self.tokens.is_empty() {
            return Err(Refused::NoTokens);
        }
        Err(Refused::Unknown)
    }
}

fn strip_bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| rest.trim_ascii())
}
