//! `TCP_NODELAY` on the Pulsar client's connections to the broker.
//!
//! The `pulsar` crate (6.9.1, the newest) connects without `TCP_NODELAY` and gives no access
//! to its sockets. Nagle's algorithm then holds a frame back until the broker acknowledges the
//! one before, which a delayed ACK puts off by up to 40 ms on Linux: at 1 span/request the p99
//! of an answer was 50 ms instead of 10 ms, and throughput a fifth lower (docs/performance.md,
//! "Observations" 4).
//! So Sluice sets the option itself, after the client may have opened a connection: each
//! socket of this process whose peer is on the broker's port is duplicated through a pidfd of
//! the process (`pidfd_getfd`, no unsafe code), and the option set on the duplicate applies
//! to the socket both share. Best effort: where a sandbox forbids the call, only latency
//! suffers.

use std::net::TcpStream;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::Duration;

use rustix::process::{getpid, pidfd_getfd, pidfd_open, PidfdFlags, PidfdGetfdFlags};
use tokio::sync::{watch, Notify};

/// Least time between two looks at the process's sockets.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Asks for a look at the sockets after something may have connected to the broker.
#[derive(Clone)]
pub(super) struct NoDelay {
    wake: Arc<Notify>,
}

impl NoDelay {
    /// Sets the option on connections to `port` now, and again after each
    /// [`NoDelay::connected`] (at most once a second), until `closed`.
    pub(super) fn spawn(port: u16, mut closed: watch::Receiver<bool>) -> NoDelay {
        let wake = Arc::new(Notify::new());
        let woken = Arc::clone(&wake);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = closed.wait_for(|c| *c) => return,
                    _ = woken.notified() => {}
                }
                // /proc and one syscall per descriptor: off the async workers.
                match tokio::task::spawn_blocking(move || set_on_connections_to(port)).await {
                    Ok(Ok(0)) | Err(_) => {}
                    Ok(Ok(set)) => {
                        tracing::debug!(set, port, "TCP_NODELAY set on Pulsar connections")
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "cannot set TCP_NODELAY on the Pulsar connections")
                    }
                }
                tokio::time::sleep(MIN_INTERVAL).await;
            }
        });
        wake.notify_one();
        NoDelay { wake }
    }

    /// A producer or consumer was created: its connection may be new.
    pub(super) fn connected(&self) {
        self.wake.notify_one();
    }
}

/// The port of the first host of a `pulsar://` or `pulsar+ssl://` service URL.
pub(super) fn broker_port(service_url: &str) -> u16 {
    let tls = service_url.starts_with("pulsar+ssl://");
    let authority = service_url
        .split_once("://")
        .map_or(service_url, |(_, rest)| rest);
    let first = authority.split([',', '/']).next().unwrap_or_default();
    first
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or(if tls { 6651 } else { 6650 })
}

/// Sets `TCP_NODELAY` on every TCP socket of this process connected to `port` that lacks it;
/// returns how many.
fn set_on_connections_to(port: u16) -> std::io::Result<usize> {
    let pidfd = pidfd_open(getpid(), PidfdFlags::empty())?;
    let mut set = 0;
    for entry in std::fs::read_dir("/proc/self/fd")?.flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.as_os_str().as_bytes().starts_with(b"socket:"));
        if !is_socket {
            continue;
        }
        // The descriptor may have been closed since the listing: then this fails, or names
        // another socket, which is fine (only the peer's port decides).
        let Ok(duplicate) = pidfd_getfd(&pidfd, fd, PidfdGetfdFlags::empty()) else {
            continue;
        };
        let stream = TcpStream::from(duplicate);
        let to_broker = stream.peer_addr().is_ok_and(|peer| peer.port() == port);
        if to_broker && stream.nodelay().is_ok_and(|on| !on) && stream.set_nodelay(true).is_ok() {
            set += 1;
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broker_port_comes_from_the_service_url() {
        assert_eq!(broker_port("pulsar://127.0.0.1:6650"), 6650);
        assert_eq!(broker_port("pulsar://a:7000,b:7000"), 7000);
        assert_eq!(broker_port("pulsar+ssl://broker.example"), 6651);
        assert_eq!(broker_port("pulsar://broker.example/"), 6650);
    }

    #[test]
    fn a_connection_to_the_port_gets_tcp_nodelay() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert!(!client.nodelay().unwrap());
        assert!(set_on_connections_to(port).unwrap() >= 1);
        assert!(client.nodelay().unwrap(), "set on the socket itself");
        // The accepted end's peer is on another port: left alone.
        assert!(!accepted.nodelay().unwrap());
    }
}
