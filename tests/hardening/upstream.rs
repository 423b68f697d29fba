//! Bounded upstream queues and bodies (issue 10, items 2 and 4): fetches
//! nobody waits for never delay one somebody waits for, at most
//! `remote.max_queued` fetches wait for a cluster, a trickling body fails
//! its address within seconds, and the bodies being received at once stay
//! within `remote.max_inflight_bytes`.

use std::time::{Duration, Instant};

use futures::future::join_all;
use tftproxy::client::GetOptions;

use crate::support::daemon::{cluster_config, http_client, TestDaemon};
use crate::support::http_cluster::{Behaviour, HttpCluster};
use crate::{behind, get_from, metric, patient, server_error, MARGIN};

const GOOD: &str = "SEP00AA00AA00AA.cnf.xml";

/// A cluster that hangs on every name but `good` ones, which it answers at
/// once.
async fn hung_cluster(good: &[&str]) -> HttpCluster {
    let cluster = HttpCluster::start().await;
    cluster.set_hang(true);
    for name in good {
        cluster.put(*name, format!("<{name}/>"));
        cluster.behave_for(*name, Behaviour::default());
    }
    cluster
}

/// `count` HTTP requests at once for names the cluster never answers;
/// every one gets its 503 (at `http.fetch_wait`, or at once).
async fn flood(server: &TestDaemon, client: &reqwest::Client, round: usize, count: usize) {
    let statuses = join_all((0..count).map(|i| async move {
        let name = format!("hung-{round}-{i}.xml");
        server.http_get(client, &name).await.status().as_u16()
    }))
    .await;
    assert!(statuses.iter().all(|s| *s == 503), "{statuses:?}");
}

