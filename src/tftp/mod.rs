//! The TFTP protocol: wire codec, option negotiation, the sending and
//! receiving state machines (pure, no I/O), and the tokio drivers that put
//! them on sockets (the server and the diagnostic client).

pub mod client;
pub mod netascii;
pub mod options;
pub mod packet;
pub mod receive;
pub mod server;
pub mod transfer;
