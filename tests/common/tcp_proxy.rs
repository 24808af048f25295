//! A TCP relay that a test can cut like a link to a service that went away:
//! [`TcpProxy::cut`] closes every relayed connection and the port, so new connections are
//! refused; [`TcpProxy::restore`] listens on the same port again.

use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};

use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct TcpProxy {
    addr: SocketAddr,
    target: SocketAddr,
    /// Bumped by each cut: the listener and the relays of before it end.
    cuts: watch::Sender<u64>,
    listener: Mutex<Option<JoinHandle<()>>>,
}

impl TcpProxy {
    /// Relays a fresh local port to `target`.
    pub async fn start(target: SocketAddr) -> TcpProxy {
        let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let addr = free.local_addr().expect("local address");
        drop(free);
        let proxy = TcpProxy {
            addr,
            target,
            cuts: watch::channel(0).0,
            listener: Mutex::new(None),
        };
        proxy.restore();
        proxy
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every relayed connection and the port; returns once the port is closed.
    pub async fn cut(&self) {
        self.cuts.send_modify(|n| *n += 1);
        let listener = self
            .listener
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(listener) = listener {
            let _ = listener.await;
        }
    }

    /// Listens on the port again.
    pub fn restore(&self) {
        let socket = TcpSocket::new_v4().expect("a TCP socket");
        // Connections closed by a cut may linger in TIME_WAIT on this port.
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        socket.bind(self.addr).expect("bind the proxy's port");
        let listener = socket.listen(64).expect("listen");
        let target = self.target;
        let mut cut = self.cuts.subscribe();
        cut.mark_unchanged();
        let task = tokio::spawn(async move {
            loop {
                let mut inbound = tokio::select! {
                    _ = cut.changed() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((inbound, _)) => inbound,
                        Err(_) => continue,
                    },
                };
                let mut relay_cut = cut.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = relay_cut.changed() => {}
                    }
                });
            }
        });
        *self.listener.lock().unwrap_or_else(PoisonError::into_inner) = Some(task);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cuts.send_modify(|n| *n += 1);
    }
}
