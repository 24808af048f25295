//! CORS for browsers (OpenTelemetry JS), from `protocols.http.cors`, on tower-http's
//! `CorsLayer`: it answers preflight `OPTIONS` requests itself and adds the
//! `Access-Control-Allow-*` headers to every response, refusals included, so a browser
//! client can read why it was refused.

use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

use crate::receiver::otlp::CorsConfig;

/// Headers an OTLP browser exporter sends that are not CORS-safelisted with OTLP's values.
const ALWAYS_ALLOWED: [&str; 4] = [
    "content-type",
    "content-encoding",
    "accept",
    "x-requested-with",
];

/// The layer for a validated config.
pub fn layer(config: &CorsConfig) -> CorsLayer {
    let origins = if config.allowed_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let patterns: Vec<OriginPattern> = config
            .allowed_origins
            .iter()
            .map(|o| OriginPattern::new(o))
            .collect();
        AllowOrigin::predicate(move |origin: &HeaderValue, _| {
            let origin = origin.to_str().unwrap_or("");
            patterns.iter().any(|p| p.matches(origin))
        })
    };
    let headers = if config.allowed_headers.iter().any(|h| h == "*") {
        AllowHeaders::any()
    } else {
        // Validation checked the names; one that is somehow invalid is left out rather
        // than allowed.
        let names = ALWAYS_ALLOWED
            .iter()
            .map(|h| h.to_string())
            .chain(config.allowed_headers.iter().cloned())
            .filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok());
        AllowHeaders::list(names)
    };
    let mut layer = CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([Method::POST])
        .allow_headers(headers);
    if let Some(secs) = config.max_age {
        layer = layer.max_age(Duration::from_secs(secs));
    }
    layer
}

/// An allowed origin, with at most one `*` that matches any run of characters.
/// Origins compare case-insensitively (scheme and host are).
#[derive(Clone, Debug)]
struct OriginPattern {
    prefix: String,
    /// `Some` when the pattern has a `*`: what must follow it.
    suffix: Option<String>,
}

impl OriginPattern {
    fn new(pattern: &str) -> Self {
        let pattern = pattern.to_ascii_lowercase();
        match pattern.split_once('*') {
            Some((prefix, suffix)) => OriginPattern {
                prefix: prefix.to_string(),
                suffix: Some(suffix.to_string()),
            },
            None => OriginPattern {
                prefix: pattern,
                suffix: None,
            },
        }
    }

    fn matches(&self, origin: &str) -> bool {
        let origin = origin.to_ascii_lowercase();
        match &self.suffix {
            None => origin == self.prefix,
            Some(suffix) => {
                origin.len() >= self.prefix.len() + suffix.len()
                    && origin.starts_with(&self.prefix)
                    && origin.ends_with(suffix.as_str())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_patterns() {
        let exact = OriginPattern::new("https://App.example.com");
        assert!(exact.matches("https://app.example.com"));
        assert!(!exact.matches("https://app.example.com.evil"));
        let wild = OriginPattern::new("https://*.example.com");
        assert!(wild.matches("https://a.b.example.com"));
        assert!(!wild.matches("https://example.com"));
        assert!(!wild.matches("http://a.example.com"));
        assert!(!wild.matches("https://a.example.com.evil"));
    }
}
