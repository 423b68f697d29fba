//! The secure-config relay (`[tls_relay]`): a phone's HTTPS connection is
//! relayed unopened to its learned home cluster, so a real TLS client sees
//! the cluster's own certificate and exchanges exact bytes with it; a phone
//! with no learned home is closed at once (it falls back to HTTP 6970).

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer, ServerName};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use support::daemon::{cluster_config, TestDaemon};
use support::http_cluster::HttpCluster;
use tftproxy::client::{get, GetOptions};
use tftproxy::config::TlsRelayConfig;

const DEVICE: &str = "SEP001122334455.cnf.xml";

/// The cluster's CA and its TLS server on 127.0.0.1, which answers each
/// line it reads with `cluster:` and the line.
struct TlsCluster {
    ca: CertificateDer<'static>,
    certificate: CertificateDer<'static>,
    addr: SocketAddr,
}

async fn tls_cluster() -> TlsCluster {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "cluster TFTP CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let certificate = params.signed_by(&key, &ca).unwrap().der().clone();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![certificate.clone()],
            PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        )
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = [0u8; 1024];
                while let Ok(n) = tls.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let mut reply = b"cluster:".to_vec();
                    reply.extend_from_slice(&buf[..n]);
                    if tls.write_all(&reply).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    TlsCluster {
        ca: ca.der().clone(),
        certificate,
        addr,
    }
}

/// A phone's TLS client that trusts the cluster's CA, connecting from
/// `from` to `relay`.
async fn phone_tls(
    cluster: &TlsCluster,
    from: &str,
    relay: SocketAddr,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cluster.ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let socket = TcpSocket::new_v4()?;
    socket.bind(format!("{from}:0").parse().unwrap())?;
    let tcp = socket.connect(relay).await?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_is_relayed_unopened_to_the_home_cluster_and_refused_without_one() {
    let tls = tls_cluster().await;
    let http = HttpCluster::with_files([(DEVICE, b"<device/>".to_vec())]).await;
    let server = TestDaemon::builder()
        .admin()
        .clusters(vec![cluster_config("cluster-a", vec![http.base_url()])])
        .tweak(|config| {
            config.tls_relay = Some(TlsRelayConfig {
                listen: vec!["127.0.0.1:0".parse().unwrap()],
                // The test cluster's TLS port stands for 6971.
                upstream_port: Some(tls.addr.port()),
                ..TlsRelayConfig::default()
            });
        })
        .start()
        .await;
    let relay = server.daemon.tls_relay_addrs()[0];

    // No learned home yet: closed at once, no handshake.
    let started = Instant::now();
    let refused = phone_tls(&tls, "127.0.0.1", relay).await;
    assert!(refused.is_err(), "no home: the connection must be closed");
    assert!(started.elapsed() < Duration::from_secs(2), "closed at once");

    // The phone at 127.0.0.1 boots over TFTP: cluster-a becomes its home.
    get(server.tftp_v4(), DEVICE, &GetOptions::default())
        .await
        .expect("device file served from the cluster");

    let mut stream = phone_tls(&tls, "127.0.0.1", relay)
        .await
        .expect("TLS through the relay, verified against the cluster's CA");
    let (_, session) = stream.get_ref();
    let presented = session.peer_certificates().unwrap()[0].clone();
    assert_eq!(
        presented, tls.certificate,
        "the phone sees the cluster's own certificate"
    );
    stream
        .write_all(b"GET /SEP001122334455.cnf.xml.sgn")
        .await
        .unwrap();
    let mut reply = vec![0u8; 64];
    let n = stream.read(&mut reply).await.unwrap();
    assert_eq!(&reply[..n], b"cluster:GET /SEP001122334455.cnf.xml.sgn");
    drop(stream);

    // Another phone address, with no home of its own: closed at once.
    let started = Instant::now();
    assert!(phone_tls(&tls, "127.0.0.2", relay).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(2));

    let metrics = server.daemon.metrics().encode();
    assert!(
        metrics.contains("tftproxy_tls_relay_connections_total{result=\"relayed\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tftproxy_tls_relay_connections_total{result=\"no_home\"} 2"),
        "{metrics}"
    );
}
