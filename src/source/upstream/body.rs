//! Reading a 200's body: bounded in size (`cache.max_file_size`, checked
//! against `Content-Length`), in time (a stall of `remote.request_timeout`,
//! a rate under `remote.min_body_rate`, the [`super::BODY_CEILING`]) and in
//! memory (its bytes held against `remote.max_inflight_bytes` until it
//! completes or fails).
//!
//! The rate rule: from a body's first byte, each window of
//! [`BODY_RATE_WINDOW`] must bring `min_body_rate × window` bytes. A
//! trickling cluster is dropped within one window of its first byte
//! (seconds), not at the ceiling (minutes); a slow but useful link
//! (73 MB of firmware at 1 Mbit/s is 128 KiB/s) passes. A body that ends
//! within its first window is never judged.

use bytes::BytesMut;
use reqwest::header::{HeaderMap, CONTENT_ENCODING, CONTENT_LENGTH};
use tokio::time::Instant;

use super::answer::{AddressOutcome, Declined, FailReason};
use super::{io_error_kind, Upstream, BODY_CEILING};
use crate::config::BODY_RATE_WINDOW;

/// The current rate window: when it began and the body's length then.
struct Window {
    start: Instant,
    base: u64,
}

impl Upstream {
    /// Reads a 200 body completely. An error is the address's outcome:
    /// Failed (too large, too slow, stalled, cut short) or Declined (over
    /// the budget of bodies in flight).
    pub(super) async fn read_body(
        &self,
        mut response: reqwest::Response,
    ) -> Result<bytes::Bytes, AddressOutcome> {
        let failed = |reason| Err(AddressOutcome::Failed(reason));
        let limit = self.max_file_size;
        let expected = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if expected.is_some_and(|len| len > limit) {
            return failed(FailReason::TooLarge { limit });
        }
        let over_budget = || {
            Err(AddressOutcome::Declined(Declined::OverBudget {
                limit: self.budget.limit,
            }))
        };
        let capacity = expected.unwrap_or(0).min(limit).min(16 << 20);
        // What is allocated counts, not only what has arrived: a known
        // length is claimed whole before the first byte.
        let mut claim = self.budget.claim();
        if !claim.grow_to(capacity) {
            return over_budget();
        }
        let mut body = BytesMut::with_capacity(capacity as usize);
        let ceiling = Instant::now() + BODY_CEILING;
        let mut stall_at = Instant::now() + self.request_timeout;
        let mut window: Option<Window> = None;
        loop {
            let judge_at = window.as_ref().map(|w| w.start + BODY_RATE_WINDOW);
            let wake = [Some(ceiling), Some(stall_at), judge_at]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(ceiling);
            let chunk = match tokio::time::timeout_at(wake, response.chunk()).await {
                Ok(chunk) => chunk,
                Err(_) => {
                    let now = Instant::now();
                    if now >= ceiling {
                        return failed(FailReason::Timeout {
                            after: BODY_CEILING,
                        });
                    }
                    if now >= stall_at {
                        return failed(FailReason::Stalled {
                            after: self.request_timeout,
                        });
                    }
                    // A rate window ended with no data in its last moment:
                    // judge it, and wait on for the same chunk (reading a
                    // chunk loses nothing when its wait is cut).
                    if let Some(w) = window.as_mut() {
                        self.judge(w, body.len() as u64, now)?;
                    }
                    continue;
                }
            };
            match chunk {
                Ok(Some(chunk)) => {
                    let now = Instant::now();
                    stall_at = now + self.request_timeout;
                    let total = body.len() as u64 + chunk.len() as u64;
                    if total > limit {
                        return failed(FailReason::TooLarge { limit });
                    }
                    if !claim.grow_to(total.max(body.capacity() as u64)) {
                        return over_budget();
                    }
                    body.extend_from_slice(&chunk);
                    match window.as_mut() {
                        None if self.min_body_rate > 0 && !chunk.is_empty() => {
                            window = Some(Window {
                                start: now,
                                base: 0,
                            });
                        }
                        Some(w) if now >= w.start + BODY_RATE_WINDOW => {
                            self.judge(w, total, now)?;
                        }
                        _ => {}
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let got = body.len() as u64;
                    return failed(match expected {
                        // The peer closed cleanly (FIN) before Content-Length
                        // bytes; a reset or a time-out is reported as such.
                        Some(expected)
                            if got < expected
                                && !e.is_timeout()
                                && !matches!(io_error_kind(&e),
                                    Some(k) if k != std::io::ErrorKind::UnexpectedEof) =>
                        {
                            FailReason::BodyLength { expected, got }
                        }
                        _ => self.classify(&e, true),
                    });
                }
            }
        }
        let got = body.len() as u64;
        if let Some(expected) = expected {
            if got != expected {
                return failed(FailReason::BodyLength { expected, got });
            }
        }
        Ok(body.freeze())
    }

    /// Ends the rate window `w` at `now` with the body at `total` bytes:
    /// too few for `min_body_rate` fails the address, enough starts the
    /// next window.
    fn judge(&self, w: &mut Window, total: u64, now: Instant) -> Result<(), AddressOutcome> {
        let got = total - w.base;
        let needed = self
            .min_body_rate
            .saturating_mul(BODY_RATE_WINDOW.as_millis() as u64)
            / 1000;
        if got < needed {
            return Err(AddressOutcome::Failed(FailReason::TooSlow {
                got,
                window: BODY_RATE_WINDOW,
                min_rate: self.min_body_rate,
            }));
        }
        *w = Window {
            start: now,
            base: total,
        };
        Ok(())
    }
}

/// The `Content-Encoding` of a response when it is anything but `identity`
/// (the client decodes nothing: compressed bytes would be taken for the
/// file). Several headers or a list (`gzip, identity`) count as encoded.
pub(super) fn foreign_encoding(headers: &HeaderMap) -> Option<String> {
    let codings: Vec<String> = headers
        .get_all(CONTENT_ENCODING)
        .iter()
        .flat_map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .split(',')
                .map(|c| c.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("identity"))
        .collect();
    (!codings.is_empty()).then(|| codings.join(", "))
}
