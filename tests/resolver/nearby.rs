//! `Resolver::resolve_nearby`, the TFTP front's fast path: it answers what
//! needs no cluster and gives up (`None`) exactly where `resolve` would ask
//! one, in the contract's order.

use std::net::IpAddr;

use tftproxy::resolve::{Answer, Lookup, Resolver, Source};

use crate::support::http_cluster::HttpCluster;
use crate::{assert_not_found, body, clusters_of, cnf, config, get_from, resolver, source, PHONE};

async fn nearby(resolver: &Resolver, name: &str, client: &str) -> Option<Answer> {
    let client: IpAddr = client.parse().unwrap();
    let lookup = Lookup {
        name,
        client,
        via: Default::default(),
    };
    resolver.resolve_nearby(&lookup).await
}

#[tokio::test]
async fn answers_local_cached_and_nowhere_names_and_gives_up_on_the_rest() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("local.xml"), "local").unwrap();
    let cluster = HttpCluster::start().await;
    cluster.put("remote.xml", "remote");
    let mut config = config(clusters_of([&cluster]));
    config.tftp.root = Some(root.path().to_path_buf());
    let r = resolver(&config);

    let local = nearby(&r, "local.xml", PHONE).await.expect("local");
    assert_eq!(source(&local), Source::Local);
    assert!(matches!(
        nearby(&r, "../etc/passwd", PHONE).await,
        Some(Answer::Denied(_))
    ));
    // Not known yet: the clusters must be asked.
    assert!(nearby(&r, "remote.xml", PHONE).await.is_none());
    assert!(nearby(&r, "missing.xml", PHONE).await.is_none());
    assert_eq!(cluster.requests(), 0, "the fast path asks no cluster");

    get_from(&r, "remote.xml", PHONE).await;
    assert_not_found(&get_from(&r, "missing.xml", PHONE).await);
    let cached = nearby(&r, "remote.xml", PHONE).await.expect("cached");
    assert_eq!(body(&cached), "remote");
    assert_not_found(&nearby(&r, "missing.xml", PHONE).await.expect("nowhere"));
    assert_eq!(cluster.requests(), 2);
}

#[tokio::test]
async fn a_signed_file_for_a_phone_with_a_home_waits_for_its_home_not_the_local_copy() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("Ringlist.xml.sgn"), "local copy").unwrap();
    let [a, b] = HttpCluster::start_many().await;
    b.put(cnf(), "config");
    b.put("Ringlist.xml.sgn", "signed by c2");
    let mut config = config(clusters_of([&a, &b]));
    config.tftp.root = Some(root.path().to_path_buf());
    let r = resolver(&config);
    get_from(&r, &cnf(), PHONE).await;

    // Step 2 before step 3: the home must be asked, so no local answer.
    assert!(nearby(&r, "Ringlist.xml.sgn", PHONE).await.is_none());
    // A phone with no known home gets the local copy at once.
    let other = nearby(&r, "Ringlist.xml.sgn", "10.0.0.99")
        .await
        .expect("local");
    assert_eq!(body(&other), "local copy");
    // Once the home's copy is cached, the fast path serves it.
    get_from(&r, "Ringlist.xml.sgn", PHONE).await;
    let cached = nearby(&r, "Ringlist.xml.sgn", PHONE).await.expect("cached");
    assert_eq!(body(&cached), "signed by c2");
    assert_eq!(b.requests_for("Ringlist.xml.sgn"), 1);
}
