//! Tenant ids and the rules that make them safe to use in file paths, topic names and labels.

use std::fmt;
use std::sync::Arc;

/// A validated tenant id: 1 to 150 characters of `A-Z a-z 0-9 ! - _ . * ' ( )`, and not `.`
/// or `..` (the ids Grafana Mimir, Loki and Tempo accept; docs/contracts.md, "Tenant ids").
///
/// The only way to get one is [`TenantId::parse`], so anything that builds a path or a topic
/// from a `TenantId` can rely on it containing no separator, no whitespace and no control
/// character. Ids are never rewritten: two mangled ids could otherwise merge two tenants'
/// data. Where a character is not allowed in a name (Pulsar topics), it is encoded
/// reversibly there ([`TenantId::encoded`]).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(Arc<str>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid tenant id {shown:?}: {why} (a tenant id is 1 to 150 characters of A-Z a-z 0-9 ! - _ . * ' ( ), and not . or ..)")]
pub struct InvalidTenantId {
    /// The offending id, cut short so a hostile header cannot flood the logs.
    shown: String,
    why: &'static str,
}

pub const MAX_TENANT_LEN: usize = 150;

/// The characters of a tenant id besides ASCII letters and digits.
const PUNCTUATION: &[u8] = b"!-_.*'()";

/// The escape character of [`TenantId::encoded`]: allowed in Pulsar names (tenant,
/// namespace and topic), never in a tenant id.
const ESCAPE: u8 = b'=';

/// Characters of a tenant id that Pulsar does not allow in tenant and namespace names.
fn needs_escape(b: u8) -> bool {
    matches!(b, b'!' | b'*' | b'\'' | b'(' | b')')
}

/// Characters of a tenant id that may not stand in a NATS subject token or consumer name
/// (`.` separates tokens, `*` is a wildcard), besides those Pulsar refuses.
fn needs_escape_in_subject(b: u8) -> bool {
    needs_escape(b) || b == b'.'
}

/// The escape character of [`TenantId::kafka_token`]. Kafka topic names allow only
/// `A-Z a-z 0-9 . _ -`, all of which a tenant id may hold, so `_` escapes itself too.
const KAFKA_ESCAPE: u8 = b'_';

