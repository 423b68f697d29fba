//! What to do with a datagram that arrives on a listening port, decided
//! without I/O (quinn-proto's `Endpoint` idea): start a read transfer,
//! refuse with an ERROR packet, or stay silent. The socket driver
//! (`front::tftp`) sends what this module returns and keeps the counts.

use crate::tftp::packet::{ErrorCode, Mode, Packet, Request};

/// The decision for one datagram on a listening port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Accept {
    /// A read request to serve.
    Start(Request),
    /// Send `reply` (an encoded ERROR) to the sender and count the request
    /// as refused.
    Refuse { reply: Vec<u8>, why: Refused },
    /// Send nothing: DATA, ACK, ERROR or OACK on the request port is a stray
    /// from an old transfer (answering strays could feed a loop), and a
    /// malformed datagram that does not even look like a request is noise.
    Ignore { malformed: bool },
}

/// Why a request was refused at the door.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// `mail` mode (obsolete, RFC 1350 §1).
    MailMode,
    /// A write request: the server is read-only.
    WriteRequest,
    /// A datagram with a request opcode that does not decode.
    Malformed,
}

/// Decides what a datagram on a listening port calls for.
pub fn accept(datagram: &[u8]) -> Accept {
    let refuse = |code: ErrorCode, message: &str, why| Accept::Refuse {
        reply: Packet::error(code, message),
        why,
    };
    match Packet::decode(datagram) {
        Ok(Packet::Rrq(request)) if request.mode == Mode::Mail => refuse(
            ErrorCode::IllegalOperation,
            "mail mode is not supported",
            Refused::MailMode,
        ),
        Ok(Packet::Rrq(request)) => Accept::Start(request),
        Ok(Packet::Wrq(_)) => refuse(
            ErrorCode::AccessViolation,
            "read-only server: write requests are not accepted",
            Refused::WriteRequest,
        ),
        Ok(_) => Accept::Ignore { malformed: false },
        // Only what claims to be a request gets an answer: the sender is
        // waiting for one.
        Err(error) if matches!(datagram.get(..2), Some([0, 1] | [0, 2])) => refuse(
            ErrorCode::IllegalOperation,
            &format!("malformed request: {error}"),
            Refused::Malformed,
        ),
        Err(_) => Accept::Ignore { malformed: true },
    }
}

/// The answer to a datagram from a client with no transfer, on a port that
/// is also every transfer's (single-port mode): ERROR 5 "unknown transfer
/// ID" (RFC 1350 §4) to a DATA only. DATA is never part of a read, so the
/// ERROR cannot hit a transfer of the sender's. An ACK is the duplicate
/// final ACK of a transfer that just ended, or a late one; answering it
/// could abort that phone's next request from the same port, which cannot
/// tell the ERROR apart from an answer. An ERROR is never answered (no
/// loop), and an OACK sent to a server is noise.
pub fn stray(datagram: &[u8]) -> Option<Vec<u8>> {
    match Packet::decode(datagram) {
        Ok(Packet::Data { .. }) => Some(Packet::error(
            ErrorCode::UnknownTransferId,
            "unknown transfer ID",
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(opcode: u8, name: &str, mode: &str) -> Vec<u8> {
        let mut datagram = vec![0, opcode];
        datagram.extend_from_slice(name.as_bytes());
        datagram.push(0);
        datagram.extend_from_slice(mode.as_bytes());
        datagram.push(0);
        datagram
    }

    fn error_of(decision: &Accept) -> (u16, String) {
        match decision {
            Accept::Refuse { reply, .. } => match Packet::decode(reply) {
                Ok(Packet::Error { code, message }) => (code, message),
                other => panic!("not an ERROR: {other:?}"),
            },
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn a_read_request_starts_a_transfer() {
        match accept(&request(1, "SEP001122334455.cnf.xml", "octet")) {
            Accept::Start(request) => assert_eq!(request.filename, "SEP001122334455.cnf.xml"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn mail_mode_and_writes_are_refused_with_the_right_code() {
        let mail = accept(&request(1, "x", "mail"));
        assert_eq!(error_of(&mail).0, ErrorCode::IllegalOperation as u16);
        let write = accept(&request(2, "x", "octet"));
        assert_eq!(error_of(&write).0, ErrorCode::AccessViolation as u16);
        assert!(matches!(
            write,
            Accept::Refuse {
                why: Refused::WriteRequest,
                ..
            }
        ));
    }

    #[test]
    fn a_malformed_request_is_answered_and_other_noise_is_not() {
        let (code, message) = error_of(&accept(&[0, 1, b'x']));
        assert_eq!(code, ErrorCode::IllegalOperation as u16);
        assert!(message.starts_with("malformed request: "), "{message}");
        assert_eq!(accept(&[0, 9, 1, 2]), Accept::Ignore { malformed: true });
        assert_eq!(accept(&[0, 4, 0, 1]), Accept::Ignore { malformed: false });
        assert_eq!(accept(&[]), Accept::Ignore { malformed: true });
    }

    #[test]
    fn only_a_stray_data_gets_unknown_transfer_id() {
        let reply = stray(&[0, 3, 0, 1, b'x']).expect("DATA is answered");
        assert_eq!(
            Packet::decode(&reply).unwrap(),
            Packet::Error {
                code: ErrorCode::UnknownTransferId as u16,
                message: "unknown transfer ID".into()
            }
        );
        for silent in [
            Packet::Ack(3).encode(),
            Packet::error(ErrorCode::UnknownTransferId, "x"),
            Packet::Oack(vec![("blksize".into(), "512".into())]).encode(),
            vec![0, 9],
        ] {
            assert_eq!(stray(&silent), None, "{silent:?}");
        }
    }
}
