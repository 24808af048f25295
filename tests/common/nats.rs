//! The NATS server `make test` starts (deploy/nats/server.sh, through
//! deploy/pulsar/with-broker.sh), and a client to look into its streams.

/// The server's URL. Fails loudly when it is not set: the NATS tests are never skipped.
pub fn url() -> String {
    match std::env::var("SLUICE_NATS_URL") {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "SLUICE_NATS_URL is not set: the NATS tests need the server that `make test` \
             starts; run `make test` (or `make nats` and export \
             SLUICE_NATS_URL=nats://127.0.0.1:4222)"
        ),
    }
}

/// The subjects of `stream` holding messages, with how many each holds.
pub async fn subjects(stream: &str) -> std::collections::BTreeMap<String, u64> {
    use futures::TryStreamExt;
    let client = async_nats::connect(url()).await.expect("connect to NATS");
    let js = async_nats::jetstream::new(client);
    let Ok(stream) = js.get_stream(stream).await else {
        return Default::default();
    };
    let mut subjects = stream
        .info_with_subjects(">")
        .await
        .expect("stream subjects");
    let mut out = std::collections::BTreeMap::new();
    while let Some((subject, count)) = subjects.try_next().await.expect("next subject") {
        out.insert(subject, count as u64);
    }
    out
}

/// The header `name` of the last message on `subject` in `stream`.
pub async fn last_header(stream: &str, subject: &str, name: &str) -> Option<String> {
    let client = async_nats::connect(url()).await.expect("connect to NATS");
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream(stream).await.ok()?;
    let message = stream.get_last_raw_message_by_subject(subject).await.ok()?;
    message.headers.get(name).map(|v| v.as_str().to_string())
}

/// Runs `deploy/nats/server.sh <command>` (`stop`, `resume`, …) on the NATS broker `make test`
/// started.
pub fn script(command: &str) {
    super::run_script(
        concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/nats/server.sh"),
        command,
    );
}
