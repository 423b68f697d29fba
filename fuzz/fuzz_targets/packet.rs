//! A datagram on a TFTP port: decoding never panics, a decoded packet
//! encodes to something that decodes to the same packet, and the listener's
//! decision (`tftp::accept`) never panics either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tftproxy::tftp::accept::accept;
use tftproxy::tftp::packet::Packet;

fuzz_target!(|datagram: &[u8]| {
    let _ = accept(datagram);
    if let Ok(packet) = Packet::decode(datagram) {
        let encoded = packet.encode();
        let again = Packet::decode(&encoded).expect("an encoded packet decodes");
        assert_eq!(again, packet);
    }
});
