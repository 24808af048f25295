//! The few calls Sluice makes to the broker's admin REST API: topic stats (each tenant's
//! backlog, `backlog.rs`; whether an idle stream has messages, `consumer.rs`), a subscription
//! with eviction bounds that keeps each dead-letter topic's messages (`dead_letter.rs`), and
//! topic retention with a replay subscription reset to a time (`replay.rs`). Requests
//! carry the buffer's `auth` credentials as a bearer token.

use std::collections::HashMap;
use std::time::Duration;

use pulsar::authentication::Authentication;
use tokio::sync::Mutex;

/// How long one admin request may take.
const TIMEOUT: Duration = Duration::from_secs(10);

pub(super) struct AdminClient {
    http: reqwest::Client,
    base: String,
    auth: Mutex<Option<Box<dyn Authentication>>>,
}

#[derive(Debug, thiserror::Error)]
pub(super) enum AdminError {
    #[error("cannot reach the Pulsar admin API: {0}")]
    Http(#[from] reqwest::Error),
    #[error("the Pulsar admin API answered {status} to {what}: {body}")]
    Status {
        status: reqwest::StatusCode,
        what: String,
        body: String,
    },
    #[error("cannot get a token for the Pulsar admin API: {0}")]
    Auth(String),
    #[error("unexpected answer from the Pulsar admin API: {0}")]
    Decode(#[from] serde_json::Error),
}

impl AdminClient {
    pub(super) fn new(base: String, auth: Option<Box<dyn Authentication>>) -> AdminClient {
        AdminClient {
            http: reqwest::Client::new(),
            base,
            auth: Mutex::new(auth),
        }
    }

    /// The admin path of a topic: `persistent/<tenant>/<namespace>/<name>`.
    fn topic_path(topic: &str) -> String {
        topic.replacen("://", "/", 1)
    }

    async fn token(&self) -> Result<Option<String>, AdminError> {
        let mut auth = self.auth.lock().await;
        let Some(auth) = auth.as_mut() else {
            return Ok(None);
        };
        let data = auth
            .auth_data()
            .await
            .map_err(|e| AdminError::Auth(e.to_string()))?;
        String::from_utf8(data)
            .map(Some)
            .map_err(|_| AdminError::Auth("the token is not UTF-8".into()))
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        what: String,
    ) -> Result<Option<bytes::Bytes>, AdminError> {
        let mut request = request.timeout(TIMEOUT);
        if let Some(token) = self.token().await? {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body = response.bytes().await?;
        if !status.is_success() {
            return Err(AdminError::Status {
                status,
                what,
                body: String::from_utf8_lossy(&body).chars().take(300).collect(),
            });
        }
        Ok(Some(body))
    }

    /// The topic's stats; for a partitioned topic (whose own name the broker does not know
    /// as a topic) the partitions' stats added up, which have the same fields. `None` when
    /// the broker has neither.
    async fn stats(&self, topic: &str) -> Result<Option<bytes::Bytes>, AdminError> {
        Ok(self
            .get_plain_or_partitioned(topic, "stats", "partitioned-stats?perPartition=false")
            .await?
            .map(|(_, body)| body))
    }

    /// `GET` of `plain` on `topic`; when the broker has no plain topic of that name, of
    /// `partitioned` on it as a partitioned topic. The body, and whether it came from the
    /// second; `None` when the broker has neither.
    async fn get_plain_or_partitioned(
        &self,
        topic: &str,
        plain: &str,
        partitioned: &str,
    ) -> Result<Option<(bool, bytes::Bytes)>, AdminError> {
        let path = Self::topic_path(topic);
        for (is_partitioned, what) in [(false, plain), (true, partitioned)] {
            let url = format!("{}/admin/v2/{path}/{what}", self.base);
            if let Some(body) = self
                .send(
                    self.http.get(url),
                    format!("{} of {topic}", what.split('?').next().unwrap_or(what)),
                )
                .await?
            {
                return Ok(Some((is_partitioned, body)));
            }
        }
        Ok(None)
    }

    /// How many partitions `topic` has: 0 for a plain topic or none at all.
    pub(super) async fn partitions(&self, topic: &str) -> Result<u32, AdminError> {
        #[derive(serde::Deserialize)]
        struct Metadata {
            #[serde(default)]
            partitions: u32,
        }
        let url = self.partitions_url(topic);
        match self
            .send(self.http.get(url), format!("partitions of {topic}"))
            .await?
        {
            Some(body) => Ok(serde_json::from_slice::<Metadata>(&body)?.partitions),
            None => Ok(0),
        }
    }

    /// Creates `topic` as a partitioned topic of `count` partitions. The broker answers
    /// `409 Conflict` when a topic of that name exists, plain or partitioned.
    pub(super) async fn create_partitioned(
        &self,
        topic: &str,
        count: u32,
    ) -> Result<(), AdminError> {
        let url = self.partitions_url(topic);
        self.put(
            url,
            &count.into(),
            format!("creation of {topic} with {count} partitions"),
        )
        .await
    }

    /// Grows the partitioned `topic` to `count` partitions (the broker creates the export
    /// subscription on the new ones too).
    pub(super) async fn grow_partitions(&self, topic: &str, count: u32) -> Result<(), AdminError> {
        let url = self.partitions_url(topic);
        self.post(
            url,
            &count.into(),
            format!("growth of {topic} to {count} partitions"),
        )
        .await
    }

    fn partitions_url(&self, topic: &str) -> String {
        format!(
            "{}/admin/v2/{}/partitions",
            self.base,
            Self::topic_path(topic)
        )
    }

    /// The topic's `backlogSize` (bytes its subscriptions have not acknowledged, as stored),
    /// or 0 for a topic the broker does not have.
    pub(super) async fn backlog_bytes(&self, topic: &str) -> Result<u64, AdminError> {
        #[derive(serde::Deserialize)]
        struct TopicStats {
            #[serde(rename = "backlogSize", default)]
            backlog_size: i64,
        }
        match self.stats(topic).await? {
            Some(body) => {
                let stats: TopicStats = serde_json::from_slice(&body)?;
                Ok(stats.backlog_size.max(0) as u64)
            }
            None => Ok(0),
        }
    }

    /// Messages of `subscription` on `topic` not yet acknowledged; 0 when the broker has
    /// neither. Lets a stream whose consumer is closed see data published by other processes
    /// without subscribing.
    pub(super) async fn subscription_backlog(
        &self,
        topic: &str,
        subscription: &str,
    ) -> Result<u64, AdminError> {
        #[derive(serde::Deserialize)]
        struct SubscriptionStats {
            #[serde(rename = "msgBacklog", default)]
            msg_backlog: i64,
        }
        #[derive(serde::Deserialize)]
        struct TopicStats {
            #[serde(default)]
            subscriptions: HashMap<String, SubscriptionStats>,
        }
        let Some(body) = self.stats(topic).await? else {
            return Ok(0);
        };
        let stats: TopicStats = serde_json::from_slice(&body)?;
        Ok(stats
            .subscriptions
            .get(subscription)
            .map_or(0, |s| s.msg_backlog.max(0) as u64))
    }

    /// Moves `subscription` to the end of `topic`: every message it held is acknowledged (and
    /// deleted by the broker once no subscription holds it). A missing topic has nothing to
    /// skip.
    pub(super) async fn skip_all(&self, topic: &str, subscription: &str) -> Result<(), AdminError> {
        let url = format!(
            "{}/admin/v2/{}/subscription/{subscription}/skip_all",
            self.base,
            Self::topic_path(topic)
        );
        let what = format!("skip_all of {subscription} on {topic}");
        match self.post(url, &serde_json::Value::Null, what).await {
            Err(AdminError::Status { status, .. }) if status == reqwest::StatusCode::NOT_FOUND => {
                Ok(())
            }
            other => other,
        }
    }

    /// Creates a durable subscription at the topic's earliest message; an existing one is
    /// left as it is.
    pub(super) async fn create_subscription(
        &self,
        topic: &str,
        subscription: &str,
    ) -> Result<(), AdminError> {
        let url = format!(
            "{}/admin/v2/{}/subscription/{subscription}",
            self.base,
            Self::topic_path(topic)
        );
        let earliest = serde_json::json!({ "ledgerId": -1, "entryId": -1, "partitionIndex": -1 });
        let what = format!("subscription {subscription} of {topic}");
        match self.put(url, &earliest, what).await {
            Err(AdminError::Status { status, .. }) if status == reqwest::StatusCode::CONFLICT => {
                Ok(())
            }
            other => other,
        }
    }

    /// Bounds the topic's backlog: past `size_bytes` (storage) or `age_seconds` (message
    /// age) the broker evicts the oldest messages of the subscriptions (never blocking
    /// producers). `None`: that bound is not set.
    pub(super) async fn set_eviction(
        &self,
        topic: &str,
        size_bytes: Option<u64>,
        age_seconds: Option<u64>,
    ) -> Result<(), AdminError> {
        let quotas = [
            ("destination_storage", "limitSize", size_bytes),
            ("message_age", "limitTime", age_seconds),
        ];
        for (kind, field, limit) in quotas {
            let Some(limit) = limit else { continue };
            let mut body = serde_json::json!({
                "limitSize": -1,
                "limitTime": -1,
                "policy": "consumer_backlog_eviction",
            });
            body[field] = serde_json::json!(limit);
            let url = format!(
                "{}/admin/v2/{}/backlogQuota?backlogQuotaType={kind}",
                self.base,
                Self::topic_path(topic)
            );
            self.post(url, &body, format!("{kind} backlog quota of {topic}"))
                .await?;
        }
        Ok(())
    }

    /// Sets the topic's retention policy: acknowledged messages are kept for `minutes` and
    /// up to `size_mib` (`-1`: no such bound).
    pub(super) async fn set_retention(
        &self,
        topic: &str,
        minutes: i64,
        size_mib: i64,
    ) -> Result<(), AdminError> {
        let url = format!(
            "{}/admin/v2/{}/retention",
            self.base,
            Self::topic_path(topic)
        );
        let body = serde_json::json!({
            "retentionTimeInMinutes": minutes,
            "retentionSizeInMB": size_mib,
        });
        self.post(url, &body, format!("retention of {topic}")).await
    }

    /// Where `subscription` has acknowledged everything before and at, `(ledger, entry)`, by
    /// topic: `topic` itself, or each partition of a partitioned topic. Empty when the
    /// broker has neither the topic nor the subscription.
    pub(super) async fn acknowledged_positions(
        &self,
        topic: &str,
        subscription: &str,
    ) -> Result<HashMap<String, (i64, i64)>, AdminError> {
        #[derive(serde::Deserialize)]
        struct Cursor {
            #[serde(rename = "markDeletePosition")]
            mark_delete_position: String,
        }
        #[derive(serde::Deserialize)]
        struct InternalStats {
            #[serde(default)]
            cursors: HashMap<String, Cursor>,
        }
        #[derive(serde::Deserialize)]
        struct PartitionedInternalStats {
            #[serde(default)]
            partitions: HashMap<String, InternalStats>,
        }
        let by_topic = match self
            .get_plain_or_partitioned(topic, "internalStats", "partitioned-internalStats")
            .await?
        {
            Some((false, body)) => HashMap::from([(
                topic.to_string(),
                serde_json::from_slice::<InternalStats>(&body)?,
            )]),
            Some((true, body)) => {
                serde_json::from_slice::<PartitionedInternalStats>(&body)?.partitions
            }
            None => HashMap::new(),
        };
        let mut positions = HashMap::new();
        for (name, stats) in by_topic {
            let Some(cursor) = stats.cursors.get(subscription) else {
                continue;
            };
            let position = cursor
                .mark_delete_position
                .split_once(':')
                .and_then(|(l, e)| Some((l.parse().ok()?, e.parse().ok()?)))
                .ok_or_else(|| AdminError::Status {
                    status: reqwest::StatusCode::OK,
                    what: format!("the position of {subscription} on {name}"),
                    body: format!(
                        "markDeletePosition {:?} is not ledger:entry",
                        cursor.mark_delete_position
                    ),
                })?;
            positions.insert(name, position);
        }
        Ok(positions)
    }

    /// Moves `subscription` to the first message published at or after `timestamp_ms`.
    pub(super) async fn reset_cursor(
        &self,
        topic: &str,
        subscription: &str,
        timestamp_ms: u64,
    ) -> Result<(), AdminError> {
        let url = format!(
            "{}/admin/v2/{}/subscription/{subscription}/resetcursor/{timestamp_ms}",
            self.base,
            Self::topic_path(topic)
        );
        let what = format!("reset of {subscription} on {topic}");
        self.post(url, &serde_json::Value::Null, what).await
    }

    /// Deletes `subscription` of `topic`, disconnecting its consumers; a missing one is gone
    /// already.
    pub(super) async fn delete_subscription(
        &self,
        topic: &str,
        subscription: &str,
    ) -> Result<(), AdminError> {
        let url = format!(
            "{}/admin/v2/{}/subscription/{subscription}?force=true",
            self.base,
            Self::topic_path(topic)
        );
        self.send(
            self.http.delete(url),
            format!("deletion of {subscription} on {topic}"),
        )
        .await
        .map(drop)
    }

    async fn put(
        &self,
        url: String,
        body: &serde_json::Value,
        what: String,
    ) -> Result<(), AdminError> {
        self.write(self.http.put(url), body, what).await
    }

    async fn post(
        &self,
        url: String,
        body: &serde_json::Value,
        what: String,
    ) -> Result<(), AdminError> {
        self.write(self.http.post(url), body, what).await
    }

    /// Sends a JSON write whose target must exist.
    async fn write(
        &self,
        request: reqwest::RequestBuilder,
        body: &serde_json::Value,
        what: String,
    ) -> Result<(), AdminError> {
        let request = request
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(body)?);
        match self.send(request, what.clone()).await? {
            Some(_) => Ok(()),
            None => Err(AdminError::Status {
                status: reqwest::StatusCode::NOT_FOUND,
                what,
                body: "topic not found".into(),
            }),
        }
    }
}
