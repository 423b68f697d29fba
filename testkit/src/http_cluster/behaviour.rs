//! [`Behaviour`]: how an [`HttpCluster`] answers, cluster-wide or per name,
//! and the setters that script it.

use std::time::Duration;

use super::HttpCluster;

/// How the server answers. The cluster-wide behaviour applies to every
/// request unless a per-name override ([`HttpCluster::behave_for`]) exists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Behaviour {
    /// Answer every request with this status (with the file's body when the
    /// status is 200 and the file exists, an empty body for 200 otherwise,
    /// a short text body for other statuses).
    pub status: Option<u16>,
    /// Wait this long after reading the request before answering.
    pub delay: Duration,
    /// Read the request and never answer (the connection stays open).
    pub hang: bool,
    /// Send a `Content-Length` larger than the body actually sent, then close.
    pub wrong_length: bool,
    /// Send a `Content-Length` smaller than the body actually sent, and keep
    /// the connection open.
    pub short_length: bool,
    /// Send the headers and half the body, then reset the connection (RST).
    pub reset_mid_body: bool,
    /// Send the headers and half the body, then stall (keep the connection
    /// open, send nothing more).
    pub stall_mid_body: bool,
    /// Send the body with `Transfer-Encoding: chunked` (no `Content-Length`).
    pub chunked: bool,
    /// Send the body in pieces of this many bytes with this pause before
    /// each (a slow but steady link).
    pub trickle: Option<(usize, Duration)>,
    /// Extra response headers (e.g. `Location` for a 302, `Retry-After`).
    pub headers: Vec<(String, String)>,
}

impl HttpCluster {
    // ---- behaviour (cluster-wide) -------------------------------------------

    /// Every request answers `status` (e.g. 503, 500, 302, 403).
    pub fn set_status(&self, status: u16) {
        self.state().behaviour.status = Some(status);
    }

    /// Back to normal statuses (200 for files, 404 otherwise).
    pub fn clear_status(&self) {
        self.state().behaviour.status = None;
    }

    /// Waits `delay` after reading each request before answering.
    pub fn set_delay(&self, delay: Duration) {
        self.state().behaviour.delay = delay;
    }

    /// Accepts and reads requests but never answers.
    pub fn set_hang(&self, on: bool) {
        self.state().behaviour.hang = on;
    }

    /// Announces a `Content-Length` larger than the body, sends the body, closes.
    pub fn set_wrong_length(&self, on: bool) {
        self.state().behaviour.wrong_length = on;
    }

    /// Announces a `Content-Length` smaller than the body, sends it all, keeps
    /// the connection open.
    pub fn set_short_length(&self, on: bool) {
        self.state().behaviour.short_length = on;
    }

    /// Sends the body in `piece`-byte pieces, pausing `pause` before each.
    pub fn set_trickle(&self, piece: usize, pause: Duration) {
        self.state().behaviour.trickle = Some((piece, pause));
    }

    /// Sends headers and half the body, then resets the connection.
    pub fn set_reset_mid_body(&self, on: bool) {
        self.state().behaviour.reset_mid_body = on;
    }

    /// Sends headers and half the body, then goes silent (connection open).
    pub fn set_stall_mid_body(&self, on: bool) {
        self.state().behaviour.stall_mid_body = on;
    }

    /// Uses `Transfer-Encoding: chunked` instead of `Content-Length`.
    pub fn set_chunked(&self, on: bool) {
        self.state().behaviour.chunked = on;
    }

    /// Adds a response header to every answer (e.g. `Location`).
    pub fn add_header(&self, name: impl Into<String>, value: impl Into<String>) {
        self.state()
            .behaviour
            .headers
            .push((name.into(), value.into()));
    }

    /// Answers with `Content-Encoding: coding` (e.g. `gzip`) whatever the
    /// request asked: put the encoded bytes as the file.
    pub fn set_content_encoding(&self, coding: impl Into<String>) {
        self.add_header("Content-Encoding", coding);
    }

    /// Replaces the whole cluster-wide behaviour.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        self.state().behaviour = behaviour;
    }

    /// Back to a well-behaved server (overrides cleared too; files kept).
    pub fn reset_behaviour(&self) {
        let mut state = self.state();
        state.behaviour = Behaviour::default();
        state.overrides.clear();
    }

    // ---- behaviour (per name) ------------------------------------------------

    /// Requests for `name` follow `behaviour` instead of the cluster-wide one.
    pub fn behave_for(&self, name: impl Into<String>, behaviour: Behaviour) {
        self.state().overrides.insert(name.into(), behaviour);
    }

    /// Shorthand: requests for `name` answer `status`.
    pub fn set_status_for(&self, name: impl Into<String>, status: u16) {
        self.behave_for(
            name,
            Behaviour {
                status: Some(status),
                ..Behaviour::default()
            },
        );
    }

    /// Removes the override for `name`.
    pub fn clear_override(&self, name: &str) {
        self.state().overrides.remove(name);
    }
}
