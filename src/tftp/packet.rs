//! The TFTP wire format (RFC 1350 and the RFC 2347 option extension):
//! decoding datagrams into [`Packet`]s and encoding them back.
//!
//! Decoding is tolerant where real phones are sloppy (an extra NUL after the
//! mode, option names in any case, a missing final NUL on an error message)
//! and strict where it matters: it never panics, never allocates more than the
//! datagram it was given, and reports anything malformed as a [`PacketError`].

use bytes::Bytes;

pub const OP_RRQ: u16 = 1;
pub const OP_WRQ: u16 = 2;
pub const OP_DATA: u16 = 3;
pub const OP_ACK: u16 = 4;
pub const OP_ERROR: u16 = 5;
pub const OP_OACK: u16 = 6;

/// The most options one request may carry; more is treated as malformed.
const MAX_OPTIONS: usize = 32;

/// Transfer mode of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Octet,
    Netascii,
    /// Obsolete (RFC 1350 §1); parsed so that it can be refused properly.
    Mail,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Octet => "octet",
            Mode::Netascii => "netascii",
            Mode::Mail => "mail",
        }
    }
}

/// A read or write request: file name, mode and options as sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub filename: String,
    pub mode: Mode,
    /// Options in the order received, names lower-cased, values as sent.
    pub options: Vec<(String, String)>,
}

/// TFTP error codes (RFC 1350 and RFC 2347).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum ErrorCode {
    NotDefined = 0,
    FileNotFound = 1,
    AccessViolation = 2,
    DiskFull = 3,
    IllegalOperation = 4,
    UnknownTransferId = 5,
    FileExists = 6,
    NoSuchUser = 7,
    OptionRefused = 8,
}

/// One TFTP packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    Rrq(Request),
    Wrq(Request),
    Data { block: u16, data: Bytes },
    Ack(u16),
    Error { code: u16, message: String },
    Oack(Vec<(String, String)>),
}

/// Why a datagram is not a valid TFTP packet.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("datagram of {0} bytes is too short")]
    TooShort(usize),
    #[error("unknown opcode {0}")]
    UnknownOpcode(u16),
    #[error("field is not terminated by NUL")]
    Unterminated,
    #[error("field is not valid UTF-8")]
    NotUtf8,
    #[error("empty file name")]
    EmptyFilename,
    #[error("unknown transfer mode {0:?}")]
    UnknownMode(String),
    #[error("more than {MAX_OPTIONS} options")]
    TooManyOptions,
    #[error("ACK carries {0} trailing bytes")]
    TrailingBytes(usize),
}

impl Packet {
    /// Decodes one datagram.
    pub fn decode(datagram: &[u8]) -> Result<Packet, PacketError> {
        if datagram.len() < 2 {
            return Err(PacketError::TooShort(datagram.len()));
        }
        let opcode = u16::from_be_bytes([datagram[0], datagram[1]]);
        let rest = &datagram[2..];
        match opcode {
            OP_RRQ => Ok(Packet::Rrq(decode_request(rest)?)),
            OP_WRQ => Ok(Packet::Wrq(decode_request(rest)?)),
            OP_DATA => {
                let block = read_u16(rest).ok_or(PacketError::TooShort(datagram.len()))?;
                Ok(Packet::Data {
                    block,
                    data: Bytes::copy_from_slice(&rest[2..]),
                })
            }
            OP_ACK => {
                let block = read_u16(rest).ok_or(PacketError::TooShort(datagram.len()))?;
                // Some stacks pad short frames; a few stray bytes are harmless
                // but a long tail means this is not an ACK at all.
                if rest.len() > 2 + 16 {
                    return Err(PacketError::TrailingBytes(rest.len() - 2));
                }
                Ok(Packet::Ack(block))
            }
            OP_ERROR => {
                let code = read_u16(rest).ok_or(PacketError::TooShort(datagram.len()))?;
                let text = &rest[2..];
                let text = match text.iter().position(|&b| b == 0) {
                    Some(end) => &text[..end],
                    None => text,
                };
                Ok(Packet::Error {
                    code,
                    message: String::from_utf8_lossy(text).into_owned(),
                })
            }
            OP_OACK => Ok(Packet::Oack(decode_options(rest)?)),
            other => Err(PacketError::UnknownOpcode(other)),
        }
    }

