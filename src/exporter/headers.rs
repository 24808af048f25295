//! `headers:` of an exporter config: checked once when the config is validated, so sending
//! never fails on them, with `{tenant}` and `{signal}` substituted per batch. Shared by the
//! gRPC exporter (which turns them into metadata) and the HTTP exporter.

use http::{HeaderName, HeaderValue};

use crate::batch::Batch;
use crate::exporter::ExportError;

/// Placeholders a header value may contain, resolved per batch.
pub const PLACEHOLDERS: [&str; 2] = ["{tenant}", "{signal}"];

/// Checks a configured value: known placeholders only, visible ASCII and spaces only (what
/// both HTTP/1 headers and gRPC ASCII metadata carry unchanged). Placeholders expand to
/// tenant ids and signal names, which are valid header characters, so a valid template
/// proves every expansion valid.
pub(crate) fn check_value(value: &str) -> Result<(), String> {
    check_placeholders(value)?;
    if value.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err("value must be visible ASCII characters and spaces (no control characters)".into())
    }
}

pub(crate) fn has_placeholder(value: &str) -> bool {
    PLACEHOLDERS.iter().any(|p| value.contains(p))
}

/// The value of a template for `batch`.
pub(crate) fn substitute(template: &str, batch: &Batch) -> String {
    template
        .replace("{tenant}", batch.tenant.as_str())
        .replace("{signal}", batch.signal.as_str())
}

/// Refuses `{word}` placeholders other than the known ones: `{tenat}` would otherwise be
/// sent literally and route every tenant's data to the same place.
fn check_placeholders(value: &str) -> Result<(), String> {
    let mut rest = value;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        let word = &after[..close];
        let looks_like_placeholder =
            !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if looks_like_placeholder && !PLACEHOLDERS.contains(&&rest[open..open + close + 2]) {
            return Err(format!(
                "unknown placeholder {{{word}}}; known: {}",
                PLACEHOLDERS.join(", ")
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

/// One configured HTTP header.
#[derive(Clone, Debug)]
pub(crate) struct HttpHeader {
    pub name: HeaderName,
    value: HttpHeaderValue,
}

#[derive(Clone, Debug)]
enum HttpHeaderValue {
    Fixed(HeaderValue),
    /// Contains a placeholder; substituted per batch.
    Template(String),
}

impl HttpHeader {
    /// Checks `name: value`; `reserved` says why the transport keeps a (lowercase) name for
    /// itself, when it does.
    pub fn parse(
        name: &str,
        value: &str,
        reserved: fn(&str) -> Option<&'static str>,
    ) -> Result<HttpHeader, String> {
        let lower = name.to_ascii_lowercase();
        if let Some(why) = reserved(&lower) {
            return Err(why.to_string());
        }
        let name = HeaderName::from_bytes(lower.as_bytes())
            .map_err(|_| "is not a valid header name (ASCII letters, digits, - _ .)".to_string())?;
        check_value(value)?;
        let value = if has_placeholder(value) {
            HttpHeaderValue::Template(value.to_string())
        } else {
            HttpHeaderValue::Fixed(HeaderValue::from_str(value).map_err(|e| e.to_string())?)
        };
        Ok(HttpHeader { name, value })
    }

    /// The value for `batch`. Cannot fail while tenant ids stay header-safe; if that ever
    /// broke, the batch fails rather than going out without its tenant header, which a
    /// backend would file under its default tenant.
    pub fn value_for(&self, batch: &Batch) -> Result<HeaderValue, ExportError> {
        match &self.value {
            HttpHeaderValue::Fixed(v) => Ok(v.clone()),
            HttpHeaderValue::Template(t) => {
                HeaderValue::try_from(substitute(t, batch)).map_err(|e| ExportError::Permanent {
                    reason: "invalid_header",
                    source: Box::new(e),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::signal::Signal;
    use crate::tenant::TenantId;

    fn no_reserved(_: &str) -> Option<&'static str> {
        None
    }

    #[test]
    fn values() {
        check_value("Bearer abc").unwrap();
        check_value("{\"a\": 1}").unwrap();
        assert!(check_value("{tenat}").unwrap_err().contains("{tenant}"));
        assert!(check_value("a\nb").is_err());
        assert!(check_value("é").is_err());
    }

    #[test]
    fn http_headers_expand_per_batch() {
        let batch = Batch {
            tenant: TenantId::parse("acme").unwrap(),
            signal: Signal::Logs,
            payload: Bytes::new().into(),
            items: 0,
            received_at_ms: 0,
            traceparent: None,
        };
        let h = HttpHeader::parse("X-Scope-OrgID", "{tenant}-{signal}", no_reserved).unwrap();
        assert_eq!(h.name.as_str(), "x-scope-orgid");
        assert_eq!(h.value_for(&batch).unwrap(), "acme-logs");
        let h = HttpHeader::parse("authorization", "Bearer x", no_reserved).unwrap();
        assert_eq!(h.value_for(&batch).unwrap(), "Bearer x");
        assert!(HttpHeader::parse("bad name", "x", no_reserved).is_err());
        let reserved = |n: &str| (n == "host").then_some("reserved");
        assert_eq!(
            HttpHeader::parse("Host", "x", reserved).unwrap_err(),
            "reserved"
        );
    }
}
