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
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};

/// How the server answers. The cluster-wide behaviour applies to every
/// request unless a per-name override ([`HttpCluster::behave_for`]) exists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Behaviour {
    /// Answer every request with this status (with the file's body when the
    /// status is 200 and the file exists, an empty body for 200 otherwise,
    /// a short text body for other statuses).
    pub status: Option<u16>,
    /// Wait this long after reading the request before answering.
    pub delay: Duration,
    /// Read the request and never answer (the connection stays open).
    pub hang: bool,
    /// Send a `Content-Length` larger than the body actually sent, then close.
    pub wrong_length: bool,
    /// Send a `Content-Length` smaller than the body actually sent, and keep
    /// the connection open.
    pub short_length: bool,
    /// Send the headers and half the body, then reset the connection (RST).
    pub reset_mid_body: bool,
    /// Send the headers and half the body, then stall (keep the connection
    /// open, send nothing more).
    pub stall_mid_body: bool,
    /// Send the body with `Transfer-Encoding: chunked` (no `Content-Length`).
    pub chunked: bool,
    /// Send the body in pieces of this many bytes with this pause before
    /// each (a slow but steady link).
    pub trickle: Option<(usize, Duration)>,
    /// Extra response headers (e.g. `Location` for a 302, `Retry-After`).
    pub headers: Vec<(String, String)>,
}

/// One request as the server saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    /// The request target exactly as sent (still percent-encoded).
    pub target: String,
    /// The file name: the target's path percent-decoded, leading `/` removed.
    pub name: String,
    /// Headers in order, names lower-cased.
    pub headers: Vec<(String, String)>,
}

impl RecordedRequest {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

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

    // ---- behaviour (cluster-wide) -------------------------------------------

    /// Every request answers `status` (e.g. 503, 500, 302, 403).
    pub fn set_status(&self, status: u16) {
        self.state().behaviour.status = Some(status);
    }

    /// Back to normal statuses (200 for files, 404 otherwise).
    pub fn clear_status(&self) {
        self.state().behaviour.status = None;
    }

    /// Waits `delay` after reading each request before answering.
    pub fn set_delay(&self, delay: Duration) {
        self.state().behaviour.delay = delay;
    }

    /// Accepts and reads requests but never answers.
    pub fn set_hang(&self, on: bool) {
        self.state().behaviour.hang = on;
    }

    /// Announces a `Content-Length` larger than the body, sends the body, closes.
    pub fn set_wrong_length(&self, on: bool) {
        self.state().behaviour.wrong_length = on;
    }

    /// Announces a `Content-Length` smaller than the body, sends it all, keeps
    /// the connection open.
    pub fn set_short_length(&self, on: bool) {
        self.state().behaviour.short_length = on;
    }

    /// Sends the body in `piece`-byte pieces, pausing `pause` before each.
    pub fn set_trickle(&self, piece: usize, pause: Duration) {
        self.state().behaviour.trickle = Some((piece, pause));
    }

    /// Sends headers and half the body, then resets the connection.
    pub fn set_reset_mid_body(&self, on: bool) {
        self.state().behaviour.reset_mid_body = on;
    }

    /// Sends headers and half the body, then goes silent (connection open).
    pub fn set_stall_mid_body(&self, on: bool) {
        self.state().behaviour.stall_mid_body = on;
    }

    /// Uses `Transfer-Encoding: chunked` instead of `Content-Length`.
    pub fn set_chunked(&self, on: bool) {
        self.state().behaviour.chunked = on;
    }

    /// Adds a response header to every answer (e.g. `Location`).
    pub fn add_header(&self, name: impl Into<String>, value: impl Into<String>) {
        self.state()
            .behaviour
            .headers
            .push((name.into(), value.into()));
    }

    /// Replaces the whole cluster-wide behaviour.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        self.state().behaviour = behaviour;
    }

    /// Back to a well-behaved server (overrides cleared too; files kept).
    pub fn reset_behaviour(&self) {
        let mut state = self.state();
        state.behaviour = Behaviour::default();
        state.overrides.clear();
    }

    // ---- behaviour (per name) ------------------------------------------------

    /// Requests for `name` follow `behaviour` instead of the cluster-wide one.
    pub fn behave_for(&self, name: impl Into<String>, behaviour: Behaviour) {
        self.state().overrides.insert(name.into(), behaviour);
    }

    /// Shorthand: requests for `name` answer `status`.
    pub fn set_status_for(&self, name: impl Into<String>, status: u16) {
        self.behave_for(
            name,
            Behaviour {
                status: Some(status),
                ..Behaviour::default()
            },
        );
    }

    /// Removes the override for `name`.
    pub fn clear_override(&self, name: &str) {
        self.state().overrides.remove(name);
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

// ---- the server --------------------------------------------------------------

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                shared.connections.fetch_add(1, Ordering::SeqCst);
                let _ = stream.set_nodelay(true);
                connections.spawn(serve_connection(stream, shared.clone()));
            }
            // Reap finished connections so the set does not grow forever.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// What to do after a response.
enum After {
    KeepAlive,
    Close,
    Reset,
    Hang,
}

