//! TLS settings of a connection Sluice originates (the OTLP exporters, its own traces), the
//! Collector's client `tls` keys. The exporters turn them into their clients' TLS config.

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::FieldError;

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// Use plaintext for a bare `host:port` endpoint. Default `false` (TLS). An `http://` or
    /// `https://` endpoint decides by its scheme and must not contradict this setting.
    #[serde(default)]
    pub insecure: bool,
    /// PEM file of the CA certificates that sign the backend's certificate. When absent, the
    /// system's trusted roots are used.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for mutual TLS; requires `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`; requires `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Name to verify the backend's certificate against (and send as SNI) instead of the
    /// endpoint's host, e.g. when connecting by IP address.
    pub server_name_override: Option<String>,
    /// Accept any certificate from the backend: expired, self-signed, for another name.
    /// The connection is still encrypted, but anyone who can intercept it can pose as the
    /// backend and read the telemetry and the headers (credentials included), so it is
    /// logged as a warning at start. For tests and trusted networks; prefer `ca_file`.
    /// Default `false`.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

impl TlsSettings {
    /// Checks the settings for a connection that is `plaintext` or not. Field names in
    /// errors are relative to `tls`.
    pub(crate) fn validate(&self, plaintext: bool) -> Result<(), FieldError> {
        if plaintext {
            if let Some(field) = self.any_file_or_name() {
                return Err(FieldError::new(
                    field,
                    "has no effect: the connection is plaintext (http:// endpoint or \
                     tls.insecure: true)",
                ));
            }
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            let missing = if self.cert_file.is_some() {
                "key_file"
            } else {
                "cert_file"
            };
            return Err(FieldError::new(
                missing,
                "cert_file and key_file must be given together",
            ));
        }
        if self.insecure_skip_verify && self.ca_file.is_some() {
            return Err(FieldError::new(
                "insecure_skip_verify",
                "contradicts ca_file, which would not be checked; remove one of them",
            ));
        }
        if let Some(name) = &self.server_name_override {
            if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '/') {
                return Err(FieldError::new(
                    "server_name_override",
                    "must be a host name",
                ));
            }
        }
        Ok(())
    }

    fn any_file_or_name(&self) -> Option<&'static str> {
        if self.ca_file.is_some() {
            Some("ca_file")
        } else if self.cert_file.is_some() {
            Some("cert_file")
        } else if self.key_file.is_some() {
            Some("key_file")
        } else if self.server_name_override.is_some() {
            Some("server_name_override")
        } else if self.insecure_skip_verify {
            Some("insecure_skip_verify")
        } else {
            None
        }
    }
}
