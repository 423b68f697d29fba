//! `tftp.fetch_wait`: a phone waiting on TFTP for the clusters gets its
//! answer or `busy, retry later` within it; the fetch goes on, and the retry
//! is served from what it brought back, without asking again.

use std::time::{Duration, Instant};

use crate::support::http_cluster::HttpCluster;
use crate::{behind, get_from, patient, server_error, MARGIN};

const CNF: &str = "SEP001122334455.cnf.xml";
const FETCH_WAIT: Duration = Duration::from_secs(1);

#[tokio::test]
async fn a_slow_cluster_is_busy_within_fetch_wait_and_the_retry_is_served() {
    let cluster = HttpCluster::with_files([(CNF, "<device/>")]).await;
    cluster.set_delay(2 * FETCH_WAIT);
    let server = behind(&cluster, FETCH_WAIT).await;
    let patient = patient();
    let asked = Instant::now();
    let first = get_from("127.0.0.1", server.tftp_v4(), CNF, &patient).await;
    let waited = asked.elapsed();
    assert_eq!(server_error(first), (0, "busy, retry later".to_owned()));
    assert!(waited >= FETCH_WAIT, "busy after {waited:?}");
    assert!(waited < FETCH_WAIT + MARGIN, "busy only after {waited:?}");

    // The phone's retries join the fetch still running, then find its
    // result cached: served, and the cluster asked once.
    let mut served = None;
    for _ in 0..3 {
        match get_from("127.0.0.1", server.tftp_v4(), CNF, &patient).await {
            Ok(download) => {
                served = Some(download.data);
                break;
            }
            Err(error) => assert_eq!(error.server_error(), Some((0, "busy, retry later"))),
        }
    }
    assert_eq!(served.as_deref(), Some(&b"<device/>"[..]));
    assert_eq!(cluster.requests_for(CNF), 1, "the cluster was asked once");
    let again = get_from("127.0.0.1", server.tftp_v4(), CNF, &patient).await;
    assert_eq!(again.unwrap().data, b"<device/>");
    assert_eq!(cluster.requests_for(CNF), 1, "served from the cache");
}
