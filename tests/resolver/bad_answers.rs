//! Bad answers and bad names: broken bodies are never served or cached,
//! unsafe names never reach a cluster.

use bytes::Bytes;
use tftproxy::diagnose::{locate, LocateVerdict};
use tftproxy::resolve::Answer;

use crate::support::daemon::cluster_config;
use crate::support::http_cluster::HttpCluster;
use crate::{assert_retry_later, body, clusters_of, cnf, config, get, resolver};

#[tokio::test]
async fn broken_bodies_are_never_served_or_cached() {
    let good = HttpCluster::start().await;
    let payload: Bytes = (0..10_000u32).map(|i| (i % 253) as u8).collect();
    good.put(cnf(), payload.clone());
    for breakage in ["wrong_length", "reset_mid_body", "oversized"] {
        let bad = HttpCluster::start().await;
        match breakage {
            "wrong_length" => {
                bad.put(cnf(), payload.clone());
                bad.set_wrong_length(true);
            }
            "reset_mid_body" => {
                bad.put(cnf(), payload.clone());
                bad.set_reset_mid_body(true);
            }
            _ => bad.put(cnf(), vec![b'x'; 50_000]),
        }
        let bad_then_good = vec![bad.base_url(), good.base_url()];
        let mut with_good = config(vec![cluster_config("c1", bad_then_good)]);
        with_good.cache.max_file_size = 20_000;
        let r = resolver(&with_good);
        let answer = get(&r, &cnf()).await;
        assert_eq!(body(&answer), payload, "{breakage}");
        assert_eq!(bad.requests_for(&cnf()), 1, "{breakage}");

        // Only the broken address: retry later, nothing cached. A body
        // unusable for this name does not hold the address down; a reset
        // connection does (the next request is not even sent), but a reset
        // may also be seen as a body cut short.
        let mut alone = config(vec![cluster_config("c1", vec![bad.base_url()])]);
        alone.cache.max_file_size = 20_000;
        let r = resolver(&alone);
        assert_retry_later(&get(&r, &cnf()).await);
        assert_retry_later(&get(&r, &cnf()).await);
        let held = r.cluster_status()[0].addresses[0].held_down_until.is_some();
        assert!(!held || breakage == "reset_mid_body", "{breakage}");
        let requests = if held { 2 } else { 3 };
        assert_eq!(bad.requests_for(&cnf()), requests, "{breakage}");
        let status = r.cluster_status();
        assert!(!status[0].addresses[0].up, "{breakage}");
        assert!(status[0].addresses[0].last_error.is_some(), "{breakage}");
    }
}

#[tokio::test]
async fn unsafe_names_never_reach_a_cluster() {
    let [a, b] = HttpCluster::start_many().await;
    let r = resolver(&config(clusters_of([&a, &b])));
    for name in [
        "../x",
        "a/../../x",
        "a\0b",
        "//h/x",
        "\\\\h\\x",
        "C:\\x",
        "/C:\\x",
        "\\C:\\x",
        "/~root/.ssh/id_rsa",
        "/./~root",
        "",
    ] {
        let answer = get(&r, name).await;
        assert!(matches!(answer, Answer::Denied(_)), "{name:?}: {answer:?}");
    }
    assert_eq!(a.requests(), 0);
    assert_eq!(b.requests(), 0);
    assert!(matches!(
        locate(&r, "../etc/passwd").await.verdict,
        LocateVerdict::Denied(_)
    ));
    assert_eq!(a.requests() + b.requests(), 0);
}
