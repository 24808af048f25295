//! Tenant ids and the rules that make them safe to use in file paths, topic names and labels.

use std::fmt;
use std::sync::Arc;

/// A validated tenant id: `^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`.
///
/// The only way to get one is [`TenantId::parse`], so anything that builds a path or a topic
/// from a `TenantId` can rely on it containing no separators. Ids are never rewritten: two
/// mangled ids could otherwise merge two tenants' data.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(Arc<str>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid tenant id {shown:?}: {why} (a tenant id is 1 to 63 characters of A-Z a-z 0-9 _ . -, starting with a letter or digit)")]
pub struct InvalidTenantId {
    /// The offending id, cut short so a hostile header cannot flood the logs.
    shown: String,
    why: &'static str,
}

pub const MAX_TENANT_LEN: usize = 63;

impl InvalidTenantId {
    /// For a header value that is not even visible ASCII.
    pub fn not_text(raw: &[u8]) -> Self {
        InvalidTenantId {
            shown: String::from_utf8_lossy(&raw[..raw.len().min(80)]).into_owned(),
            why: "it is not plain ASCII text",
        }
    }
}

impl TenantId {
    pub fn parse(raw: &str) -> Result<TenantId, InvalidTenantId> {
        let fail = |why| InvalidTenantId {
            shown: raw.chars().take(80).collect(),
            why,
        };
        let bytes = raw.as_bytes();
        let Some(&first) = bytes.first() else {
            return Err(fail("it is empty"));
        };
        if bytes.len() > MAX_TENANT_LEN {
            return Err(fail("it is longer than 63 characters"));
        }
        if !first.is_ascii_alphanumeric() {
            return Err(fail("it must start with a letter or digit"));
        }
        if !bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        {
            return Err(fail("it contains a character outside A-Z a-z 0-9 _ . -"));
        }
        Ok(TenantId(Arc::from(raw)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantId({})", &self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_ids() {
        for ok in ["a", "A1", "team-a", "team_a.prod", "0", &"x".repeat(63)] {
            assert_eq!(
                TenantId::parse(ok).map(|t| t.to_string()),
                Ok(ok.to_string())
            );
        }
    }

    #[test]
    fn refuses_invalid_ids() {
        for bad in [
            "",
            "-a",
            ".a",
            "_a",
            "a/b",
            "a b",
            "ä",
            "../etc",
            &"x".repeat(64),
            "a\n",
        ] {
            assert!(TenantId::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
