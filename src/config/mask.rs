//! The effective config as the admin API shows it: the YAML after `${env:…}` expansion, with
//! every credential replaced by `***`. Masking is by key, erring on the side of hiding: the
//! whole value of a credential key (`token`, `password`, …, including a `token: {value: …}`
//! mapping), every value of a `headers` map, and the user information of any URL.

use serde_yaml::Value;

use crate::secret::redact_url;

/// Keys whose values are credentials. `token_env`, `token_file` and the like name where a
/// credential is, which is not secret, so they are shown.
const SECRET_KEYS: [&str; 7] = [
    "token",
    "password",
    "secret",
    "client_secret",
    "api_key",
    "authorization",
    "private_key",
];

const MASK: &str = "***";

/// `value` with its credentials masked, as JSON.
pub fn masked(value: &Value) -> serde_json::Value {
    serde_json::to_value(mask(value, false)).unwrap_or(serde_json::Value::Null)
}

fn mask(value: &Value, hide_all: bool) -> Value {
    match value {
        _ if hide_all && !value.is_mapping() && !value.is_sequence() => Value::from(MASK),
        Value::Mapping(map) => Value::Mapping(
            map.iter()
                .map(|(k, v)| {
                    let key = k.as_str().unwrap_or_default().to_ascii_lowercase();
                    let masked = if SECRET_KEYS.contains(&key.as_str()) {
                        Value::from(MASK)
                    } else {
                        mask(v, hide_all || key == "headers")
                    };
                    (k.clone(), masked)
                })
                .collect(),
        ),
        Value::Sequence(items) => {
            Value::Sequence(items.iter().map(|v| mask(v, hide_all)).collect())
        }
        Value::String(s) => Value::from(redact_url(s).into_owned()),
        Value::Tagged(tagged) => mask(&tagged.value, hide_all),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_masked_and_their_sources_shown() {
        let yaml: Value = serde_yaml::from_str(
            r#"
tenancy:
  auth:
    bearer_tokens:
      - { tenant: a, token: tenant-a-secret-token }
      - { tenant: b, token_env: TOKEN_B }
buffers:
  pulsar:
    service_url: pulsar://b:6650
    auth: { token: { value: pulsar-secret } }
exporters:
  otlp:
    endpoint: http://user:pw@backend:4317
    headers: { authorization: Bearer x, x-api-key: key-secret }
"#,
        )
        .unwrap();
        let json = masked(&yaml);
        let text = json.to_string();
        for secret in [
            "tenant-a-secret-token",
            "pulsar-secret",
            "key-secret",
            "pw@",
            "Bearer x",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(
            json["tenancy"]["auth"]["bearer_tokens"][1]["token_env"],
            "TOKEN_B"
        );
        assert_eq!(json["exporters"]["otlp"]["headers"]["x-api-key"], "***");
        assert_eq!(
            json["exporters"]["otlp"]["endpoint"],
            "http://***@backend:4317"
        );
        assert_eq!(json["buffers"]["pulsar"]["service_url"], "pulsar://b:6650");
    }
}
