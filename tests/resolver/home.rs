//! Home clusters: a device's next names go to the cluster that served its
//! configuration; relearning, a home that is down, signed files.

use std::time::Duration;

use tftproxy::resolve::Source;

use crate::support::http_cluster::HttpCluster;
use crate::{
    assert_retry_later, body, clusters_of, cnf, config, device_config, from_cache, from_cluster,
    get_from, itl, resolver, source, MAC, PHONE,
};

#[tokio::test]
async fn a_device_s_next_names_go_to_its_home_cluster_alone() {
    let servers: [HttpCluster; 3] = HttpCluster::start_many().await;
    servers[1].put(cnf(), "config");
    servers[1].put(itl(), "itl");
    let r = resolver(&config(clusters_of(&servers)));
    assert_eq!(
        source(&get_from(&r, &cnf(), PHONE).await),
        from_cluster("c2")
    );
    assert_eq!(
        r.home_of_device(&format!("SEP{MAC}")).as_deref(),
        Some("c2")
    );
    assert_eq!(
        r.home_of_client(PHONE.parse().unwrap()).as_deref(),
        Some("c2")
    );

    let answer = get_from(&r, &itl(), PHONE).await;
    assert_eq!(body(&answer), "itl");
    assert_eq!(source(&answer), from_cluster("c2"));
    assert_eq!(servers[0].requests_for(&itl()), 0);
    assert_eq!(servers[2].requests_for(&itl()), 0);
}

#[tokio::test]
async fn a_home_cluster_404_fans_out_and_relearns() {
    let [a, b] = HttpCluster::start_many().await;
    b.put(cnf(), "config");
    let r = resolver(&device_config([&a, &b], Duration::from_millis(100)));
    get_from(&r, &cnf(), PHONE).await;
    // The phone moves to cluster 1.
    b.remove(&cnf());
    a.put(cnf(), "moved");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let answer = get_from(&r, &cnf(), PHONE).await;
    assert_eq!(body(&answer), "moved");
    assert_eq!(source(&answer), from_cluster("c1"));
    assert_eq!(
        r.home_of_device(&format!("SEP{MAC}")).as_deref(),
        Some("c1")
    );
}

#[tokio::test]
async fn a_device_whose_home_is_down_is_told_to_retry_not_to_auto_register() {
    let [a, b] = HttpCluster::start_many().await;
    a.put("XMLDefault.cnf.xml", "auto-registration");
    b.put(cnf(), "config");
    let r = resolver(&config(clusters_of([&a, &b])));
    get_from(&r, &cnf(), PHONE).await;
    b.set_status(500);
    // ITLSEP was never cached: no stale copy, no fan-out, retry later.
    assert_retry_later(&get_from(&r, &itl(), PHONE).await);
    assert_eq!(a.requests_for(&itl()), 0);
}

#[tokio::test]
async fn signed_files_come_from_the_phone_s_home_cluster() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("Ringlist.xml.sgn"), "local copy").unwrap();
    let [a, b] = HttpCluster::start_many().await;
    b.put(cnf(), "config");
    b.put("Ringlist.xml.sgn", "signed by c2");
    let mut config = config(clusters_of([&a, &b]));
    config.tftp.root = Some(root.path().to_path_buf());
    let r = resolver(&config);

    get_from(&r, &cnf(), PHONE).await;
    let answer = get_from(&r, "Ringlist.xml.sgn", PHONE).await;
    assert_eq!(body(&answer), "signed by c2");
    assert_eq!(source(&answer), from_cluster("c2"));
    // Again: from the cache, still cluster 2's copy.
    let answer = get_from(&r, "Ringlist.xml.sgn", PHONE).await;
    assert_eq!(body(&answer), "signed by c2");
    assert_eq!(source(&answer), from_cache("c2"));
    // A phone with no known home gets the local copy.
    let answer = get_from(&r, "Ringlist.xml.sgn", "10.0.0.99").await;
    assert_eq!(body(&answer), "local copy");
    assert_eq!(source(&answer), Source::Local);
    assert_eq!(a.requests_for("Ringlist.xml.sgn"), 0);

    // With prefer_home_cluster off, everybody gets the local copy.
    let mut off = config.clone();
    off.remote.prefer_home_cluster = false;
    let r = resolver(&off);
    get_from(&r, &cnf(), PHONE).await;
    assert_eq!(
        source(&get_from(&r, "Ringlist.xml.sgn", PHONE).await),
        Source::Local
    );
}

#[tokio::test]
async fn a_home_without_the_signed_file_falls_back_to_local() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("ITLFile.tlv"), "local itl").unwrap();
    let b = HttpCluster::start().await;
    b.put(cnf(), "config");
    let mut config = config(clusters_of([&b]));
    config.tftp.root = Some(root.path().to_path_buf());
    let r = resolver(&config);
    get_from(&r, &cnf(), PHONE).await;
    assert_eq!(body(&get_from(&r, "ITLFile.tlv", PHONE).await), "local itl");
    // The home's 404 is remembered (negative_ttl): not asked again.
    assert_eq!(body(&get_from(&r, "ITLFile.tlv", PHONE).await), "local itl");
    assert_eq!(b.requests_for("ITLFile.tlv"), 1);
}