async fn serve_connection(mut stream: TcpStream, shared: Arc<Shared>) {
    let mut buf = Vec::with_capacity(4096);
    loop {
        let Some(request) = read_request(&mut stream, &mut buf).await else {
            return;
        };
        let client_wants_close = request
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let (behaviour, file) = {
            let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            let behaviour = state
                .overrides
                .get(&request.name)
                .cloned()
                .unwrap_or_else(|| state.behaviour.clone());
            let file = state.files.get(&request.name).cloned();
            state.log.push(request);
            (behaviour, file)
        };
        shared.request_seen.notify_waiters();

        if !behaviour.delay.is_zero() {
            tokio::time::sleep(behaviour.delay).await;
        }
        let after = if behaviour.hang {
            After::Hang
        } else {
            match respond(&mut stream, &behaviour, file).await {
                Ok(after) => after,
                Err(_) => return,
            }
        };
        match after {
            After::KeepAlive if !client_wants_close => continue,
            After::KeepAlive | After::Close => {
                let _ = stream.shutdown().await;
                return;
            }
            After::Reset => {
                // SO_LINGER 0: close() sends RST instead of FIN.
                let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                drop(stream);
                return;
            }
            After::Hang => {
                // Hold the connection open until the server is dropped.
                std::future::pending::<()>().await;
            }
        }
    }
}

async fn respond(
    stream: &mut TcpStream,
    behaviour: &Behaviour,
    file: Option<Bytes>,
) -> std::io::Result<After> {
    let (status, body) = match (behaviour.status, file) {
        (Some(200), file) => (200, file.unwrap_or_default()),
        (Some(status), _) => (
            status,
            Bytes::from(format!("{status} {}\n", reason(status))),
        ),
        (None, Some(file)) => (200, file),
        (None, None) => (404, Bytes::from_static(b"404 Not Found\n")),
    };
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    head.push_str("Cache-Control: no-store\r\nContent-Type: */*\r\n");
    for (name, value) in &behaviour.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let half = body.len() / 2;
    if behaviour.chunked {
        head.push_str("Transfer-Encoding: chunked\r\n\r\n");
        stream.write_all(head.as_bytes()).await?;
        if behaviour.reset_mid_body || behaviour.stall_mid_body {
            write_chunk(stream, &body[..half]).await?;
            return Ok(if behaviour.reset_mid_body {
                After::Reset
            } else {
                After::Hang
            });
        }
        // Several chunks, so a reader sees the body arrive in pieces.
        for piece in body.chunks(16 * 1024) {
            write_chunk(stream, piece).await?;
        }
        stream.write_all(b"0\r\n\r\n").await?;
        stream.flush().await?;
        return Ok(After::KeepAlive);
    }
    let announced = if behaviour.wrong_length {
        body.len() + body.len().max(16)
    } else if behaviour.short_length {
        body.len() / 2
    } else {
        body.len()
    };
    head.push_str(&format!("Content-Length: {announced}\r\n\r\n"));
    stream.write_all(head.as_bytes()).await?;
    if behaviour.reset_mid_body || behaviour.stall_mid_body {
        stream.write_all(&body[..half]).await?;
        stream.flush().await?;
        return Ok(if behaviour.reset_mid_body {
            After::Reset
        } else {
            After::Hang
        });
    }
    match behaviour.trickle {
        Some((piece, pause)) => {
            for piece in body.chunks(piece.max(1)) {
                tokio::time::sleep(pause).await;
                stream.write_all(piece).await?;
                stream.flush().await?;
            }
        }
        None => stream.write_all(&body).await?,
    }
    stream.flush().await?;
    // After a surplus the connection stays open: the worst case for a
    // client that would parse the surplus as its next response.
    Ok(if behaviour.wrong_length {
        After::Close
    } else {
        After::KeepAlive
    })
}

async fn write_chunk(stream: &mut TcpStream, piece: &[u8]) -> std::io::Result<()> {
    if piece.is_empty() {
        return Ok(());
    }
    stream
        .write_all(format!("{:x}\r\n", piece.len()).as_bytes())
        .await?;
    stream.write_all(piece).await?;
    stream.write_all(b"\r\n").await?;
    stream.flush().await
}

/// Reads one request head (and skips a `Content-Length` body, if any).
/// `None` when the peer closed or sent garbage.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<RecordedRequest> {
    let head_end = loop {
        if let Some(pos) = find(buf, b"\r\n\r\n") {
            break pos + 4;
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    buf.drain(..head_end);
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let target = request_line.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let path = target.split(['?', '#']).next().unwrap_or("");
    let name = percent_decode(path.trim_start_matches('/'));
    let request = RecordedRequest {
        method,
        target,
        name,
        headers,
    };
    // A body (clients of this server send GETs, but be tolerant).
    if let Some(len) = request
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        while buf.len() < len {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        buf.drain(..len);
    }
    Some(request)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Decodes `%XX` escapes (invalid ones are kept literally); invalid UTF-8
/// becomes U+FFFD.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex_value(bytes[i + 1]), hex_value(bytes[i + 2])) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        410 => "Gone",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}
