//! Which requests are served: names with a leading slash, backslashes or
//! another case are found; traversal, missing files and writes are refused.

use std::net::SocketAddr;
use std::time::Duration;

use tftproxy::client::get;
use tftproxy::tftp::packet::{Mode, Packet, Request};
use tokio::net::UdpSocket;

use crate::{quick, server_error, tftp_server_in};

both_modes! {
    async fn names_are_found_with_a_leading_slash_backslashes_and_other_case(mode) {
        let server = tftp_server_in(mode)
            .file("Desktops/320x212x12/List.xml", b"list")
            .start()
            .await;
        for name in [
            "Desktops/320x212x12/List.xml",
            "/Desktops/320x212x12/List.xml",
            "desktops\\320X212X12\\list.XML",
        ] {
            assert_eq!(
                get(server.tftp_v4(), name, &quick()).await.unwrap().data,
                b"list",
                "{name}"
            );
        }
    }
}

both_modes! {
    async fn traversal_attempts_are_refused_with_access_violation(mode) {
        let server = tftp_server_in(mode).file("ok.txt", b"ok").start().await;
        let outside = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(outside.path(), b"secret").unwrap();
        std::os::unix::fs::symlink(outside.path(), server.root().join("escape")).unwrap();
        for name in [
            "../etc/passwd",
            "..\\..\\etc\\passwd",
            "a/../../etc/passwd",
            "/../etc/passwd",
            "//etc/passwd",
            "C:\\windows\\win.ini",
            "~root/.ssh/id_rsa",
            "escape",
        ] {
            let (code, _) = server_error(get(server.tftp_v4(), name, &quick()).await);
            assert_eq!(code, 2, "{name}");
        }
        // An absolute path is read relative to the root, where it is missing.
        assert_eq!(
            server_error(get(server.tftp_v4(), "/etc/passwd", &quick()).await).0,
            1
        );
    }
}

both_modes! {
    async fn a_missing_file_is_error_1(mode) {
        let server = tftp_server_in(mode).start().await;
        let (code, message) =
            server_error(get(server.tftp_v4(), "SEP001122334455.cnf.xml", &quick()).await);
        assert_eq!((code, message.as_str()), (1, "File not found"));
    }
}

async fn raw_request(server: SocketAddr, packet: Packet) -> Packet {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(&packet.encode(), server).await.unwrap();
    let mut buf = [0u8; 1024];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    Packet::decode(&buf[..n]).unwrap()
}

both_modes! {
    async fn write_requests_are_refused(mode) {
        let server = tftp_server_in(mode).start().await;
        let wrq = Packet::Wrq(Request {
            filename: "log.txt".into(),
            mode: Mode::Octet,
            options: vec![],
        });
        assert!(matches!(
            raw_request(server.tftp_v4(), wrq).await,
            Packet::Error { code: 2, .. }
        ));
    }
}
