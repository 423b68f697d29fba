//! Reloading the configuration under load: transfers in flight finish
//! byte-exact, a bad configuration is refused and the running one kept, and
//! a cluster change takes effect.

mod support;

use std::time::Duration;

use support::daemon::{cluster_config, TestDaemon};
use support::http_cluster::HttpCluster;
use support::pattern;
use tftproxy::client::{get, GetOptions};
use tftproxy::config::ClusterConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_survive_ten_reloads_and_the_last_cluster_set_wins() {
    let local = pattern(300_000, 1);
    let [a, b] = HttpCluster::start_many().await;
    a.put("SEP001122334455.cnf.xml", b"from a".to_vec());
    b.put("SEP001122334455.cnf.xml", b"from b".to_vec());
    let (cluster_a, cluster_b) = (
        cluster_config("a", vec![a.base_url()]),
        cluster_config("b", vec![b.base_url()]),
    );

    let server = TestDaemon::builder()
        .file("firmware.loads", &local)
        .clusters(vec![cluster_a.clone()])
        .tweak(|config| {
            config.tftp.retransmit_timeout = Duration::from_millis(300);
            config.tftp.max_window_size = 16;
        })
        .start()
        .await;
    let daemon = &server.daemon;
    // Every reload starts from the configuration the daemon started with.
    let base = daemon.config();
    let with_cluster = |cluster: &ClusterConfig, window: u16| {
        let mut config = base.clone();
        config.clusters = vec![cluster.clone()];
        config.tftp.max_window_size = window;
        config
    };
    let addr = daemon.tftp_addrs()[0];

    // 200 transfers, lock-step so that they are still running while the
    // configuration changes under them.
    let options = GetOptions {
        retransmit: Duration::from_millis(300),
        max_retries: 10,
        ..Default::default()
    };
    let transfers: Vec<_> = (0..200)
        .map(|_| {
            let options = options.clone();
            tokio::spawn(async move { get(addr, "firmware.loads", &options).await.map(|d| d.data) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        daemon.active_transfers() > 0,
        "transfers must be running during the reloads"
    );

    let mut rejected = Vec::new();
    for i in 0..10 {
        let config = if i == 4 {
            let mut bad = with_cluster(&cluster_b, 16);
            bad.tftp.root = Some(server.root().join("no-such-directory"));
            bad
        } else if i % 2 == 0 {
            with_cluster(&cluster_a, 8)
        } else {
            with_cluster(&cluster_b, 16)
        };
        if let Err(error) = daemon.reload(config) {
            // A typed error: the resolver refused the new root.
            assert!(
                matches!(error, tftproxy::daemon::DaemonError::Resolver(_)),
                "{error:?}"
            );
            rejected.push(error.to_string());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert!(
        rejected[0].contains("tftp.root") && rejected[0].contains("no-such-directory"),
        "{}",
        rejected[0]
    );
    let metrics = daemon.metrics().encode();
    assert!(
        metrics.contains("tftproxy_config_reloads_total{result=\"applied\"} 9"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tftproxy_config_reloads_total{result=\"rejected\"} 1"),
        "{metrics}"
    );

    for transfer in transfers {
        let data = transfer
            .await
            .unwrap()
            .expect("a transfer in flight during reloads failed");
        assert!(data == local, "corrupt transfer");
    }

    // The listener socket was kept through every reload: its port-0
    // address still holds, and so did the requests queued on it.
    assert_eq!(
        daemon.tftp_addrs(),
        vec![addr],
        "a reload moved the listener"
    );

    // The last applied configuration (i = 9) has cluster b only, and the
    // rejected one (b with a bad root) changed nothing by itself.
    let device = get(addr, "SEP001122334455.cnf.xml", &options)
        .await
        .unwrap();
    assert_eq!(device.data, b"from b");
    assert_eq!(daemon.config().clusters[0].id, "b");

    // New requests get the new settings.
    daemon.reload(with_cluster(&cluster_b, 4)).unwrap();
    let wide = GetOptions {
        window_size: Some(64),
        ..options.clone()
    };
    let narrowed = get(addr, "firmware.loads", &wide).await.unwrap();
    assert!(narrowed.data == local, "corrupt transfer");
    assert!(
        narrowed
            .negotiated
            .contains(&("windowsize".to_owned(), "4".to_owned())),
        "{:?}",
        narrowed.negotiated
    );
    daemon.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_and_removes_listen_addresses() {
    let content = pattern(5_000, 2);
    let server = TestDaemon::builder()
        .file("XMLDefault.cnf.xml", &content)
        .start()
        .await;
    let daemon = &server.daemon;
    let v4 = daemon.tftp_addrs()[0];
    let quick = GetOptions {
        retransmit: Duration::from_millis(200),
        max_retries: 2,
        ..Default::default()
    };

    let mut both = daemon.config();
    both.tftp.listen.push("[::1]:0".parse().unwrap());
    daemon.reload(both.clone()).unwrap();
    let addrs = daemon.tftp_addrs();
    assert_eq!(addrs.len(), 2, "{addrs:?}");
    assert_eq!(addrs[0], v4, "the kept listener moved");
    let v6 = addrs[1];
    assert!(v6.is_ipv6(), "{v6}");
    for addr in [v4, v6] {
        let file = get(addr, "XMLDefault.cnf.xml", &quick).await.unwrap();
        assert!(file.data == content, "corrupt transfer from {addr}");
    }

    let mut v6_only = both;
    v6_only.tftp.listen.remove(0);
    daemon.reload(v6_only).unwrap();
    assert_eq!(daemon.tftp_addrs(), vec![v6]);
    let file = get(v6, "XMLDefault.cnf.xml", &quick).await.unwrap();
    assert!(file.data == content, "corrupt transfer after the reload");
    let gone = get(v4, "XMLDefault.cnf.xml", &quick).await;
    assert!(gone.is_err(), "the removed address still answers");
    daemon.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_transfers_started_before_a_reload() {
    let content = pattern(3 << 20, 3);
    let server = TestDaemon::builder().file("big", &content).start().await;
    let daemon = &server.daemon;
    let addr = daemon.tftp_addrs()[0];
    let options = GetOptions {
        retransmit: Duration::from_millis(300),
        max_retries: 10,
        ..Default::default()
    };
    let running = tokio::spawn(async move { get(addr, "big", &options).await.map(|d| d.data) });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(daemon.active_transfers(), 1, "the transfer must be running");

    // A [tftp] change: the running transfer now belongs to the old settings.
    let mut config = daemon.config();
    config.tftp.max_window_size = 2;
    daemon.reload(config).unwrap();

    let left = daemon.shutdown(Duration::from_secs(30)).await;
    assert_eq!(
        left, 0,
        "shutdown gave up on a transfer from before the reload"
    );
    let data = running.await.unwrap().expect("the transfer failed");
    assert!(data == content, "corrupt transfer");
}
