//! `auth:` of the Pulsar buffer: a token (from the config, an environment variable named in
//! the config, or a file re-read on every connection so rotated tokens are picked up), or
//! OAuth2 client credentials. Credentials are held in [`Secret`], which never prints.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use pulsar::authentication::oauth2::{OAuth2Authentication, OAuth2Params};
use pulsar::authentication::Authentication;
use pulsar::error::AuthenticationError;
use serde::Deserialize;

pub use crate::secret::Secret;

use crate::buffer::BufferError;
use crate::config::FieldError;

/// Exactly one of `token` or `oauth2`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Token authentication (JWT), the broker's `AuthenticationProviderToken`.
    pub token: Option<TokenConfig>,
    /// OAuth2 client-credentials flow, the broker's `AuthenticationProviderToken` with tokens
    /// from an OAuth2 server (as `pulsar-admin --auth-plugin …AuthenticationOAuth2`).
    pub oauth2: Option<OAuth2Config>,
}

/// Where the token comes from: exactly one of `value`, `env` or `file`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The token itself. Prefer `env` or `file` (or `${env:VAR}`) over writing it here.
    pub value: Option<Secret>,
    /// Name of an environment variable holding the token, read once at start.
    pub env: Option<String>,
    /// File holding the token (surrounding whitespace ignored), read at start and again on
    /// every new broker connection, so a rotated token (e.g. a Kubernetes projected volume)
    /// is used without a restart.
    pub file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Config {
    /// The OAuth2 server (its `/.well-known/openid-configuration` is read to find the token
    /// endpoint), e.g. `https://auth.example.com/`.
    pub issuer_url: String,
    /// JSON key file with `client_id` and `client_secret` (the format Pulsar uses).
    pub credentials_file: PathBuf,
    /// Audience of the requested tokens, e.g. `urn:sn:pulsar:my-org:my-instance`.
    pub audience: Option<String>,
    /// Scope of the requested tokens.
    pub scope: Option<String>,
}

impl AuthConfig {
    pub fn validate(&self) -> Result<(), FieldError> {
        match (&self.token, &self.oauth2) {
            (Some(token), None) => token.validate(),
            (None, Some(oauth2)) => oauth2.validate(),
            _ => Err(FieldError::new("", "set exactly one of token or oauth2")),
        }
    }

    /// Reads the credentials (I/O) and builds the client's authentication provider.
    pub(super) fn provider(&self) -> Result<Box<dyn Authentication>, BufferError> {
        match (&self.token, &self.oauth2) {
            (Some(token), _) => token.provider(),
            (None, Some(oauth2)) => Ok(OAuth2Authentication::client_credentials(oauth2.params()?)),
            (None, None) => Err(BufferError::io(
                "auth",
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "no auth method set"),
            )),
        }
    }
}

impl TokenConfig {
    fn validate(&self) -> Result<(), FieldError> {
        let set = [
            self.value.is_some(),
            self.env.is_some(),
            self.file.is_some(),
        ];
        if set.iter().filter(|s| **s).count() != 1 {
            return Err(FieldError::new(
                "token",
                "set exactly one of value, env or file",
            ));
        }
        if let Some(env) = &self.env {
            if env.is_empty() || env.contains(['=', '\0']) {
                return Err(FieldError::new(
                    "token.env",
                    "must be an environment variable name",
                ));
            }
        }
        if self
            .value
            .as_ref()
            .is_some_and(|v| v.expose().trim().is_empty())
        {
            return Err(FieldError::new("token.value", "must not be empty"));
        }
        Ok(())
    }

    fn provider(&self) -> Result<Box<dyn Authentication>, BufferError> {
        let source = if let Some(value) = &self.value {
            TokenSource::Fixed(value.clone())
        } else if let Some(var) = &self.env {
            let value = std::env::var(var).map_err(|e| {
                BufferError::io(
                    format!("${var}"),
                    std::io::Error::new(std::io::ErrorKind::NotFound, e),
                )
            })?;
            TokenSource::Fixed(Secret::new(value.trim()))
        } else if let Some(file) = &self.file {
            // Read once now, so a missing file fails the start rather than every connection.
            read_token(file).map_err(|e| BufferError::io(file, e))?;
            crate::secret::warn_if_exposed(file, "Pulsar token file");
            TokenSource::File(file.clone())
        } else {
            return Err(BufferError::io(
                "auth.token",
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "no token source set"),
            ));
        };
        Ok(Box::new(TokenAuth { source }))
    }
}

impl OAuth2Config {
    fn validate(&self) -> Result<(), FieldError> {
        if !(self.issuer_url.starts_with("https://") || self.issuer_url.starts_with("http://")) {
            return Err(FieldError::new(
                "oauth2.issuer_url",
                "must be an http:// or https:// URL",
            ));
        }
        // The client library reads the file through a file:// URL and uses the URL's path as
        // is (percent-encoded), so only characters that need no encoding work.
        let path = self.credentials_file.to_string_lossy();
        if path.is_empty()
            || !path
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '~'))
        {
            return Err(FieldError::new(
                "oauth2.credentials_file",
                "must be a path of letters, digits and / . _ - ~ only",
            ));
        }
        Ok(())
    }

    fn params(&self) -> Result<OAuth2Params, BufferError> {
        let absolute = if self.credentials_file.is_absolute() {
            self.credentials_file.clone()
        } else {
            std::env::current_dir()
                .map_err(|e| BufferError::io(&self.credentials_file, e))?
                .join(&self.credentials_file)
        };
        // Fail the start on a missing file, with its path.
        std::fs::metadata(&absolute).map_err(|e| BufferError::io(&absolute, e))?;
        crate::secret::warn_if_exposed(&absolute, "Pulsar OAuth2 credentials file");
        Ok(OAuth2Params {
            issuer_url: self.issuer_url.clone(),
            credentials_url: format!("file://{}", absolute.display()),
            audience: self.audience.clone(),
            scope: self.scope.clone(),
        })
    }
}

enum TokenSource {
    Fixed(Secret),
    File(PathBuf),
}

struct TokenAuth {
    source: TokenSource,
}

fn read_token(path: &Path) -> std::io::Result<String> {
    let token = std::fs::read_to_string(path)?.trim().to_string();
    if token.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the token file is empty",
        ));
    }
    Ok(token)
}

#[async_trait]
impl Authentication for TokenAuth {
    fn auth_method_name(&self) -> String {
        "token".to_string()
    }

    async fn initialize(&mut self) -> Result<(), AuthenticationError> {
        Ok(())
    }

    async fn auth_data(&mut self) -> Result<Vec<u8>, AuthenticationError> {
        match &self.source {
            TokenSource::Fixed(secret) => Ok(secret.expose().as_bytes().to_vec()),
            TokenSource::File(path) => {
                let path = path.clone();
                let display = path.display().to_string();
                tokio::task::spawn_blocking(move || read_token(&path))
                    .await
                    .map_err(|e| AuthenticationError::Custom(e.to_string()))?
                    .map(String::into_bytes)
                    .map_err(|e| {
                        AuthenticationError::Custom(format!(
                            "cannot read token file {display}: {e}"
                        ))
                    })
            }
        }
    }
}
