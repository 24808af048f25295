//! Credentials in config: held in [`Secret`], whose `Debug` and `Display` print `***`, so a
//! token never reaches a log line or an error message by accident.

use std::fmt;

use serde::Deserialize;

#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The credential itself, for the one place that must send or compare it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// `raw` for an error message: the user information of a URL (`scheme://user:password@…`)
/// replaced by `***`, so a URL refused for carrying credentials does not print them.
pub fn redact_url(raw: &str) -> std::borrow::Cow<'_, str> {
    let Some(scheme_end) = raw.find("://") else {
        return raw.into();
    };
    let authority_start = scheme_end + 3;
    let rest = &raw[authority_start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_len].rfind('@') {
        Some(at) => format!("{}***{}", &raw[..authority_start], &rest[at..]).into(),
        None => raw.into(),
    }
}

/// Permission bits that expose a credential file: readable or writable by others, or
/// writable by the group (group-readable is how a Kubernetes `fsGroup` shares a secret).
const EXPOSING_MODE_BITS: u32 = 0o026;

/// Warns when a file holding a credential (`what`: "tenancy token file", "TLS key", …) can
/// be read or replaced by other users. It is still used: refusing would break deployments
/// that protect the directory instead, but the operator should know.
pub fn warn_if_exposed(path: &std::path::Path, what: &str) {
    if let Some(mode) = exposing_mode(path) {
        metrics::counter!("sluice_exposed_credential_files_total").increment(1);
        tracing::warn!(
            path = %path.display(),
            mode = format!("{mode:o}"),
            "the {what} can be read or replaced by other users; restrict it (chmod 600, or \
             defaultMode 0440 on a Kubernetes secret volume)"
        );
    }
}

/// The file's permission bits when they expose it; `None` when they do not, or it cannot be
/// read (whoever reads the file reports that).
fn exposing_mode(path: &std::path::Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & EXPOSING_MODE_BITS != 0).then_some(mode)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn secrets_print_masked() {
        let secret = Secret::new("hunter2-hunter2-hunter2");
        assert_eq!(format!("{secret} {secret:?}"), "*** ***");
    }

    #[test]
    fn urls_lose_their_user_information() {
        assert_eq!(redact_url("http://u:p@h:1/x@y"), "http://***@h:1/x@y");
        assert_eq!(redact_url("pulsar://a:b@c@h:6650"), "pulsar://***@h:6650");
        assert_eq!(redact_url("https://h:1/p?q=@"), "https://h:1/p?q=@");
        assert_eq!(redact_url("h:4317"), "h:4317");
    }

    #[test]
    fn only_files_others_can_read_or_replace_are_exposed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "x").unwrap();
        for (mode, exposed) in [
            (0o600, false),
            (0o400, false),
            (0o640, false),
            (0o440, false),
            (0o644, true),
            (0o604, true),
            (0o660, true),
            (0o602, true),
        ] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(exposing_mode(&path).is_some(), exposed, "{mode:o}");
        }
        assert_eq!(exposing_mode(&dir.path().join("missing")), None);
    }
}