/// Characters of a tenant id written as `_XX` in a Kafka topic name: those Kafka refuses,
/// the escape itself, and `.` (Kafka warns that `.` and `_` collide in its metric names).
fn needs_escape_in_kafka(b: u8) -> bool {
    needs_escape(b) || b == b'.' || b == KAFKA_ESCAPE
}

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
        if bytes.is_empty() {
            return Err(fail("it is empty"));
        }
        if bytes.len() > MAX_TENANT_LEN {
            return Err(fail("it is longer than 150 characters"));
        }
        if raw == "." || raw == ".." {
            return Err(fail("it would name a directory's self or parent"));
        }
        if !bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || PUNCTUATION.contains(b))
        {
            return Err(fail(
                "it contains a character outside A-Z a-z 0-9 ! - _ . * ' ( )",
            ));
        }
        Ok(TenantId(Arc::from(raw)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id with `! * ' ( )` written as `=XX` (hex), for names that allow only
    /// `A-Z a-z 0-9 _ - . = :` (Pulsar tenants, namespaces and topics). Reversible
    /// ([`TenantId::decode`]) and collision-free, since `=` is never part of an id; ids made
    /// of the common characters only are unchanged.
    pub fn encoded(&self) -> std::borrow::Cow<'_, str> {
        self.escaped(needs_escape)
    }

    /// The id as one NATS subject token (and consumer name): [`TenantId::encoded`] with `.`
    /// escaped too. Reversible with [`TenantId::from_subject_token`].
    pub fn subject_token(&self) -> std::borrow::Cow<'_, str> {
        self.escaped(needs_escape_in_subject)
    }

    /// The id whose [`TenantId::subject_token`] is `token`, if there is one.
    pub fn from_subject_token(token: &str) -> Option<TenantId> {
        Self::unescaped(token, needs_escape_in_subject, ESCAPE)
    }

    /// The id as part of a Kafka topic name (`A-Z a-z 0-9 - ` kept, every other character
    /// written as `_XX`). Reversible with [`TenantId::from_kafka_token`].
    pub fn kafka_token(&self) -> std::borrow::Cow<'_, str> {
        self.escaped_with(needs_escape_in_kafka, KAFKA_ESCAPE)
    }

    /// The id whose [`TenantId::kafka_token`] is `token`, if there is one.
    pub fn from_kafka_token(token: &str) -> Option<TenantId> {
        Self::unescaped(token, needs_escape_in_kafka, KAFKA_ESCAPE)
    }

    fn escaped(&self, escape: fn(u8) -> bool) -> std::borrow::Cow<'_, str> {
        self.escaped_with(escape, ESCAPE)
    }

    fn escaped_with(&self, escape: fn(u8) -> bool, with: u8) -> std::borrow::Cow<'_, str> {
        if !self.0.bytes().any(escape) {
            return std::borrow::Cow::Borrowed(&self.0);
        }
        let mut out = String::with_capacity(self.0.len() + 8);
        for b in self.0.bytes() {
            if escape(b) {
                out.push(with as char);
                out.push_str(&format!("{b:02X}"));
            } else {
                out.push(b as char);
            }
        }
        std::borrow::Cow::Owned(out)
    }

    /// The id whose [`TenantId::encoded`] form is `encoded`, if there is one.
    pub fn decode(encoded: &str) -> Option<TenantId> {
        Self::unescaped(encoded, needs_escape, ESCAPE)
    }

    fn unescaped(encoded: &str, escape: fn(u8) -> bool, with: u8) -> Option<TenantId> {
        let bytes = encoded.as_bytes();
        let mut raw = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == with {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                // Upper-case hex only, so every id has exactly one encoding.
                if hex.bytes().any(|c| c.is_ascii_lowercase()) {
                    return None;
                }
                let b = u8::from_str_radix(hex, 16).ok()?;
                if !escape(b) {
                    return None;
                }
                raw.push(b);
                i += 3;
            } else if escape(bytes[i]) {
                return None;
            } else {
                raw.push(bytes[i]);
                i += 1;
            }
        }
        TenantId::parse(std::str::from_utf8(&raw).ok()?).ok()
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
    fn accepts_every_character_mimir_accepts() {
        let longest = "x".repeat(150);
        for ok in [
            "a",
            "A1",
            "team-a",
            "team_a.prod",
            "0",
            "-a",
            ".a",
            "_a",
            "...",
            "a!b*c'd(e)f",
            "!-_.*'()",
            &longest,
        ] {
            assert_eq!(
                TenantId::parse(ok).map(|t| t.to_string()),
                Ok(ok.to_string())
            );
        }
    }

    #[test]
    fn refuses_invalid_ids() {
        let too_long = "x".repeat(151);
        for bad in [
            "", ".", "..", "a/b", "a\\b", "a b", "ä", "../etc", "a=b", "a%2F", "a:b", &too_long,
            "a\n", "a\0",
        ] {
            assert!(TenantId::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn encoding_is_reversible_and_leaves_common_ids_alone() {
        for raw in ["team-a", "a.b_c", "a!b", "*", "(x)", "it's", "!-_.*'()"] {
            let id = TenantId::parse(raw).unwrap();
            let encoded = id.encoded();
            assert!(
                encoded
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.=".contains(&b)),
                "{encoded}"
            );
            assert_eq!(TenantId::decode(&encoded), Some(id.clone()), "{raw}");
        }
        assert_eq!(TenantId::parse("team-a").unwrap().encoded(), "team-a");
        assert_eq!(TenantId::parse("a!(b)").unwrap().encoded(), "a=21=28b=29");
    }

    #[test]
    fn subject_tokens_hold_no_separator_or_wildcard_and_are_reversible() {
        for raw in [
            "team-a", "a.b_c", "a!b", "*", "(x)", "it's", "!-_.*'()", ".a.",
        ] {
            let id = TenantId::parse(raw).unwrap();
            let token = id.subject_token();
            assert!(
                token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-=".contains(&b)),
                "{token}"
            );
            assert_eq!(TenantId::from_subject_token(&token), Some(id), "{raw}");
        }
        assert_eq!(TenantId::parse("a.b").unwrap().subject_token(), "a=2Eb");
        assert_eq!(TenantId::from_subject_token("a.b"), None);
    }

    #[test]
    fn kafka_tokens_hold_only_topic_characters_and_are_reversible() {
        for raw in [
            "team-a", "a.b_c", "a!b", "*", "(x)", "it's", "!-_.*'()", ".a.", "_5F",
        ] {
            let id = TenantId::parse(raw).unwrap();
            let token = id.kafka_token();
            assert!(
                token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b)),
                "{token}"
            );
            assert_eq!(TenantId::from_kafka_token(&token), Some(id), "{raw}");
        }
        assert_eq!(TenantId::parse("a.b_c").unwrap().kafka_token(), "a_2Eb_5Fc");
        // `_` only ever starts an escape, so no two ids share a token.
        assert_eq!(TenantId::from_kafka_token("a_b"), None);
        assert_eq!(TenantId::from_kafka_token("a.b"), None);
    }

    #[test]
    fn only_canonical_encodings_decode() {
        for bad in ["a=2", "a=zz", "a=2a", "a=41", "a!", "a=3D", "=2F", ""] {
            assert_eq!(TenantId::decode(bad), None, "{bad:?}");
        }
    }
}
