//! `service.admin:` — where the admin API listens and who may call it.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

use crate::config::FieldError;
use crate::tls::server::ListenerTlsConfig;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Where the admin API listens. Default `127.0.0.1:13134`; empty (`""`) turns it off.
    #[serde(default = "default_address", deserialize_with = "address_or_off")]
    pub address: Option<SocketAddr>,
    /// `token` (default): every call carries `authorization: Bearer <admin token>`. `none`:
    /// no token, allowed only on a loopback address.
    #[serde(default)]
    pub auth: AdminAuthMode,
    /// The admin token from this environment variable (named `admin` in the audit log).
    #[serde(default)]
    pub token_env: Option<String>,
    /// The admin token from this file (named `admin` in the audit log).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// More tokens, each with the name the audit log gives its calls.
    #[serde(default)]
    pub tokens: Vec<NamedToken>,
    /// Serve HTTPS (the receivers' `tls` keys). Default: plain HTTP.
    #[serde(default)]
    pub tls: Option<ListenerTlsConfig>,
    /// Where operator state (paused tenants) is kept across restarts. Default
    /// `./data/admin-state.json`.
    #[serde(default = "default_state_file")]
    pub state_file: PathBuf,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminAuthMode {
    #[default]
    Token,
    None,
}

/// One admin token: exactly one of `token_env` or `token_file`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedToken {
    pub name: String,
    #[serde(default)]
    pub token_env: Option<String>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            address: default_address(),
            auth: AdminAuthMode::default(),
            token_env: None,
            token_file: None,
            tokens: Vec::new(),
            tls: None,
            state_file: default_state_file(),
        }
    }
}

fn default_address() -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], 13134)))
}

fn default_state_file() -> PathBuf {
    PathBuf::from("./data/admin-state.json")
}

fn address_or_off<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let raw = String::deserialize(d)?;
    if raw.trim().is_empty() {
        return Ok(None);
    }
    raw.parse()
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("{raw:?} is not host:port ({e})")))
}

impl AdminConfig {
    pub fn validate(&self) -> Result<(), FieldError> {
        if let Some(tls) = &self.tls {
            tls.validate()
                .map_err(|e| FieldError::new(format!("tls.{}", e.field), e.message))?;
        }
        for (i, t) in self.tokens.iter().enumerate() {
            if t.name.is_empty() || !t.name.chars().all(|c| c.is_ascii_graphic()) {
                return Err(FieldError::new(
                    format!("tokens[{i}].name"),
                    "must be visible ASCII, not empty",
                ));
            }
            if t.token_env.is_some() == t.token_file.is_some() {
                return Err(FieldError::new(
                    format!("tokens[{i}]"),
                    "give exactly one of token_env, token_file",
                ));
            }
        }
        if self.token_env.is_some() && self.token_file.is_some() {
            return Err(FieldError::new(
                "token_file",
                "give token_env or token_file, not both",
            ));
        }
        let has_tokens =
            self.token_env.is_some() || self.token_file.is_some() || !self.tokens.is_empty();
        if self.auth == AdminAuthMode::None {
            if has_tokens {
                return Err(FieldError::new(
                    "auth",
                    "is none, so the tokens would be ignored; remove them or use auth: token",
                ));
            }
            if let Some(address) = self.address {
                if !address.ip().is_loopback() {
                    return Err(FieldError::new(
                        "auth",
                        format!(
                            "none is allowed only on a loopback address, not {address}: anyone \
                             who reaches it could pause or purge tenants"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}
