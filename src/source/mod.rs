//! Where bytes come from: the local root ([`local`]) and the remote
//! clusters over HTTP ([`upstream`]). Both are leaves: they know how to
//! read or fetch a name, never which source to ask first — that order is
//! the resolver's (ARCHITECTURE.md, "The resolution contract").

pub mod local;
pub mod upstream;
