//! What arrives: files of every interesting size over IPv4 and IPv6 with
//! and without options, block-number roll-over, netascii conversion.

use tftproxy::client::{get, GetOptions};
use tftproxy::front::tftp::NETASCII_MAX;
use tftproxy::tftp::packet::Mode;

use crate::support::pattern;
use crate::{quick, server_error, tftp_server_in};

both_modes! {
    async fn files_of_every_interesting_size_arrive_byte_exact_over_v4_and_v6(mode) {
        let sizes = [0usize, 511, 512, 513, 1 << 20];
        let files: Vec<(String, Vec<u8>)> = sizes
            .iter()
            .map(|&n| (format!("f{n}"), pattern(n, n as u64 + 7)))
            .collect();
        let server = tftp_server_in(mode).files(&files).start().await;
        for addr in [server.tftp_v4(), server.tftp_v6()] {
            for (name, content) in &files {
                for options in [
                    quick(),
                    GetOptions {
                        block_size: Some(1468),
                        tsize: true,
                        ..quick()
                    },
                    GetOptions {
                        block_size: Some(1024),
                        window_size: Some(8),
                        ..quick()
                    },
                ] {
                    let download = get(addr, name, &options).await.unwrap();
                    assert!(download.data == *content, "{name} via {addr} {options:?}");
                    if options.tsize {
                        assert_eq!(download.tsize, Some(content.len() as u64));
                    }
                }
            }
        }
    }
}

both_modes! {
    async fn a_file_of_more_than_65535_blocks_rolls_over_intact(mode) {
        let content = pattern(65_535 * 512 + 4097, 3);
        let server = tftp_server_in(mode).file("big.bin", &content).start().await;
        let addr = server.tftp_v4();
        // Lock-step at 512 bytes: the block number wraps once.
        let plain = get(addr, "big.bin", &quick()).await.unwrap();
        assert!(plain.data == content);
        let windowed = GetOptions {
            block_size: Some(512),
            window_size: Some(16),
            ..quick()
        };
        assert!(get(addr, "big.bin", &windowed).await.unwrap().data == content);
    }
}

both_modes! {
    async fn netascii_converts_line_ends_and_octet_does_not(mode) {
        let text = b"line one\nline two\n".to_vec();
        let server = tftp_server_in(mode).file("t.txt", &text).start().await;
        let addr = server.tftp_v4();
        let ascii = GetOptions {
            mode: Mode::Netascii,
            ..quick()
        };
        assert_eq!(get(addr, "t.txt", &ascii).await.unwrap().data, text);
        let mut wire = quick();
        wire.tsize = true;
        let octet = get(addr, "t.txt", &wire).await.unwrap();
        assert_eq!(octet.data, text);
        // The netascii stream itself carries CR LF (its tsize is larger).
        let ascii_size = GetOptions {
            mode: Mode::Netascii,
            tsize: true,
            ..quick()
        };
        assert_eq!(
            get(addr, "t.txt", &ascii_size).await.unwrap().tsize,
            Some(text.len() as u64 + 2)
        );
    }
}

both_modes! {
    async fn netascii_is_refused_for_files_too_large_to_convert_in_memory(mode) {
        let big = pattern(NETASCII_MAX as usize + 1, 4);
        let server = tftp_server_in(mode).file("fw.loads", &big).start().await;
        let addr = server.tftp_v4();
        let ascii = GetOptions {
            mode: Mode::Netascii,
            ..quick()
        };
        let (code, message) = server_error(get(addr, "fw.loads", &ascii).await);
        assert_eq!(code, 0);
        assert!(message.contains("octet"), "{message}");
        // The same file in octet mode is served.
        assert!(get(addr, "fw.loads", &quick()).await.unwrap().data == big);
    }
}
