//! `tftp.max_resolving` (issue 10): lookups waiting on slow clusters hold
//! no transfer slot. A flood of remote misses gets `busy, retry later` at
//! once beyond `max_resolving`, while local and freshly cached files are
//! still served under `max_transfers`.

use std::time::{Duration, Instant};

use tftproxy::client::{get, GetOptions};

use super::*;
use crate::support::daemon::cluster_config;
use crate::support::http_cluster::HttpCluster;

const LOCAL: &str = "local.cnf.xml";
const CACHED: &str = "cached.cnf.xml";
/// How long the cluster takes to say 404: long enough that every flood
/// request arrives while the first ones are still waiting, even on a
/// loaded machine.
const CLUSTER_DELAY: Duration = Duration::from_secs(2);
const LIMIT: usize = 4;

both_modes! {
    async fn remote_misses_do_not_starve_local_or_cached_files(mode) {
        let cluster = HttpCluster::with_files([(CACHED, "<cached/>")]).await;
        let server = tftp_server_in(mode)
            .file(LOCAL, "<local/>")
            .clusters(vec![cluster_config("cluster-1", vec![cluster.base_url()])])
            .tweak(|c| {
                c.tftp.max_transfers = LIMIT;
                c.tftp.max_resolving = LIMIT;
            })
            .start()
            .await;
        let addr = server.tftp_v4();
        // Cached while the cluster is quick.
        assert_eq!(get(addr, CACHED, &quick()).await.unwrap().data, b"<cached/>");
        cluster.set_delay(CLUSTER_DELAY);

        // A flood of distinct names nobody has; the phones do not
        // retransmit while they wait.
        let patient = GetOptions {
            retransmit: Duration::from_secs(10),
            max_retries: 1,
            ..GetOptions::default()
        };
        let flood: Vec<_> = (0..20)
            .map(|i| {
                let patient = patient.clone();
                tokio::spawn(async move {
                    let asked = Instant::now();
                    let result = get(addr, &format!("missing-{i}.bin"), &patient).await;
                    (server_error(result), asked.elapsed())
                })
            })
            .collect();
        let metrics = server.daemon.metrics().clone();
        let deadline = Instant::now() + CLUSTER_DELAY;
        while metrics.tftp_resolving.get() < LIMIT as i64 {
            assert!(Instant::now() < deadline, "the lookups never filled max_resolving");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }

        // Meanwhile local and cached files are served, none busy.
        for _ in 0..10 {
            let local = get(addr, LOCAL, &quick()).await;
            assert_eq!(local.expect("a local file is served").data, b"<local/>");
        }
        let cached = get(addr, CACHED, &quick()).await;
        assert_eq!(cached.expect("a cached file is served").data, b"<cached/>");
        assert_eq!(
            metrics.tftp_resolving.get(),
            LIMIT as i64,
            "max_resolving stayed full while they were served"
        );

        // The first LIMIT misses wait for the cluster's 404; the others are
        // busy at once, long before it.
        let (mut busy, mut not_found) = (0, 0);
        for task in flood {
            let ((code, message), waited) = task.await.unwrap();
            match code {
                1 => not_found += 1,
                0 => {
                    assert_eq!(message, "busy, retry later");
                    assert!(waited < CLUSTER_DELAY / 2, "busy only after {waited:?}");
                    busy += 1;
                }
                other => panic!("unexpected error {other}: {message}"),
            }
        }
        assert_eq!((not_found, busy), (LIMIT, 20 - LIMIT));
        assert!(server.counter("tftproxy_tftp_resolving_busy_total") >= (20 - LIMIT) as u64);
        assert_eq!(server.daemon.active_transfers(), 0);
    }
}