    /// Appends the wire form of this packet to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Packet::Rrq(request) => encode_request(OP_RRQ, request, out),
            Packet::Wrq(request) => encode_request(OP_WRQ, request, out),
            Packet::Data { block, data } => {
                out.extend_from_slice(&OP_DATA.to_be_bytes());
                out.extend_from_slice(&block.to_be_bytes());
                out.extend_from_slice(data);
            }
            Packet::Ack(block) => {
                out.extend_from_slice(&OP_ACK.to_be_bytes());
                out.extend_from_slice(&block.to_be_bytes());
            }
            Packet::Error { code, message } => {
                out.extend_from_slice(&OP_ERROR.to_be_bytes());
                out.extend_from_slice(&code.to_be_bytes());
                push_field(out, message);
            }
            Packet::Oack(options) => {
                out.extend_from_slice(&OP_OACK.to_be_bytes());
                for (name, value) in options {
                    push_field(out, name);
                    push_field(out, value);
                }
            }
        }
    }

    /// The wire form of this packet.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// An ERROR packet's wire form.
    pub fn error(code: ErrorCode, message: &str) -> Vec<u8> {
        Packet::Error {
            code: code as u16,
            message: message.to_owned(),
        }
        .encode()
    }
}

fn read_u16(bytes: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]))
}

fn push_field(out: &mut Vec<u8>, text: &str) {
    // A NUL inside a field would split it on the wire; drop it instead.
    out.extend(text.bytes().filter(|&b| b != 0));
    out.push(0);
}

fn encode_request(opcode: u16, request: &Request, out: &mut Vec<u8>) {
    out.extend_from_slice(&opcode.to_be_bytes());
    push_field(out, &request.filename);
    push_field(out, request.mode.as_str());
    for (name, value) in &request.options {
        push_field(out, name);
        push_field(out, value);
    }
}

/// Splits `bytes` into NUL-terminated fields.
fn fields(bytes: &[u8]) -> impl Iterator<Item = Result<&[u8], PacketError>> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        Some(match rest.iter().position(|&b| b == 0) {
            Some(end) => {
                let field = &rest[..end];
                rest = &rest[end + 1..];
                Ok(field)
            }
            None => {
                rest = &[];
                Err(PacketError::Unterminated)
            }
        })
    })
}

fn utf8(field: &[u8]) -> Result<&str, PacketError> {
    std::str::from_utf8(field).map_err(|_| PacketError::NotUtf8)
}

fn decode_request(bytes: &[u8]) -> Result<Request, PacketError> {
    let mut fields = fields(bytes);
    let filename = utf8(fields.next().ok_or(PacketError::Unterminated)??)?;
    if filename.is_empty() {
        return Err(PacketError::EmptyFilename);
    }
    let mode = utf8(fields.next().ok_or(PacketError::Unterminated)??)?;
    let mode = [Mode::Octet, Mode::Netascii, Mode::Mail]
        .into_iter()
        .find(|known| known.as_str().eq_ignore_ascii_case(mode))
        .ok_or_else(|| PacketError::UnknownMode(mode.to_owned()))?;
    let options = collect_options(fields)?;
    Ok(Request {
        filename: filename.to_owned(),
        mode,
        options,
    })
}

fn decode_options(bytes: &[u8]) -> Result<Vec<(String, String)>, PacketError> {
    collect_options(fields(bytes))
}

