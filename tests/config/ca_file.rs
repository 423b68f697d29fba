//! `remote.ca_file`: a missing file, a file without a certificate, a bundle
//! that is read and rendered back.

use std::path::Path;

use tftproxy::config::{Config, ConfigError};

use crate::{parse, parse_ok};

/// A CA certificate as PEM, made now (the test needs a real one).
fn ca_pem() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).unwrap().pem()
}

/// The error a `[remote]` section with `ca_file = path` gives (on line 2).
fn ca_file_error(path: &Path) -> String {
    let text = format!("[remote]\nca_file = {:?}\n", path.to_str().unwrap());
    let err = parse(&text).expect_err(&text);
    match &err {
        ConfigError::Invalid { key, line, .. } => {
            assert_eq!((key.as_str(), *line), ("remote.ca_file", 2), "{err}");
        }
        other => panic!("unexpected error {other}"),
    }
    err.to_string()
}

#[test]
fn ca_file_that_does_not_exist_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing-ca.pem");
    let p = path.display();
    assert_eq!(
        ca_file_error(&path),
        format!(
            "test.toml:2: remote.ca_file: file \"{p}\" cannot be read: No such file or directory \
             (os error 2) (a relative path is relative to the current directory)"
        )
    );
}

#[test]
fn ca_file_without_a_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Empty, text, and a private key alone: no certificate in any of them.
    let key = rcgen::KeyPair::generate().unwrap().serialize_pem();
    for (name, content) in [
        ("empty.pem", String::new()),
        ("text.pem", "not a certificate\n".to_string()),
        ("key.pem", key),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        assert_eq!(
            ca_file_error(&path),
            format!(
                "test.toml:2: remote.ca_file: file \"{}\" holds no PEM certificate \
                 (-----BEGIN CERTIFICATE-----)",
                path.display()
            ),
            "{name}"
        );
    }
    let path = dir.path().join("broken.pem");
    std::fs::write(
        &path,
        "-----BEGIN CERTIFICATE-----\n!!not base64!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    assert_eq!(
        ca_file_error(&path),
        format!(
            "test.toml:2: remote.ca_file: file \"{}\" holds a PEM certificate that cannot be decoded",
            path.display()
        )
    );
}

#[test]
fn ca_file_with_certificates_is_read_and_rendered() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cucm-ca.pem");
    // A bundle of two roots.
    std::fs::write(&path, ca_pem() + &ca_pem()).unwrap();
    let text = format!(
        "[remote]\nca_file = {:?}\n\n[[cluster]]\nid = \"a\"\naddresses = [\"https://127.0.0.1:6972\"]\n",
        path.to_str().unwrap()
    );
    let c = parse_ok(&text);
    assert_eq!(c.remote.ca_file.as_deref(), Some(path.as_path()));
    let rendered = c.render();
    assert!(
        rendered.contains(&format!("ca_file = {:?}", path.to_str().unwrap())),
        "{rendered}"
    );
    assert_eq!(parse_ok(&rendered), c);
    // Not set: rendered as a comment.
    assert_eq!(Config::default().remote.ca_file, None);
    assert!(Config::default().render().contains("# ca_file: not set"));
}
