//! Peers that never answer: an address that refuses connections
//! ([`refused_addr`]) and one that accepts and stays silent
//! ([`HangingListener`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// An address where connecting is refused. The port stays reserved for the
/// life of the test process (a socket bound but never listening, which the
/// kernel answers with RST), so no other test's server can take it over.
pub fn refused_addr() -> SocketAddr {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
    let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&any_port.into()).expect("bind 127.0.0.1:0");
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    // Deliberately leaked: keeps the port bound (and refusing) until exit.
    std::mem::forget(socket);
    addr
}

/// [`refused_addr`] as a base URL.
pub fn refused_url() -> String {
    format!("http://{}", refused_addr())
}

/// A listener that accepts connections and never reads or answers: the
/// connection succeeds, the request times out. Stops when dropped.
pub struct HangingListener {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl HangingListener {
    pub async fn start() -> HangingListener {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                held.push(stream);
            }
        });
        HangingListener {
            addr,
            accepted,
            task,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for HangingListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}
