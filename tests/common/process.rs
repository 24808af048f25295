//! A `sluice run` child process: started from a YAML config, ready once `/readyz` says 200,
//! stopped with SIGKILL or SIGTERM. Its stderr goes to a file that is printed when a test fails.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::http::{http_get, metric_sum, metrics_text};

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
static STARTS: AtomicUsize = AtomicUsize::new(0);

pub struct SluiceProcess {
    child: Option<Child>,
    pub grpc_addr: SocketAddr,
    /// `protocols.http.endpoint`, when the config has one.
    pub http_addr: Option<SocketAddr>,
    pub metrics_addr: SocketAddr,
    pub health_addr: SocketAddr,
    pub config_path: PathBuf,
    pub stderr_path: PathBuf,
    pub stdout_path: PathBuf,
}

impl SluiceProcess {
    /// Writes `config_yaml` into `data_dir`, runs `sluice run --config` there and waits until
    /// it is ready. Panics with the tail of its stderr when it exits or is not ready in 30 s.
    pub async fn start(config_yaml: &str, data_dir: &Path) -> SluiceProcess {
        Self::start_command(
            config_yaml,
            data_dir,
            Command::new(env!("CARGO_BIN_EXE_sluice")),
        )
        .await
    }

    /// As [`SluiceProcess::start`], with soft and hard open-files limits of `limit` (set by
    /// util-linux `prlimit`, which then runs Sluice in its own process).
    pub async fn start_with_open_files_limit(
        config_yaml: &str,
        data_dir: &Path,
        limit: u64,
    ) -> SluiceProcess {
        let mut command = Command::new("prlimit");
        command
            .arg(format!("--nofile={limit}:{limit}"))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_sluice"));
        Self::start_command(config_yaml, data_dir, command).await
    }

    /// As [`SluiceProcess::start`], with a tmpfs of `size_mib` mounted at `mount_at` for
    /// Sluice alone: util-linux `unshare` gives it a mount namespace of its own (as root, or
    /// as a user where user namespaces are allowed), so the test makes a small filesystem
    /// that fills up without touching the machine's. The test reaches it through
    /// [`SluiceProcess::own_view`]. Panics (the test fails) if the mount is not possible.
    pub async fn start_on_small_filesystem(
        config_yaml: &str,
        data_dir: &Path,
        mount_at: &Path,
        size_mib: u64,
    ) -> SluiceProcess {
        std::fs::create_dir_all(mount_at).expect("create the mount point");
        let mut command = Command::new("unshare");
        command
            .args(["--mount", "--map-root-user", "--propagation", "private"])
            .args(["sh", "-c"])
            .arg(format!(
                "mount -t tmpfs -o size={size_mib}m sluice-test \"$0\" || exit 97; exec \"$@\""
            ))
            .arg(mount_at)
            .arg(env!("CARGO_BIN_EXE_sluice"));
        Self::start_command(config_yaml, data_dir, command).await
    }

    /// `path` as this Sluice sees it: inside its own mount namespace, if it has one.
    pub fn own_view(&self, path: &Path) -> PathBuf {
        let relative = path.strip_prefix("/").unwrap_or(path);
        PathBuf::from(format!("/proc/{}/root", self.pid())).join(relative)
    }

