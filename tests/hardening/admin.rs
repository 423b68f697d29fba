//! The admin API secured: a bearer token when `admin.token_file` is set
//! (the probes stay open), and without one a `Host` check against DNS
//! rebinding — a refused purge purges nothing.

use std::path::Path;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HOST, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};

use crate::support::daemon::{cluster_config, http_client, TestDaemon};
use crate::support::http_cluster::HttpCluster;
use crate::{get_from, quick};

const TOKEN: &str = "3f1c9a7be0d24c58a6e1f0b2c4d6e8fa";
const CNF: &str = "SEP001122334455.cnf.xml";

/// Writes `token` (with a newline, as `echo` would) to a 0600 file.
fn token_file(dir: &Path, token: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("admin.token");
    std::fs::write(&path, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

async fn ask(
    server: &TestDaemon,
    method: Method,
    path: &str,
    headers: &[(reqwest::header::HeaderName, &str)],
) -> reqwest::Response {
    let mut request = http_client(Duration::from_secs(10)).request(method, server.admin_url(path));
    for (name, value) in headers {
        request = request.header(name.clone(), *value);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn with_a_token_every_endpoint_but_the_probes_needs_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = token_file(dir.path(), TOKEN);
    let server = TestDaemon::builder()
        .admin()
        .tweak(|config| config.admin.as_mut().unwrap().token_file = Some(path.clone()))
        .start()
        .await;
    let right = format!("Bearer {TOKEN}");
    let wrong = format!("Bearer {}0", &TOKEN[..TOKEN.len() - 1]);
    for (method, endpoint) in [
        (Method::GET, "/metrics"),
        (Method::GET, "/clusters"),
        (Method::GET, "/"),
        (Method::DELETE, "/cache"),
        (Method::DELETE, "/cache/x.cnf.xml"),
    ] {
        for credentials in [None, Some(wrong.as_str()), Some("Basic dXNlcjpwYXNz")] {
            let headers: Vec<_> = credentials
                .map(|c| (AUTHORIZATION, c))
                .into_iter()
                .collect();
            let response = ask(&server, method.clone(), endpoint, &headers).await;
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {endpoint} with {credentials:?}"
            );
            let challenge = response.headers()[WWW_AUTHENTICATE].to_str().unwrap();
            assert!(challenge.starts_with("Bearer"), "{challenge}");
        }
        let response = ask(
            &server,
            method.clone(),
            endpoint,
            &[(AUTHORIZATION, &right)],
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK, "{method} {endpoint}");
    }
    // The probes: no token, any Host.
    let response = ask(&server, Method::GET, "/healthz", &[(HOST, "lb.example")]).await;
    assert_eq!(response.status(), StatusCode::OK);

    // A reload reads the file again: the new token, not the old one.
    let new_token = "a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5";
    token_file(dir.path(), new_token);
    server.daemon.reload(server.daemon.config()).unwrap();
    let response = ask(&server, Method::GET, "/metrics", &[(AUTHORIZATION, &right)]).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let new = format!("Bearer {new_token}");
    let response = ask(&server, Method::GET, "/metrics", &[(AUTHORIZATION, &new)]).await;
    assert_eq!(response.status(), StatusCode::OK);

    // A token file gone at reload: the reload fails, the token stays.
    std::fs::remove_file(&path).unwrap();
    let error = server.daemon.reload(server.daemon.config()).unwrap_err();
    assert!(error.to_string().contains("admin.token_file"), "{error}");
    let response = ask(&server, Method::GET, "/metrics", &[(AUTHORIZATION, &new)]).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn without_a_token_a_foreign_host_is_refused_and_purges_nothing() {
    let cluster = HttpCluster::with_files([(CNF, "<device/>")]).await;
    let server = TestDaemon::builder()
        .admin()
        .remote_timeouts(Duration::from_millis(500), Duration::from_secs(5))
        .clusters(vec![cluster_config("cluster-1", vec![cluster.base_url()])])
        .start()
        .await;
    let options = quick();
    let fetch = || get_from("127.0.0.1", server.tftp_v4(), CNF, &options);
    assert_eq!(fetch().await.unwrap().data, b"<device/>");
    assert_eq!(cluster.requests_for(CNF), 1);

    for host in [
        "attacker.example",
        "attacker.example:9669",
        "localhost.attacker.example",
    ] {
        for (method, endpoint) in [(Method::DELETE, "/cache"), (Method::GET, "/metrics")] {
            let response = ask(&server, method.clone(), endpoint, &[(HOST, host)]).await;
            assert_eq!(
                response.status(),
                StatusCode::FORBIDDEN,
                "{method} {endpoint} {host}"
            );
        }
    }
    // Still cached: the cluster is not asked again.
    assert_eq!(fetch().await.unwrap().data, b"<device/>");
    assert_eq!(cluster.requests_for(CNF), 1, "the refused purge purged");

    // By address or as localhost, the operator's purge works.
    let port = server.daemon.admin_addr().unwrap().port();
    let localhost = format!("localhost:{port}");
    let response = ask(&server, Method::DELETE, "/cache", &[(HOST, &localhost)]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(fetch().await.unwrap().data, b"<device/>");
    assert_eq!(cluster.requests_for(CNF), 2, "purged: asked again");
    let response = ask(
        &server,
        Method::GET,
        "/healthz",
        &[(HOST, "attacker.example")],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK, "the probe stays open");
}
