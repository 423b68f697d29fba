//! The TFTP protocol and nothing else: the wire codec ([`packet`]), option
//! negotiation ([`options`]), netascii ([`netascii`]), the sending and
//! receiving state machines ([`send`], [`receive`]) and the decision for a
//! datagram on a listening port ([`accept`]).
//!
//! No tokio, no sockets, no files, no clock: callers hand in datagrams and
//! the current time and get back datagrams to send and the next deadline;
//! a transfer's bytes come from a [`send::BlockSource`] the caller provides.
//! The socket drivers are `front::tftp` (server) and `client` (diagnostic
//! client).

pub mod accept;
pub mod netascii;
pub mod options;
pub mod packet;
pub mod receive;
pub mod send;