fn collect_options<'a>(
    fields: impl Iterator<Item = Result<&'a [u8], PacketError>>,
) -> Result<Vec<(String, String)>, PacketError> {
    // 79xx phones send an extra NUL after the mode: an empty field where a
    // name is due is padding. An empty *value* (RFC 2090's `multicast`) is
    // kept as one, so the options after it stay paired; negotiation ignores
    // it. An option name without a value is ignored rather than refused.
    let mut options = Vec::new();
    let mut name: Option<String> = None;
    for field in fields {
        let field = field?;
        if field.is_empty() && name.is_none() {
            continue;
        }
        let text = utf8(field)?;
        match name.take() {
            None => name = Some(text.to_ascii_lowercase()),
            Some(option) => {
                if options.len() == MAX_OPTIONS {
                    return Err(PacketError::TooManyOptions);
                }
                options.push((option, text.to_owned()));
            }
        }
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rrq(name: &str, options: &[(&str, &str)]) -> Packet {
        Packet::Rrq(Request {
            filename: name.into(),
            mode: Mode::Octet,
            options: options
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        })
    }

    #[test]
    fn every_packet_type_round_trips() {
        let packets = [
            rrq(
                "SEP001122334455.cnf.xml",
                &[("blksize", "1468"), ("tsize", "0")],
            ),
            Packet::Wrq(Request {
                filename: "log.txt".into(),
                mode: Mode::Netascii,
                options: vec![],
            }),
            Packet::Data {
                block: 65535,
                data: Bytes::from_static(b"payload"),
            },
            Packet::Data {
                block: 0,
                data: Bytes::new(),
            },
            Packet::Ack(7),
            Packet::Error {
                code: 1,
                message: "File not found".into(),
            },
            Packet::Oack(vec![("windowsize".into(), "8".into())]),
        ];
        for packet in packets {
            assert_eq!(Packet::decode(&packet.encode()).unwrap(), packet);
        }
    }

    #[test]
    fn tolerates_what_79xx_phones_send() {
        // Extra NUL after the mode, upper-case mode and option names.
        let wire = b"\x00\x01OS79XX.TXT\x00OCTET\x00\x00BLKSIZE\x00512\x00";
        let Packet::Rrq(request) = Packet::decode(wire).unwrap() else {
            panic!()
        };
        assert_eq!(request.filename, "OS79XX.TXT");
        assert_eq!(request.mode, Mode::Octet);
        assert_eq!(
            request.options,
            vec![("blksize".to_string(), "512".to_string())]
        );
    }

    #[test]
    fn an_empty_value_keeps_the_options_after_it_paired() {
        // RFC 2090's multicast option has an empty value.
        let wire = b"\x00\x01f\x00octet\x00multicast\x00\x00blksize\x001024\x00tsize\x000\x00";
        let Packet::Rrq(request) = Packet::decode(wire).unwrap() else {
            panic!()
        };
        let pair = |n: &str, v: &str| (n.to_string(), v.to_string());
        assert_eq!(
            request.options,
            vec![
                pair("multicast", ""),
                pair("blksize", "1024"),
                pair("tsize", "0")
            ]
        );
    }

    #[test]
    fn an_option_without_a_value_is_ignored() {
        let wire = b"\x00\x01a\x00octet\x00tsize\x00";
        let Packet::Rrq(request) = Packet::decode(wire).unwrap() else {
            panic!()
        };
        assert!(request.options.is_empty());
    }

    #[test]
    fn malformed_requests_get_typed_errors() {
        assert_eq!(Packet::decode(b"\x00"), Err(PacketError::TooShort(1)));
        assert_eq!(
            Packet::decode(b"\x00\x09"),
            Err(PacketError::UnknownOpcode(9))
        );
        assert_eq!(
            Packet::decode(b"\x00\x01abc"),
            Err(PacketError::Unterminated)
        );
        assert_eq!(
            Packet::decode(b"\x00\x01\x00octet\x00"),
            Err(PacketError::EmptyFilename)
        );
        assert_eq!(
            Packet::decode(b"\x00\x01a\x00binary\x00"),
            Err(PacketError::UnknownMode("binary".into()))
        );
        assert_eq!(
            Packet::decode(b"\x00\x01\xff\x00octet\x00"),
            Err(PacketError::NotUtf8)
        );
        assert_eq!(
            Packet::decode(b"\x00\x04\x00"),
            Err(PacketError::TooShort(3))
        );
        let many: Vec<u8> = b"\x00\x01a\x00octet\x00"
            .iter()
            .copied()
            .chain((0..40).flat_map(|i| format!("o{i}\x001\x00").into_bytes()))
            .collect();
        assert_eq!(Packet::decode(&many), Err(PacketError::TooManyOptions));
    }

    #[test]
    fn error_message_without_final_nul_is_accepted() {
        assert_eq!(
            Packet::decode(b"\x00\x05\x00\x08no"),
            Ok(Packet::Error {
                code: 8,
                message: "no".into()
            })
        );
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1500)) {
            let _ = Packet::decode(&bytes);
        }

        #[test]
        fn truncated_packets_never_panic(cut in 0usize..60) {
            let wire = rrq("SEP001122334455.cnf.xml", &[("blksize", "1468"), ("windowsize", "8")]).encode();
            let _ = Packet::decode(&wire[..cut.min(wire.len())]);
        }

        #[test]
        fn requests_round_trip(name in "[A-Za-z0-9._/-]{1,64}", blksize in 8u16..65464) {
            let packet = rrq(&name, &[("blksize", &blksize.to_string())]);
            prop_assert_eq!(Packet::decode(&packet.encode()).unwrap(), packet);
        }

        #[test]
        fn data_round_trips(block: u16, data in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let packet = Packet::Data { block, data: Bytes::from(data) };
            prop_assert_eq!(Packet::decode(&packet.encode()).unwrap(), packet);
        }
    }
}
