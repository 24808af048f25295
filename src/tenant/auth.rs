//! Bearer-token authentication: each token is bound to one tenant, and the token's tenant is
//! authoritative for the whole request (docs/contracts.md, "Tenancy").
//!
//! Tokens are compared in constant time against every configured token (no early exit on the
//! first match), and never printed: they live in [`Secret`].

use std::path::PathBuf;

use serde::Deserialize;

pub use crate::secret::Secret;
use subtle::ConstantTimeEq;

use super::id::TenantId;
use crate::config::FieldError;

/// `tenancy.auth`: when present, every request must carry `authorization: Bearer <token>`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Tokens and the tenant each one may write as.
    pub bearer_tokens: Vec<TokenConfig>,
}

/// One token, given inline (use `${env:VAR}` to take it from the environment), from an
/// environment variable named here, or from a file (trailing whitespace ignored).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub tenant: String,
    #[serde(default)]
    pub token: Option<Secret>,
    #[serde(default)]
    pub token_env: Option<String>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

/// Shortest token accepted, so a guessable token cannot be configured by mistake.
const MIN_TOKEN_LEN: usize = 16;

impl AuthConfig {
    /// Checks shape only; the environment and files are read by [`Authenticator::new`].
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.bearer_tokens.is_empty() {
            return Err(FieldError::new("bearer_tokens", "list at least one token"));
        }
        for (i, t) in self.bearer_tokens.iter().enumerate() {
            let at = |field: &str| format!("bearer_tokens[{i}].{field}");
            TenantId::parse(&t.tenant).map_err(|e| FieldError::new(at("tenant"), e.to_string()))?;
            let sources = [
                t.token.is_some(),
                t.token_env.is_some(),
                t.token_file.is_some(),
            ];
            if sources.iter().filter(|s| **s).count() != 1 {
                return Err(FieldError::new(
                    format!("bearer_tokens[{i}]"),
                    "give exactly one of token, token_env, token_file",
                ));
            }
            if let Some(token) = &t.token {
                check_token(token.expose()).map_err(|m| FieldError::new(at("token"), m))?;
            }
        }
        Ok(())
    }
}

