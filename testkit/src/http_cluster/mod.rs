//! A real HTTP/1.1 server on loopback that plays one address of a remote
//! cluster (a CUCM TFTP server's port 6970) in integration tests and in
//! the boot-storm bench.
//!
//! It is a small hand-written responder on a tokio `TcpListener`, so it can
//! misbehave at the byte level: hang, lie about `Content-Length`, reset the
//! connection mid-body, stall mid-body. By default it answers like CUCM:
//! `200 OK` with `Content-Length`, `Cache-Control: no-store`,
//! `Content-Type: */*`, no ETag; unknown names get 404. Keep-alive is
//! supported (several requests per connection).
//!
//! ```ignore
//! let cluster = HttpCluster::start().await;
//! cluster.put("SEP001122334455.cnf.xml", "<device/>");
//! cluster.set_status(503);               // every request answers 503
//! cluster.clear_status();
//! cluster.behave_for("big.sbn", Behaviour { reset_mid_body: true, ..Default::default() });
//! assert_eq!(cluster.requests_for("SEP001122334455.cnf.xml"), 1);
//! ```
//!
//! Everything stops (listener and every open connection) when the handle
//! drops.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

mod behaviour;
mod hanging;
mod request;
mod server;

pub use behaviour::Behaviour;
pub use hanging::{refused_addr, refused_url, HangingListener};
pub use request::{percent_decode, RecordedRequest};
use server::accept_loop;

#[derive(Default)]
struct State {
    files: HashMap<String, Bytes>,
    behaviour: Behaviour,
    overrides: HashMap<String, Behaviour>,
    log: Vec<RecordedRequest>,
}

struct Shared {
    state: Mutex<State>,
    connections: AtomicUsize,
    request_seen: Notify,
}

/// A loopback HTTP server playing one cluster address. See the module docs.
pub struct HttpCluster {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for HttpCluster {
    fn drop(&mut self) {
        // The accept task owns the JoinSet of connection tasks: aborting it
        // drops the set, which aborts every connection.
        self.task.abort();
    }
}

impl HttpCluster {
    /// Binds `127.0.0.1:0` and starts serving (no files yet).
    pub async fn start() -> HttpCluster {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            connections: AtomicUsize::new(0),
            request_seen: Notify::new(),
        });
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        HttpCluster { addr, shared, task }
    }

    /// Starts `N` servers, one after the other: `let [a, b] = HttpCluster::start_many().await;`
    pub async fn start_many<const N: usize>() -> [HttpCluster; N] {
        let mut servers = Vec::with_capacity(N);
        for _ in 0..N {
            servers.push(HttpCluster::start().await);
        }
        match servers.try_into() {
            Ok(servers) => servers,
            Err(_) => unreachable!("N servers were started"),
        }
    }

    /// Starts a server that already holds `files`.
    pub async fn with_files<N: Into<String>, B: Into<Bytes>>(
        files: impl IntoIterator<Item = (N, B)>,
    ) -> HttpCluster {
        let cluster = HttpCluster::start().await;
        for (name, body) in files {
            cluster.put(name, body);
        }
        cluster
    }

    /// `http://127.0.0.1:PORT` (no trailing slash), as a cluster address.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    // ---- files -------------------------------------------------------------

    /// Serves `body` for `name` (no leading `/`; matched exactly, case-sensitive).
    pub fn put(&self, name: impl Into<String>, body: impl Into<Bytes>) {
        self.state().files.insert(name.into(), body.into());
    }

    /// Stops serving `name` (it answers 404 again).
    pub fn remove(&self, name: &str) {
        self.state().files.remove(name);
    }

    // ---- observation ---------------------------------------------------------

    /// Requests received (fully read), all names.
    pub fn requests(&self) -> usize {
        self.state().log.len()
    }

    /// Requests received for `name` (decoded, without leading `/`).
    pub fn requests_for(&self, name: &str) -> usize {
        self.state().log.iter().filter(|r| r.name == name).count()
    }

    /// Every request so far, in arrival order.
    pub fn request_log(&self) -> Vec<RecordedRequest> {
        self.state().log.clone()
    }

    /// The last request, if any.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.state().log.last().cloned()
    }

    /// The last request's headers (names lower-cased); empty if none yet.
    pub fn last_headers(&self) -> Vec<(String, String)> {
        self.last_request().map(|r| r.headers).unwrap_or_default()
    }

    /// The last request's header `name` (any case).
    pub fn last_header(&self, name: &str) -> Option<String> {
        self.last_request()
            .and_then(|r| r.header(name).map(str::to_owned))
    }

    /// TCP connections accepted so far (to check connection reuse).
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Forgets the request log and the connection count.
    pub fn reset_counters(&self) {
        self.state().log.clear();
        self.shared.connections.store(0, Ordering::SeqCst);
    }

    /// Waits until at least `n` requests were received; false on time-out.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.request_seen.notified();
            if self.requests() >= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.requests() >= n;
            }
        }
    }
}
