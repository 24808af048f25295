//! The client side of the admin API, for `sluice tenants|pause|resume|tap|dlq`: requests with
//! the admin token, and the human tables (`--output table`, the default) or the API's JSON
//! (`--output json`).

use std::io::Write;

use serde_json::Value;

use crate::secret::Secret;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot reach the admin API at {url}")]
    Connect {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the admin API answered {status}: {message}")]
    Refused {
        status: reqwest::StatusCode,
        message: String,
    },
    #[error("unexpected answer from the admin API: {0}")]
    Decode(String),
    #[error("cannot write the output")]
    Output(#[from] std::io::Error),
}

pub struct AdminClient {
    base: String,
    token: Option<Secret>,
    http: reqwest::Client,
}

impl AdminClient {
    pub fn new(admin_url: &str, token: Option<Secret>) -> AdminClient {
        AdminClient {
            base: admin_url.trim_end_matches('/').to_string(),
            token,
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .unwrap_or_default(),
        }
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<reqwest::Response, CliError> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token.expose()),
            None => request,
        };
        let response = request.send().await.map_err(|source| CliError::Connect {
            url: url.to_string(),
            source,
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or(body);
        Err(CliError::Refused { status, message })
    }

    pub async fn get(&self, path_and_query: &str) -> Result<Value, CliError> {
        let url = format!("{}{path_and_query}", self.base);
        let response = self.send(self.http.get(&url), &url).await?;
        decode(response).await
    }

    pub async fn post(&self, path_and_query: &str) -> Result<Value, CliError> {
        let url = format!("{}{path_and_query}", self.base);
        let response = self.send(self.http.post(&url), &url).await?;
        decode(response).await
    }

    /// Streams a tap's lines to `out` until the server ends it (the limit) or the connection
    /// closes.
    pub async fn tap(&self, path_and_query: &str, out: &mut impl Write) -> Result<(), CliError> {
        let url = format!("{}{path_and_query}", self.base);
        let mut response = self.send(self.http.get(&url), &url).await?;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| CliError::Decode(e.to_string()))?
        {
            out.write_all(&chunk)?;
            out.flush()?;
        }
        Ok(())
    }
}

async fn decode(response: reqwest::Response) -> Result<Value, CliError> {
    let body = response
        .bytes()
        .await
        .map_err(|e| CliError::Decode(e.to_string()))?;
    serde_json::from_slice(&body).map_err(|e| CliError::Decode(e.to_string()))
}

/// A query string from the pairs that are set (values percent-encoded).
pub fn query(pairs: &[(&str, Option<&str>)]) -> String {
    let set: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={}", encode(v))))
        .collect();
    if set.is_empty() {
        String::new()
    } else {
        format!("?{}", set.join("&"))
    }
}

/// Percent-encodes everything but unreserved characters (tenant ids may hold `!*'()`).
pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Columns of `sluice tenants`: header, JSON field of a row.
const COLUMNS: [(&str, &str); 10] = [
    ("TENANT", "tenant"),
    ("SIGNAL", "signal"),
    ("ACCEPTED", "accepted_items"),
    ("REFUSED", "refused_items"),
    ("STORED", "stored_items"),
    ("EXPORTED", "exported_items"),
    ("DEAD-LETTERED", "dead_lettered_items"),
    ("REPLAYED", "replayed_items"),
    ("BUFFERED", "buffered_bytes"),
    ("OLDEST", "oldest_unexported_age_seconds"),
];