fn check_token(token: &str) -> Result<(), String> {
    if token.len() < MIN_TOKEN_LEN {
        return Err(format!(
            "a token must be at least {MIN_TOKEN_LEN} characters"
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("a token must be visible ASCII without spaces".into());
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum AuthLoadError {
    #[error("tenancy.auth.bearer_tokens[{index}]: environment variable {name} is not set")]
    MissingEnv { index: usize, name: String },
    #[error("tenancy.auth.bearer_tokens[{index}]: cannot read token file {path}")]
    File {
        index: usize,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("tenancy.auth.bearer_tokens[{index}]: {message}")]
    Invalid { index: usize, message: String },
}

/// Why a request was not authenticated. Messages never contain the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing credentials: send `authorization: Bearer <token>`")]
    Missing,
    #[error("the authorization header is not a bearer token")]
    NotBearer,
    #[error("the bearer token is not valid")]
    Unknown,
}

/// The loaded token table.
pub struct Authenticator {
    tokens: Vec<(Secret, TenantId)>,
}

impl Authenticator {
    pub fn new(config: &AuthConfig) -> Result<Self, AuthLoadError> {
        let mut tokens = Vec::with_capacity(config.bearer_tokens.len());
        for (index, t) in config.bearer_tokens.iter().enumerate() {
            let tenant = TenantId::parse(&t.tenant).map_err(|e| AuthLoadError::Invalid {
                index,
                message: e.to_string(),
            })?;
            let token = match (&t.token, &t.token_env, &t.token_file) {
                (Some(token), _, _) => token.expose().to_string(),
                (_, Some(name), _) => {
                    std::env::var(name).map_err(|_| AuthLoadError::MissingEnv {
                        index,
                        name: name.clone(),
                    })?
                }
                (_, _, Some(path)) => {
                    crate::secret::warn_if_exposed(path, "tenancy token file");
                    std::fs::read_to_string(path)
                        .map_err(|source| AuthLoadError::File {
                            index,
                            path: path.clone(),
                            source,
                        })?
                        .trim_end()
                        .to_string()
                }
                (None, None, None) => {
                    return Err(AuthLoadError::Invalid {
                        index,
                        message: "no token given".into(),
                    })
                }
            };
            check_token(&token).map_err(|message| AuthLoadError::Invalid { index, message })?;
            tokens.push((Secret::new(token), tenant));
        }
        Ok(Authenticator { tokens })
    }

    /// The tenant bound to the request's bearer token.
    pub fn authenticate(&self, authorization: Option<&[u8]>) -> Result<TenantId, AuthError> {
        let value = authorization.ok_or(AuthError::Missing)?;
        let presented = strip_bearer(value).ok_or(AuthError::NotBearer)?;
        // Compare against every token so the time taken does not tell which one matched.
        let mut found: Option<&TenantId> = None;
        for (secret, tenant) in &self.tokens {
            if bool::from(secret.expose().as_bytes().ct_eq(presented)) {
                found = Some(tenant);
            }
        }
        found.cloned().ok_or(AuthError::Unknown)
    }
}

fn strip_bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    if scheme.eq_ignore_ascii_case(b"bearer ") {
        Some(rest.trim_ascii())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AuthConfig {
        AuthConfig {
            bearer_tokens: vec![
                TokenConfig {
                    tenant: "team-a".into(),
                    token: Some(Secret::new("aaaaaaaaaaaaaaaaaaaa")),
                    token_env: None,
                    token_file: None,
                },
                TokenConfig {
                    tenant: "team-b".into(),
                    token: Some(Secret::new("bbbbbbbbbbbbbbbbbbbb")),
                    token_env: None,
                    token_file: None,
                },
            ],
        }
    }

    #[test]
    fn maps_tokens_to_tenants() {
        let auth = Authenticator::new(&config()).unwrap();
        let tenant = auth
            .authenticate(Some(b"Bearer bbbbbbbbbbbbbbbbbbbb"))
            .unwrap();
        assert_eq!(tenant.as_str(), "team-b");
        assert_eq!(
            auth.authenticate(Some(b"bearer aaaaaaaaaaaaaaaaaaaa"))
                .unwrap()
                .as_str(),
            "team-a"
        );
        assert_eq!(auth.authenticate(None), Err(AuthError::Missing));
        assert_eq!(
            auth.authenticate(Some(b"Basic abc")),
            Err(AuthError::NotBearer)
        );
        assert_eq!(
            auth.authenticate(Some(b"Bearer cccccccccccccccccccc")),
            Err(AuthError::Unknown)
        );
        assert_eq!(
            auth.authenticate(Some(b"Bearer aaaa")),
            Err(AuthError::Unknown)
        );
    }

    #[test]
    fn reads_tokens_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "ffffffffffffffffffff\n").unwrap();
        let mut cfg = config();
        cfg.bearer_tokens[0].token = None;
        cfg.bearer_tokens[0].token_file = Some(path);
        let auth = Authenticator::new(&cfg).unwrap();
        assert_eq!(
            auth.authenticate(Some(b"Bearer ffffffffffffffffffff"))
                .unwrap()
                .as_str(),
            "team-a"
        );
    }

    #[test]
    fn validation_refuses_weak_or_ambiguous_tokens() {
        let mut cfg = config();
        cfg.bearer_tokens[0].token = Some(Secret::new("short"));
        assert!(cfg.validate().is_err());
        let mut cfg = config();
        cfg.bearer_tokens[0].token_env = Some("X".into());
        assert!(cfg.validate().unwrap_err().message.contains("exactly one"));
        assert!(config().validate().is_ok());
    }

    #[test]
    fn secrets_never_print() {
        let cfg = config();
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("aaaa"), "{shown}");
    }
}
