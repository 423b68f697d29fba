//! Who may use the admin API.
//!
//! With `[admin] token_file`, every request but the probes ([`OPEN_PATHS`])
//! must carry `Authorization: Bearer <token>` (what Prometheus sends with
//! `authorization.credentials_file`); otherwise 401 with
//! `WWW-Authenticate: Bearer`. The token is compared in constant time.
//!
//! Without a token the API listens on loopback only (the configuration
//! refuses anything else), and a request whose `Host` is not an IP literal
//! or `localhost` is refused with 403: that is what a page in an operator's
//! browser sends after DNS rebinding (`attacker.example` resolving to
//! 127.0.0.1), and it must not purge the cache.
//!
//! The probes are open in both cases: a kubelet or a load balancer asks
//! them by whatever name it knows the host by, and they change nothing.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;
use tracing::debug;

/// Endpoints anyone reaching the port may ask: liveness and readiness
/// probes (a kubelet or a load balancer has no token), read-only.
pub(crate) const OPEN_PATHS: &[&str] = &["/healthz", "/readyz"];

/// The token in force, replaced on reload.
pub(crate) type AdminAuth = Arc<ArcSwapOption<AdminToken>>;

/// The bearer token of `[admin] token_file`.
pub(crate) struct AdminToken(Box<[u8]>);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl AdminToken {
    /// Reads the token file (at start and at each reload); the error
    /// completes "file X …". A file others may read is used, with a warning.
    pub(crate) fn read(path: &Path) -> Result<AdminToken, String> {
        let token = crate::config::read_token(path)?;
        if let Ok(meta) = std::fs::metadata(path) {
            use std::os::unix::fs::PermissionsExt;
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    "admin.token_file is readable by others than its owner: chmod 600 it"
                );
            }
        }
        Ok(AdminToken(token.into_bytes().into_boxed_slice()))
    }

    /// Whether `presented` is the token, in time independent of where they
    /// differ (the length is not secret: it is the same for every token
    /// `openssl rand -hex 32` writes).
    fn matches(&self, presented: &[u8]) -> bool {
        self.0.ct_eq(presented).into()
    }
}

/// The middleware in front of every admin route.
pub(crate) async fn check(State(auth): State<AdminAuth>, request: Request, next: Next) -> Response {
    if OPEN_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let headers = request.headers();
    match auth.load().as_deref() {
        Some(token) => {
            if !bearer(headers).is_some_and(|presented| token.matches(presented)) {
                debug!(
                    path = request.uri().path(),
                    "admin request without the right token"
                );
                return unauthorized();
            }
        }
        None => {
            if !host_is_local_literal(headers) {
                debug!(
                    path = request.uri().path(),
                    host = ?headers.get(header::HOST),
                    "admin request for another host refused (DNS rebinding?)"
                );
                return (
                    StatusCode::FORBIDDEN,
                    "the admin API answers requests for an IP address or localhost only; \
                     set admin.token_file to use a host name\n",
                )
                    .into_response();
            }
        }
    }
    next.run(request).await
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"tftproxy admin\""),
        )],
        "the admin API needs Authorization: Bearer <the token of admin.token_file>\n",
    )
        .into_response()
}

/// The credentials of `Authorization: Bearer <token>` (scheme in any case).
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, rest) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    Some(rest.trim_ascii())
}

/// Whether `Host` names an IP literal or `localhost` (any port), or is
/// absent (no browser leaves it out).
fn host_is_local_literal(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST) else {
        return true;
    };
    let Ok(host) = host.to_str() else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        // `[v6]` or `[v6]:port`
        Some(rest) => match rest.split_once(']') {
            Some((v6, port)) if port.is_empty() || is_port(port) => {
                return v6.parse::<std::net::Ipv6Addr>().is_ok()
            }
            _ => return false,
        },
        None => match host.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return false,
            None => host,
        },
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok()
}

fn is_port(s: &str) -> bool {
    s.strip_prefix(':').unwrap_or(s).parse::<u16>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn hosts_that_name_the_machine_by_address_or_localhost() {
        for host in [
            "127.0.0.1",
            "127.0.0.1:9669",
            "localhost",
            "LOCALHOST:9669",
            "[::1]",
            "[::1]:9669",
            "192.0.2.7:80",
        ] {
            assert!(host_is_local_literal(&with(header::HOST, host)), "{host}");
        }
        assert!(host_is_local_literal(&HeaderMap::new()));
        for host in [
            "attacker.example",
            "attacker.example:9669",
            "localhost.attacker.example",
            "127.0.0.1.nip.io",
            "[::1]x",
            "[::1]:x",
            "127.0.0.1:x",
            "::1",
            "",
        ] {
            assert!(!host_is_local_literal(&with(header::HOST, host)), "{host}");
        }
    }

    #[test]
    fn bearer_credentials() {
        let bearer_of = |v: &str| bearer(&with(header::AUTHORIZATION, v)).map(<[u8]>::to_vec);
        assert_eq!(bearer_of("Bearer abc"), Some(b"abc".to_vec()));
        assert_eq!(bearer_of("bearer   abc "), Some(b"abc".to_vec()));
        assert_eq!(bearer_of("Basic abc"), None);
        assert_eq!(bearer_of("Bearer"), None);
        let token = AdminToken(b"0123456789abcdef".to_vec().into_boxed_slice());
        assert!(token.matches(b"0123456789abcdef"));
        assert!(!token.matches(b"0123456789abcdeF"));
        assert!(!token.matches(b"0123456789abcde"));
        assert!(!token.matches(b""));
    }
}