#[tokio::test]
async fn a_name_the_cluster_answers_is_served_after_a_flood_of_names_it_never_answers() {
    const PERMITS: usize = 4;
    const FLOOD: usize = 12;
    let second = "SEP00BB00BB00BB.cnf.xml";
    let cluster = hung_cluster(&[GOOD, second]).await;
    let server = TestDaemon::builder()
        .http()
        // The hung requests would hang for a minute: far beyond the test.
        .remote_timeouts(Duration::from_millis(500), Duration::from_secs(60))
        .clusters(vec![cluster_config("cluster-1", vec![cluster.base_url()])])
        .tweak(|config| {
            config.remote.max_requests_per_address = PERMITS;
            config.http.as_mut().unwrap().fetch_wait = Duration::from_millis(700);
            config.tftp.fetch_wait = Duration::from_secs(2);
        })
        .start()
        .await;
    let client = http_client(Duration::from_secs(30));

    // FLOOD times the turns at the address: all but PERMITS queue.
    flood(&server, &client, 1, FLOOD * PERMITS).await;
    assert!(
        cluster
            .wait_for_requests(PERMITS, Duration::from_secs(5))
            .await,
        "the first fetches reached the cluster"
    );
    // The started fetches still hang; a name the cluster answers is served
    // at once (the fetches nobody waits for give their turns up).
    let asked = Instant::now();
    let response = server.http_get(&client, GOOD).await;
    assert_eq!(response.status(), 200, "after {:?}", asked.elapsed());
    assert_eq!(response.text().await.unwrap(), format!("<{GOOD}/>"));
    assert!(
        metric(
            &server,
            "tftproxy_upstream_declined_total{cluster=\"cluster-1\",reason=\"abandoned\"}"
        ) >= ((FLOOD - 1) * PERMITS) as f64,
        "the queued fetches left the line"
    );

    // Another flood; then a phone on TFTP is served, not left waiting.
    flood(&server, &client, 2, FLOOD * PERMITS).await;
    let phone = GetOptions {
        retransmit: Duration::from_secs(3),
        max_retries: 1,
        ..GetOptions::default()
    };
    let download = get_from("127.0.0.1", server.tftp_v4(), second, &phone).await;
    assert_eq!(download.unwrap().data, format!("<{second}/>").as_bytes());
    // Each flood started PERMITS fetches and the queued ones left the line
    // unasked. Not exactly PERMITS: the flood's waiters leave over a few
    // milliseconds (more on a loaded machine), and while one still waits its
    // fetch rightly takes the turn of a started one nobody waits for any more.
    let hung_asked = cluster.requests() - 2;
    assert!(
        hung_asked <= 2 * FLOOD * PERMITS / 4,
        "more than a quarter of the queued hung names were asked: {:?}",
        cluster
            .request_log()
            .iter()
            .map(|r| r.name.clone())
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn beyond_max_queued_a_miss_is_answered_busy_at_once() {
    let cluster = hung_cluster(&[]).await;
    let fetch_wait = Duration::from_secs(3);
    let server = TestDaemon::builder()
        .http()
        .remote_timeouts(Duration::from_millis(500), Duration::from_secs(60))
        .clusters(vec![cluster_config("cluster-1", vec![cluster.base_url()])])
        .tweak(|config| {
            config.remote.max_requests_per_address = 1;
            config.remote.max_queued = 2;
            config.http.as_mut().unwrap().fetch_wait = fetch_wait;
        })
        .start()
        .await;
    let client = http_client(Duration::from_secs(30));
    // One fetch runs, two wait their turn: they are still wanted.
    let waiting: Vec<_> = (0..3)
        .map(|i| {
            let (server_url, client) = (server.http_url(&format!("waits-{i}.xml")), client.clone());
            tokio::spawn(async move { client.get(server_url).send().await.unwrap().status() })
        })
        .collect();
    assert!(cluster.wait_for_requests(1, Duration::from_secs(5)).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The line is full: more misses for this cluster are busy at once.
    let asked = Instant::now();
    let statuses = join_all((0..3).map(|i| {
        let client = &client;
        let server = &server;
        async move {
            let name = format!("turned-away-{i}.xml");
            server.http_get(client, &name).await.status().as_u16()
        }
    }))
    .await;
    let waited = asked.elapsed();
    assert_eq!(statuses, [503, 503, 503]);
    assert!(waited < fetch_wait, "busy only after {waited:?}");
    assert_eq!(
        metric(
            &server,
            "tftproxy_upstream_declined_total{cluster=\"cluster-1\",reason=\"queue_full\"}"
        ),
        3.0
    );
    let queued = "tftproxy_upstream_queued{cluster=\"cluster-1\"}";
    server.daemon.resolver().current().refresh_gauges();
    assert_eq!(
        metric(&server, queued),
        2.0,
        "the line, as a scrape sees it"
    );
    for task in waiting {
        assert_eq!(task.await.unwrap(), 503, "no answer within fetch_wait");
    }
}

#[tokio::test]
async fn a_trickling_cluster_is_busy_within_fetch_wait_and_its_address_fails_within_the_rate_window(
) {
    let cluster = HttpCluster::with_files([(GOOD, vec![b'x'; 1 << 20])]).await;
    // 1 KiB/s: a megabyte would take 17 minutes.
    cluster.set_trickle(256, Duration::from_millis(250));
    let fetch_wait = Duration::from_secs(1);
    let server = behind(&cluster, fetch_wait).await;
    let patient = patient();
    let asked = Instant::now();
    let first = get_from("127.0.0.1", server.tftp_v4(), GOOD, &patient).await;
    assert_eq!(server_error(first), (0, "busy, retry later".to_owned()));
    assert!(
        asked.elapsed() < fetch_wait + MARGIN,
        "after {:?}",
        asked.elapsed()
    );

    // The address fails one rate window after the first byte.
    let slow = "tftproxy_upstream_slow_bodies_total{cluster=\"cluster-1\",address=\"";
    let series = format!("{slow}{}\"}}", cluster.base_url());
    let deadline = asked + tftproxy::config::BODY_RATE_WINDOW + 2 * MARGIN;
    while metric(&server, &series) < 1.0 {
        assert!(Instant::now() < deadline, "the trickle still runs");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let up = format!(
        "tftproxy_upstream_address_up{{cluster=\"cluster-1\",address=\"{}\"}}",
        cluster.base_url()
    );
    assert_eq!(metric(&server, &up), 0.0, "the address is down");
}

#[tokio::test]
async fn bodies_in_flight_stay_within_max_inflight_bytes() {
    const BUDGET: u64 = 1 << 20;
    const SIZE: usize = 400 << 10;
    let names: Vec<String> = (0..6).map(|i| format!("firmware-{i}.bin")).collect();
    let cluster = HttpCluster::start().await;
    for (i, name) in names.iter().enumerate() {
        cluster.put(name.clone(), vec![b'f'; SIZE]);
        // Half the body, then silence; half of them without a length.
        cluster.behave_for(
            name.clone(),
            Behaviour {
                stall_mid_body: true,
                chunked: i % 2 == 1,
                ..Behaviour::default()
            },
        );
    }
    cluster.put(GOOD, "<device/>");
    let server = TestDaemon::builder()
        .http()
        .remote_timeouts(Duration::from_millis(500), Duration::from_secs(2))
        .clusters(vec![cluster_config("cluster-1", vec![cluster.base_url()])])
        .tweak(|config| {
            config.remote.max_inflight_bytes = BUDGET;
            // The stalls fail the address; the last fetch must still ask it.
            config.remote.hold_down = Duration::ZERO;
            config.http.as_mut().unwrap().fetch_wait = Duration::from_secs(5);
        })
        .start()
        .await;
    let client = http_client(Duration::from_secs(30));
    let gauge = "tftproxy_upstream_inflight_bytes";
    let requests = join_all(names.iter().map(|name| server.http_get(&client, name)));
    let watch = async {
        let mut peak = 0.0f64;
        for _ in 0..200 {
            let held = metric(&server, gauge);
            assert!(held <= BUDGET as f64, "{held} bytes in flight");
            peak = peak.max(held);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        peak
    };
    let (responses, peak) = tokio::join!(requests, watch);
    assert!(responses.iter().all(|r| r.status() == 503));
    assert!(peak > 0.0, "bodies were counted");
    assert!(
        metric(
            &server,
            "tftproxy_upstream_declined_total{cluster=\"cluster-1\",reason=\"over_budget\"}"
        ) >= 1.0,
        "some body did not fit"
    );
    // The stalled bodies failed and gave their bytes back; fetches work.
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&server, gauge) > 0.0 {
        assert!(Instant::now() < deadline, "bytes still held");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let response = server.http_get(&client, GOOD).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "<device/>");
}
