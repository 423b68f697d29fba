//! `https://` cluster addresses: a cluster whose certificate is signed by its
//! own CA is trusted once `remote.ca_file` names that CA, and refused (a
//! certificate error) without it. The cluster is a minimal HTTP/1.1 server
//! over TLS on loopback, its CA and certificate made at test time.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

use tftproxy::config::{Config, RemoteConfig};
use tftproxy::source::upstream::{AddressOutcome, FailReason, Upstream};

const BODY: &[u8] = b"<device><fullConfig>true</fullConfig></device>\n";
const NAME: &str = "SEP001122334455.cnf.xml";

/// A cluster CA (PEM) and the server's certificate chain and key, for
/// `127.0.0.1` and `localhost`.
struct Pki {
    ca_pem: String,
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

fn make_pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "tftproxy test cluster CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

    let server_key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "cucm-test");
    let server = params.signed_by(&server_key, &ca).unwrap();
    Pki {
        ca_pem: ca.pem(),
        chain: vec![server.der().clone()],
        key: PrivatePkcs8KeyDer::from(server_key.serialize_der()).into(),
    }
}

/// Serves every request on 127.0.0.1 over TLS with `200 OK` and [`BODY`];
/// returns the base URL. Handshake failures (the client refusing our
/// certificate) just end that connection.
async fn serve_tls(pki: &Pki) -> String {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(pki.chain.clone(), pki.key.clone_key())
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                // Read the request head (no body on a GET).
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let request_line = head.split(|&b| b == b'\r').next().unwrap_or_default();
                let expected = format!("GET /{NAME} HTTP/1.1");
                let response = if request_line == expected.as_bytes() {
                    let mut r = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        BODY.len()
                    )
                    .into_bytes();
                    r.extend_from_slice(BODY);
                    r
                } else {
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_vec()
                };
                let _ = tls.write_all(&response).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    format!("https://127.0.0.1:{}", addr.port())
}

fn remote(ca_file: Option<&Path>) -> RemoteConfig {
    RemoteConfig {
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(5),
        ca_file: ca_file.map(Path::to_owned),
        ..RemoteConfig::default()
    }
}

#[tokio::test]
async fn https_cluster_with_its_ca_in_ca_file_is_trusted() {
    let pki = make_pki();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("cluster-ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    let base = serve_tls(&pki).await;

    let upstream = Upstream::new(&remote(Some(&ca_file)), 1 << 20).expect("client");
    let report = upstream.fetch_address(&base, NAME).await;
    match &report.outcome {
        AddressOutcome::Found(body) => assert_eq!(&body[..], BODY),
        other => panic!("expected Found, got {other:?}"),
    }
    assert_eq!(report.status, Some(200));
}

#[tokio::test]
async fn https_cluster_without_ca_file_fails_on_the_certificate() {
    let pki = make_pki();
    let base = serve_tls(&pki).await;

    let upstream = Upstream::new(&remote(None), 1 << 20).expect("client");
    let report = upstream.fetch_address(&base, NAME).await;
    match &report.outcome {
        AddressOutcome::Failed(reason) => {
            assert!(
                matches!(reason, FailReason::Connect(_)),
                "expected a connect failure, got {reason:?}"
            );
            assert!(
                reason.to_string().to_lowercase().contains("certificate"),
                "the reason should name the certificate: {reason}"
            );
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert_eq!(report.status, None);
}

/// The same, from a configuration file: `remote.ca_file` is validated at
/// load and the loaded configuration builds a client that trusts the CA.
#[tokio::test]
async fn ca_file_from_a_loaded_config_reaches_the_https_cluster() {
    let pki = make_pki();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("cluster-ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    let base = serve_tls(&pki).await;
    let localhost = base.replace("127.0.0.1", "localhost");
    let text = format!(
        "[remote]\nca_file = {:?}\n\n[[cluster]]\nid = \"cucm\"\naddresses = [{:?}]\n",
        ca_file.to_str().unwrap(),
        localhost,
    );
    let config = Config::parse(&text, Path::new("https.toml")).unwrap();
    assert_eq!(config.clusters[0].addresses, [localhost]);

    let upstream = Upstream::new(&config.remote, config.cache.max_file_size).expect("client");
    let report = upstream
        .fetch_cluster(&config.clusters[0].addresses, NAME)
        .await;
    assert_eq!(
        format!("{:?}", report.verdict),
        format!(
            "Found(ClusterFound {{ body: <{} bytes>, address: 0 }})",
            BODY.len()
        )
    );
}
