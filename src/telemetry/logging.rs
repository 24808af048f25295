//! Logs to stderr through `tracing`, one line per event, human-readable or JSON.

use tracing_subscriber::EnvFilter;

use super::config::LogEncoding;

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `level`.
pub fn init(level: &str, encoding: LogEncoding) {
    // The Pulsar client logs a warning for the first attempt of every connection ("Retry #0");
    // real connection failures reach Sluice's own logs as errors with their cause.
    let quiet = ",pulsar::retry_op=error";
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(format!("{level}{quiet}")))
        .unwrap_or_else(|_| EnvFilter::new(format!("info{quiet}")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // A second init (e.g. in tests) keeps the first subscriber.
    let _ = match encoding {
        LogEncoding::Json => builder.json().flatten_event(true).try_init(),
        LogEncoding::Console => builder.try_init(),
    };
}
