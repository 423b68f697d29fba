//! `tftproxy locate --admin ADDR [--client IP] NAME`, the real binary
//! against an in-process daemon with real HTTP clusters: what the daemon
//! learned from a phone (homes, cached copies), what a phone at that address
//! gets now (which may differ from what the clusters say: a remembered "not
//! found"), the exit statuses, and that asking learns and caches nothing.
//! With an admin token, the CLI needs `--token-file`.

mod support;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use support::daemon::{cluster_config, http_client, TestDaemon};
use support::http_cluster::HttpCluster;
use tftproxy::client::{get, GetOptions};

const CNF: &str = "SEP001122334455.cnf.xml";
const OTHER: &str = "SEP00AABBCCDDEE.cnf.xml";

async fn locate(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_tftproxy"))
        .arg("locate")
        .args(args)
        .output()
        .await
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn admin_addr(server: &TestDaemon) -> String {
    server.daemon.admin_addr().unwrap().to_string()
}

/// Two clusters, `cluster-b` first (it has nothing), `cluster-a` with the
/// device files; device files stay fresh for a minute.
async fn two_clusters() -> (TestDaemon, HttpCluster, HttpCluster) {
    let a = HttpCluster::with_files([(CNF, "<device>a</device>"), (OTHER, "<device/>")]).await;
    let b = HttpCluster::start().await;
    let server = TestDaemon::builder()
        .admin()
        .clusters(vec![
            cluster_config("cluster-b", vec![b.base_url()]),
            cluster_config("cluster-a", vec![a.base_url()]),
        ])
        .tweak(|config| config.cache.device_ttl = Duration::from_secs(60))
        .start()
        .await;
    (server, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shows_what_the_daemon_learned_and_what_a_phone_gets_now() {
    let (server, a, b) = two_clusters().await;
    // A phone at 127.0.0.1 boots: its device and its address learn cluster-a.
    let download = get(server.tftp_v4(), CNF, &GetOptions::default())
        .await
        .unwrap();
    assert_eq!(download.data, b"<device>a</device>");

    let admin = admin_addr(&server);
    let output = locate(&["--admin", &admin, "--client", "127.0.0.1", CNF]).await;
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(
        text.contains("device SEP001122334455: home cluster cluster-a"),
        "{text}"
    );
    assert!(
        text.contains("client 127.0.0.1: home cluster cluster-a"),
        "{text}"
    );
    assert!(text.contains("cluster-a: cached, 18 bytes, "), "{text}");
    assert!(text.contains("cluster-b: not cached"), "{text}");
    assert!(text.contains("held down: none"), "{text}");
    assert!(
        text.contains(
            "now, a phone at 127.0.0.1 gets: served from the cached copy of cluster-a (18 bytes)"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "the device's home cluster cluster-a is asked alone: its cached copy is fresh"
        ),
        "{text}"
    );
    // Like offline locate it asked every address, bypassing the caches.
    assert!(
        text.contains("cluster-a  priority 2  → found (18 bytes"),
        "{text}"
    );
    assert_eq!(a.requests_for(CNF), 2);
    assert_eq!(b.requests_for(CNF), 2);

    // Another device, never asked by a phone: locate finds it on cluster-a
    // but learns nothing and caches nothing.
    let output = locate(&["--admin", &admin, OTHER]).await;
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(
        text.contains("device SEP00AABBCCDDEE: home cluster not learned"),
        "{text}"
    );
    assert!(
        text.contains("now, a phone gets: served from cluster-a"),
        "{text}"
    );
    let again = stdout(&locate(&["--admin", &admin, OTHER]).await);
    assert!(
        again.contains("device SEP00AABBCCDDEE: home cluster not learned"),
        "{again}"
    );
    assert!(again.contains("cluster-a: not cached"), "{again}");
    assert!(again.contains("location: not known"), "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remembered_not_found_is_what_the_phone_gets_and_exit_statuses() {
    let (server, a, _b) = two_clusters().await;
    let admin = admin_addr(&server);
    // A phone asks before the file exists: "on no cluster" is remembered.
    assert!(get(server.tftp_v4(), "late.xml", &GetOptions::default())
        .await
        .is_err());
    a.put("late.xml", "<late/>");
    let output = locate(&["--admin", &admin, "--client", "127.0.0.1", "late.xml"]).await;
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("verdict: served from cluster-a (7 bytes)"),
        "{text}"
    );
    assert!(
        text.contains("now, a phone at 127.0.0.1 gets: File not found"),
        "{text}"
    );
    assert!(
        text.contains("remembers it as on no cluster")
            && text.contains("(asked now, cluster-a has it)"),
        "{text}"
    );

    // Busy everywhere: exit 2.
    a.set_status_for("busy.xml", 503);
    let output = locate(&["--admin", &admin, "busy.xml"]).await;
    assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
    assert!(stdout(&output).contains("now, a phone gets: busy, retry later"));

    // A refused name: exit 3.
    let output = locate(&["--admin", &admin, "../etc/passwd"]).await;
    assert_eq!(output.status.code(), Some(3), "{}", stdout(&output));

    // Nobody has it: exit 1.
    let output = locate(&["--admin", &admin, "nothing.xml"]).await;
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));

    // The endpoint itself: JSON for scripts.
    let text = http_client(Duration::from_secs(10))
        .get(server.admin_url("/locate?name=late.xml&client=127.0.0.1"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["verdict"], "not_found");
    assert_eq!(body["exit_code"], 1);
    assert_eq!(body["learned"]["location"], "nowhere");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_admin_token_the_cli_needs_the_token_file() {
    let dir = tempfile::tempdir().unwrap();
    let token = write_token(dir.path());
    let a = HttpCluster::with_files([(CNF, "<device/>")]).await;
    let server = TestDaemon::builder()
        .admin()
        .clusters(vec![cluster_config("cluster-a", vec![a.base_url()])])
        .tweak(|config| config.admin.as_mut().unwrap().token_file = Some(token.clone()))
        .start()
        .await;
    let admin = admin_addr(&server);

    let output = locate(&["--admin", &admin, CNF]).await;
    let error = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{error}");
    assert!(output.stdout.is_empty());
    assert!(
        error.contains("401") && error.contains("--token-file"),
        "{error}"
    );
    assert_eq!(
        a.requests_for(CNF),
        0,
        "refused before any cluster is asked"
    );

    let output = locate(&[
        "--admin",
        &admin,
        "--token-file",
        token.to_str().unwrap(),
        CNF,
    ])
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert!(stdout(&output).contains("now, a phone gets: served from cluster-a"));
}

#[tokio::test]
async fn a_daemon_that_cannot_be_asked_exits_1_with_the_reason() {
    let closed = support::http_cluster::refused_addr();
    let output = locate(&["--admin", &closed.to_string(), CNF]).await;
    let error = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{error}");
    assert!(error.contains(&closed.to_string()), "{error}");
}

fn write_token(dir: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("admin.token");
    std::fs::write(&path, "3f1c9a7be0d24c58a6e1f0b2c4d6e8fa\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}