    async fn start_command(
        config_yaml: &str,
        data_dir: &Path,
        mut command: Command,
    ) -> SluiceProcess {
        let n = STARTS.fetch_add(1, Ordering::Relaxed);
        let config_path = data_dir.join(format!("sluice-{n}.yaml"));
        let stderr_path = data_dir.join(format!("sluice-{n}.stderr"));
        let stdout_path = data_dir.join(format!("sluice-{n}.stdout"));
        std::fs::write(&config_path, config_yaml).expect("write the config");

        let config: serde_yaml::Value = serde_yaml::from_str(config_yaml).expect("config is YAML");
        let addr = |path: &[&str]| -> SocketAddr {
            let mut v = &config;
            for key in path {
                v = &v[*key];
            }
            let text = v
                .as_str()
                .unwrap_or_else(|| panic!("config has no {}", path.join(".")));
            text.parse()
                .unwrap_or_else(|e| panic!("{}: {text:?}: {e}", path.join(".")))
        };
        let grpc_addr = addr(&["receivers", "otlp", "protocols", "grpc", "endpoint"]);
        let http_path = ["receivers", "otlp", "protocols", "http", "endpoint"];
        let http_addr = config["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
            .as_str()
            .map(|_| addr(&http_path));
        let metrics_addr = addr(&["service", "telemetry", "metrics", "address"]);
        let health_addr = addr(&["service", "telemetry", "health", "address"]);

        let child = command
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .current_dir(data_dir)
            .stdin(Stdio::null())
            .stdout(File::create(&stdout_path).expect("create stdout file"))
            .stderr(File::create(&stderr_path).expect("create stderr file"))
            .spawn()
            .expect("spawn the sluice binary");
        let mut process = SluiceProcess {
            child: Some(child),
            grpc_addr,
            http_addr,
            metrics_addr,
            health_addr,
            config_path,
            stderr_path,
            stdout_path,
        };
        process.wait_ready().await;
        process
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last: String;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "sluice exited before it was ready ({status}); stderr:\n{}",
                    self.stderr_tail(60)
                );
            }
            match http_get(self.health_addr, "/readyz").await {
                Ok((200, _)) => return,
                Ok((status, body)) => last = format!("{status}: {body}"),
                Err(e) => last = e,
            }
            if Instant::now() >= deadline {
                panic!(
                    "sluice not ready after {READY_TIMEOUT:?} (last /readyz: {last}); stderr:\n{}",
                    self.stderr_tail(60)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `http://<grpc endpoint>` for OTLP clients.
    pub fn otlp_endpoint(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("sluice is running").id()
    }

    /// Writes `config_yaml` over the config file and sends SIGHUP: Sluice reloads it.
    pub fn reload(&self, config_yaml: &str) {
        std::fs::write(&self.config_path, config_yaml).expect("rewrite the config");
        let status = Command::new("kill")
            .args(["-HUP", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -HUP failed");
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits (up to 30 s) for the exit status.
    pub async fn terminate(&mut self) -> ExitStatus {
        let pid = self.pid();
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill -TERM");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            let child = self.child.as_mut().expect("sluice is running");
            if let Some(status) = child.try_wait().expect("wait for sluice") {
                self.child = None;
                return status;
            }
            if Instant::now() >= deadline {
                panic!(
                    "sluice still running {STOP_TIMEOUT:?} after SIGTERM; stderr:\n{}",
                    self.stderr_tail(60)
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Everything sluice wrote to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// Everything sluice wrote to stderr so far, or why it cannot be read (e.g. its
    /// directory was removed while the process ran).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path)
            .unwrap_or_else(|e| format!("(cannot read {}: {e})", self.stderr_path.display()))
    }

    pub fn stderr_tail(&self, lines: usize) -> String {
        let all = self.stderr();
        let all: Vec<&str> = all.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub async fn metrics(&self) -> String {
        metrics_text(self.metrics_addr).await
    }

    /// [`metric_sum`] over a fresh scrape.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_sum(&self.metrics().await, name, labels)
    }

    /// Waits until nothing more can reach a backend for `tenant`'s `signal`: every item
    /// stored was exported or dead-lettered (`GET /tenants`) and no send is in flight. After
    /// that no duplicate can still arrive, so what a backend holds can be counted exactly.
    pub async fn wait_settled(&self, tenant: &str, signal: &str, timeout: Duration) {
        let what =
            format!("{tenant}'s {signal} settled: all stored items exported, no send in flight");
        super::wait_for(&what, timeout, || async {
            let (status, body) = http_get(self.health_addr, "/tenants").await?;
            let table: serde_json::Value =
                serde_json::from_str(&body).map_err(|e| format!("{status} {body}: {e}"))?;
            let row = table["tenants"]
                .as_array()
                .and_then(|rows| {
                    rows.iter()
                        .find(|r| r["tenant"] == tenant && r["signal"] == signal)
                })
                .cloned()
                .ok_or_else(|| format!("no row yet: {body}"))?;
            let count = |key: &str| row[key].as_u64().unwrap_or(0);
            let done = count("exported_items") + count("dead_lettered_items");
            let in_flight = self.metric("sluice_exporter_sends_in_flight", &[]).await;
            if count("stored_items") > 0 && done >= count("stored_items") && in_flight == 0.0 {
                Ok(())
            } else {
                Err(format!("{row}, sends in flight {in_flight}"))
            }
        })
        .await;
    }
}

impl Drop for SluiceProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- sluice stderr ({}) ----\n{}\n---- end of sluice stderr ----",
                self.stderr_path.display(),
                self.stderr_tail(200)
            );
        }
        self.kill();
    }
}

/// Sends `requests` requests of `per_request` spans named `{tenant}-r{r}-{i}` as `tenant`;
/// returns the names. Every request must be accepted.
pub async fn send_named_spans(
    sluice: &SluiceProcess,
    tenant: &str,
    requests: usize,
    per_request: usize,
) -> std::collections::BTreeSet<String> {
    send_prefixed_spans(sluice, tenant, tenant, requests, per_request).await
}

/// [`send_named_spans`] with the spans named `{prefix}-r{r}-{i}`, so that one tenant can be
/// sent several sets told apart.
pub async fn send_prefixed_spans(
    sluice: &SluiceProcess,
    tenant: &str,
    prefix: &str,
    requests: usize,
    per_request: usize,
) -> std::collections::BTreeSet<String> {
    use super::otlp::{channel, export_traces, named_spans, trace_request};
    let client = channel(&sluice.otlp_endpoint()).await;
    let mut names = std::collections::BTreeSet::new();
    for r in 0..requests {
        let spans = named_spans(
            &format!("{prefix}-r{r}"),
            (r * per_request) as u64,
            per_request,
        );
        names.extend(spans.iter().map(|s| s.name.clone()));
        let request = trace_request("sluice-it", None, spans);
        if let Err(status) = export_traces(&client, Some(tenant), request).await {
            panic!("request {r} of {tenant} refused: {status:?}");
        }
    }
    names
}
