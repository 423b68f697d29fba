//! The server itself: the accept loop, one task per connection (keep-alive),
//! and the response writer that plays each [`Behaviour`] misbehaviour.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::request::read_request;
use super::{Behaviour, Shared};

pub(super) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
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
        let (behaviour, file, if_none_match) = {
            let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            let behaviour = state
                .overrides
                .get(&request.name)
                .cloned()
                .unwrap_or_else(|| state.behaviour.clone());
            let file = state.files.get(&request.name).cloned();
            let if_none_match = request.header("if-none-match").map(str::to_owned);
            state.log.push(request);
            (behaviour, file, if_none_match)
        };
        shared.request_seen.notify_waiters();

        if !behaviour.delay.is_zero() {
            tokio::time::sleep(behaviour.delay).await;
        }
        let after = if behaviour.hang {
            After::Hang
        } else {
            match respond(&mut stream, &behaviour, file, if_none_match).await {
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
    if_none_match: Option<String>,
) -> std::io::Result<After> {
    // Files carry an `ETag` (a hash of their bytes) and a fixed
    // `Last-Modified`; a request whose `If-None-Match` names the current
    // bytes gets a 304 without a body, as CUCM's Tomcat answers.
    let etag = file.as_deref().map(etag_of);
    if behaviour.status.is_none() && etag.is_some() && if_none_match == etag {
        let head = format!(
            "HTTP/1.1 304 Not Modified\r\nETag: {}\r\n\r\n",
            etag.unwrap_or_default()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.flush().await?;
        return Ok(After::KeepAlive);
    }
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
    if let (200, Some(etag)) = (status, &etag) {
        head.push_str(&format!(
            "ETag: {etag}\r\nLast-Modified: Mon, 01 Jan 2024 00:00:00 GMT\r\n"
        ));
    }
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

/// A strong `ETag` for `body`: FNV-1a over its bytes, and its length.
fn etag_of(body: &[u8]) -> String {
    let hash = body.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("\"{hash:016x}-{}\"", body.len())
}