/// The usage table as text, sorted by `sort` (a column name or JSON field, descending for
/// numbers) with a `PAUSED` column.
pub fn tenants_table(report: &Value, sort: Option<&str>) -> String {
    let mut rows: Vec<&Value> = report["tenants"]
        .as_array()
        .map(|rows| rows.iter().collect())
        .unwrap_or_default();
    if let Some(sort) = sort {
        let field = COLUMNS
            .iter()
            .find(|(header, field)| header.eq_ignore_ascii_case(sort) || *field == sort)
            .map_or(sort, |(_, field)| field);
        rows.sort_by(|a, b| {
            let (a, b) = (cell_number(&a[field]), cell_number(&b[field]));
            b.partial_cmp(&a).unwrap_or(std::cmp::Ordering::Equal)
        });
    }
    let mut table: Vec<Vec<String>> = vec![COLUMNS
        .iter()
        .map(|(h, _)| h.to_string())
        .chain(["PAUSED".to_string()])
        .collect()];
    for row in rows {
        let mut cells: Vec<String> = COLUMNS.iter().map(|(_, f)| cell(f, &row[*f])).collect();
        cells.push(
            if row["paused"].as_bool() == Some(true) {
                "yes"
            } else {
                ""
            }
            .into(),
        );
        table.push(cells);
    }
    let widths: Vec<usize> = (0..table[0].len())
        .map(|c| table.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &table {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `sluice dlq list|redrive|purge` as text: one row per signal and buffer.
pub fn dead_letters_table(answer: &Value) -> String {
    let rows = ["dead_letters", "redriven", "purged"]
        .iter()
        .find_map(|key| answer[*key].as_array())
        .cloned()
        .unwrap_or_default();
    let mut out = String::from("SIGNAL   BUFFER      ITEMS  BATCHES  BYTES  REASONS\n");
    for row in &rows {
        let reasons: Vec<String> = row["reasons"]
            .as_object()
            .map(|r| r.iter().map(|(k, v)| format!("{v}× {k}")).collect())
            .unwrap_or_default();
        out.push_str(&format!(
            "{:<8} {:<11} {:>5}  {:>7}  {:>5}  {}\n",
            row["signal"].as_str().unwrap_or_default(),
            row["buffer"].as_str().unwrap_or_default(),
            row["items"],
            row["records"],
            row["bytes"],
            reasons.join("; ")
        ));
    }
    out
}

/// A number to sort by: refused counts are summed, a missing age is 0.
fn cell_number(value: &Value) -> f64 {
    match value {
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        Value::Object(by_reason) => by_reason.values().filter_map(Value::as_f64).sum(),
        _ => 0.0,
    }
}

fn cell(field: &str, value: &Value) -> String {
    match (field, value) {
        (_, Value::String(s)) => s.clone(),
        ("refused_items", Value::Object(by_reason)) => {
            let total: u64 = by_reason.values().filter_map(Value::as_u64).sum();
            if by_reason.is_empty() {
                "0".into()
            } else {
                let reasons: Vec<String> =
                    by_reason.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("{total} ({})", reasons.join(","))
            }
        }
        ("oldest_unexported_age_seconds", Value::Number(n)) => {
            format!("{:.1}s", n.as_f64().unwrap_or(0.0))
        }
        ("oldest_unexported_age_seconds", _) => "-".into(),
        (_, Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_aligns_sorts_and_shows_pauses() {
        let report = serde_json::json!({ "tenants": [
            { "tenant": "small", "signal": "traces", "accepted_items": 5, "refused_items": {},
              "stored_items": 5, "exported_items": 5, "dead_lettered_items": 0,
              "buffered_bytes": 0, "oldest_unexported_age_seconds": null, "paused": false },
            { "tenant": "big", "signal": "logs", "accepted_items": 900,
              "refused_items": { "rate_limited": 7 }, "stored_items": 900,
              "exported_items": 10, "dead_lettered_items": 1, "buffered_bytes": 4096,
              "oldest_unexported_age_seconds": 12.25, "paused": true }
        ]});
        let table = tenants_table(&report, Some("accepted"));
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("TENANT  SIGNAL  ACCEPTED"), "{table}");
        assert!(lines[1].starts_with("big     logs    900"), "{table}");
        assert!(lines[1].contains("7 (rate_limited:7)") && lines[1].contains("12.2s"));
        assert!(lines[1].ends_with("yes"), "{table}");
        assert!(
            lines[2].starts_with("small") && lines[2].contains(" -"),
            "{table}"
        );
    }

    #[test]
    fn queries_encode_tenant_ids() {
        assert_eq!(
            query(&[("tenant", Some("a(b)*")), ("signal", None)]),
            "?tenant=a%28b%29%2A"
        );
        assert_eq!(query(&[("signal", None)]), "");
    }
}
