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

/// The subject the consumer `name` of `stream` is filtered on, if it exists.
pub async fn consumer_filter(stream: &str, name: &str) -> Option<String> {
    use async_nats::jetstream::consumer::pull;
    let client = async_nats::connect(url()).await.expect("connect to NATS");
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream(stream).await.ok()?;
    let consumer = stream.get_consumer::<pull::Config>(name).await.ok()?;
    Some(consumer.cached_info().config.filter_subject.clone())
}

/// How many messages `stream` holds.
pub async fn stream_messages(stream: &str) -> u64 {
    let client = async_nats::connect(url()).await.expect("connect to NATS");
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream(stream).await.expect("the stream exists");
    stream.info().await.expect("stream info").state.messages
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
