use super::*;

// =============================================================================================
// Preconditions and peer processes
// =============================================================================================

pub(crate) fn peers_bin_dir() -> PathBuf {
    std::env::var_os("SLUICE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache"))
        .join("peers")
        .join("bin")
}

pub(crate) struct Peers {
    pub(crate) collector: PathBuf,
    pub(crate) telemetrygen: PathBuf,
}

/// The peer binaries and the Pulsar broker, or a panic that says how to get them (never a
/// skip).
pub(crate) fn preflight() -> Peers {
    preflight_for("Pulsar", &["SLUICE_PULSAR_URL", "SLUICE_PULSAR_ADMIN_URL"])
}

/// The peer binaries and the Kafka broker, or a panic that says how to get them.
pub(crate) fn preflight_kafka() -> Peers {
    preflight_for("Kafka", &["SLUICE_KAFKA_BROKERS"])
}

/// The peer binaries and the `broker` the variables `vars` point at.
fn preflight_for(broker: &str, vars: &[&str]) -> Peers {
    let bin = peers_bin_dir();
    let peers = Peers {
        collector: bin.join("otelcol-sluice-peer"),
        telemetrygen: bin.join("telemetrygen"),
    };
    let mut missing = Vec::new();
    for path in [&peers.collector, &peers.telemetrygen] {
        if !path.is_file() {
            missing.push(format!(
                "{} does not exist: `make peers` builds it",
                path.display()
            ));
        }
    }
    for var in vars {
        if std::env::var(var).map_or(true, |v| v.is_empty()) {
            missing.push(format!(
                "{var} is not set: the test needs the {broker} broker that `make interop` starts"
            ));
        }
    }
    assert!(
        missing.is_empty(),
        "the Collector interoperability test cannot run; run `make interop` (it runs `make \
         peers`, starts the brokers and then this test):\n  - {}",
        missing.join("\n  - ")
    );
    peers
}

pub(crate) fn peer_config(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/peers")
        .join(name)
}

/// A Collector child process; its log (stderr and stdout) goes to a file that is printed when
/// the test fails. Killed on drop.
pub(crate) struct Collector {
    pub(crate) child: Option<Child>,
    pub(crate) log_path: PathBuf,
}

impl Collector {
    /// Starts the peer Collector with `deploy/peers/<config>` and `env`, and waits until it
    /// says that every component runs.
    pub(crate) async fn start(
        bin: &Path,
        config: &str,
        env: &[(&str, String)],
        dir: &Path,
    ) -> Collector {
        let log_path = dir.join(format!("collector-{config}.log"));
        let log = File::create(&log_path).expect("create the Collector log");
        let child = Command::new(bin)
            .arg("--config")
            .arg(peer_config(config))
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let mut collector = Collector {
            child: Some(child),
            log_path,
        };
        let what = format!("the Collector ({config}) to start");
        wait_for(&what, WAIT, || {
            let exited = collector
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                panic!(
                    "the Collector exited at start ({status}); its log:\n{}",
                    collector.log()
                );
            }
            let ready = collector.log().contains("Everything is ready");
            async move {
                if ready {
                    Ok(())
                } else {
                    Err("not ready".to_string())
                }
            }
        })
        .await;
        collector
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Fails the test if the Collector logged anything at warning level or above.
    pub(crate) fn assert_no_problems(&self) {
        let problems = self.problems();
        assert!(
            problems.is_empty(),
            "the Collector logged problems:\n{}",
            problems.join("\n")
        );
    }

    /// Log lines at warning level or above (the Collector logs tab-separated, level second).
    pub(crate) fn problems(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| {
                let level = l.split('\t').nth(1).unwrap_or("");
                matches!(level, "warn" | "error" | "fatal" | "panic")
            })
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "---- Collector log ({}) ----\n{}\n---- end of Collector log ----",
                self.log_path.display(),
                lines[lines.len().saturating_sub(100)..].join("\n")
            );
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `telemetrygen <signal> --<signal> N` against `endpoint` (OTLP/gRPC, plaintext), its
/// requests carrying `metadata` as headers, and waits for it to finish; panics with its output
/// when it fails.
pub(crate) async fn telemetrygen(
    bin: &Path,
    signal: &str,
    n: usize,
    endpoint: &str,
    metadata: &Metadata,
) {
    let mut command = tokio::process::Command::new(bin);
    for (name, value) in metadata {
        // telemetrygen's format: key="value", the quotes part of the argument.
        command
            .arg("--otlp-header")
            .arg(format!("{name}=\"{value}\""));
    }
    command
        .arg(signal)
        .arg(format!("--{signal}"))
        .arg(n.to_string())
        .args([
            "--otlp-endpoint",
            endpoint,
            "--otlp-insecure",
            "--workers",
            "1",
            "--rate",
            "0",
        ])
        .kill_on_drop(true);
    let out = tokio::time::timeout(WAIT, command.output())
        .await
        .unwrap_or_else(|_| panic!("telemetrygen {signal} did not finish within {WAIT:?}"))
        .unwrap_or_else(|e| panic!("run {}: {e}", bin.display()));
    assert!(
        out.status.success(),
        "telemetrygen {signal} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The broker's stats of `topic`, or why not (the topic may not exist yet).
pub(crate) async fn stats(topic: &str, which: &str) -> Result<Value, String> {
    let path = topic.replace("persistent://", "/admin/v2/persistent/") + "/" + which;
    let body = pulsar::admin_get(&path).await?;
    serde_json::from_str(&body).map_err(|e| format!("{which} of {topic}: {e}: {body}"))
}

/// How many entries the broker has stored for `topic` (fewer than messages when batched).
pub(crate) async fn entries(topic: &str) -> u64 {
    let stats = stats(topic, "internalStats")
        .await
        .unwrap_or_else(|e| panic!("internal stats of {topic}: {e}"));
    stats["entriesAddedCounter"].as_u64().unwrap_or_else(|| {
        panic!("no entriesAddedCounter in the internal stats of {topic}: {stats}")
    })
}

/// Waits until `subscription` on `topic` has a connected consumer.
pub(crate) async fn wait_subscribed(topic: &str, subscription: &str) {
    let what = format!("subscription {subscription} on {topic}");
    wait_for(&what, WAIT, || async {
        let stats = stats(topic, "stats").await?;
        let consumers = stats["subscriptions"][subscription]["consumers"]
            .as_array()
            .map_or(0, Vec::len);
        if consumers > 0 {
            Ok(())
        } else {
            Err(format!("{consumers} consumers"))
        }
    })
    .await;
}
