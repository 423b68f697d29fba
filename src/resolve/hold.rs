//! Hold-down of one cluster address: after an address failure (connect
//! error, time-out, broken connection: [`FailReason::is_address_failure`])
//! the address is skipped for `remote.hold_down`,
//! doubling while it keeps failing up to `remote.hold_down_max()`; a `503`
//! with `Retry-After` holds it down for that long (at most
//! [`HOLD_DOWN_CAP`]). When the time is up, one request (the probe) asks
//! it again while the others keep skipping it; the probe's answer brings
//! it back or holds it down longer.
//!
//! Pure arithmetic over instants the caller passes in, so that the rules
//! are tested without sleeping; `health.rs` keeps one per address, logs
//! the transitions and sets the gauge.

use std::time::{Duration, Instant};

use crate::config::{RemoteConfig, HOLD_DOWN_CAP};
#[cfg(doc)]
use crate::source::upstream::FailReason;

/// The durations that drive [`Hold`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct HoldPolicy {
    /// After the first failure; zero turns hold-down off.
    pub(super) base: Duration,
    /// The longest hold after repeated failures.
    pub(super) max: Duration,
    /// How long a probe may take before another request probes instead
    /// (a probe whose task was dropped must not keep the address skipped).
    pub(super) probe_window: Duration,
}

impl HoldPolicy {
    pub(super) fn new(remote: &RemoteConfig) -> HoldPolicy {
        HoldPolicy {
            base: remote.hold_down,
            max: remote.hold_down_max(),
            probe_window: remote.connect_timeout + remote.request_timeout,
        }
    }

    /// The hold after `failures` failures in a row (1, 2, …): `base`,
    /// doubled each time, at most `max`.
    pub(super) fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.base.saturating_mul(1 << doublings).min(self.max)
    }
}

/// What an answer changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Transition {
    /// Nothing worth a log line.
    None,
    /// The address was up and is now held down for this long.
    Down(Duration),
    /// It was down, was tried again and is held down again for this long.
    StillDown(Duration),
    /// It was down and answered: it is up again.
    Back,
}

/// Whether an address may be asked now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Admission {
    /// Up: ask it.
    Ask,
    /// Its hold ran out: this request tries it again (the others skip it
    /// until the answer).
    Probe,
    /// Held down this long still: skip it.
    Skip(Duration),
}

/// The hold-down state of one address. `Default` is up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Hold {
    /// Down: failures in a row (0 after a `Retry-After` hold). `None`: up.
    down: Option<u32>,
    /// Skipped until then (while down).
    until: Option<Instant>,
    /// A probe is out until then.
    probing_until: Option<Instant>,
}

impl Hold {
    /// Up (asked normally)?
    pub(super) fn is_up(&self) -> bool {
        self.down.is_none()
    }

    /// Until when it is skipped, if it is now (a probe out counts).
    pub(super) fn skipped_until(&self, now: Instant) -> Option<Instant> {
        [self.until, self.probing_until]
            .into_iter()
            .flatten()
            .filter(|t| *t > now)
            .max()
    }

    /// Whether to ask the address now. Claims the probe when the hold has
    /// run out, so that one request, not all of them, tries it again.
    pub(super) fn admit(&mut self, now: Instant, policy: &HoldPolicy) -> Admission {
        // With hold-down off, a down address is asked like any other.
        if self.down.is_none() || policy.base.is_zero() {
            return Admission::Ask;
        }
        if let Some(until) = self.skipped_until(now) {
            return Admission::Skip(until - now);
        }
        self.probing_until = Some(now + policy.probe_window);
        Admission::Probe
    }

    /// The address failed (connect error, time-out, broken connection).
    pub(super) fn failed(&mut self, now: Instant, policy: &HoldPolicy) -> Transition {
        match self.down {
            None => {
                self.hold(now, 1, policy.backoff(1));
                Transition::Down(policy.backoff(1))
            }
            // The probe failed: hold it down longer.
            Some(failures) if self.probing_until.is_some() => {
                let failures = failures + 1;
                let hold = policy.backoff(failures);
                self.hold(now, failures, hold);
                Transition::StillDown(hold)
            }
            // A request that began before the address went down: the
            // hold already counts this failure.
            Some(_) => Transition::None,
        }
    }

    /// The address answered `503` with `Retry-After: delay`. Without a
    /// usable delay (none, zero, or hold-down turned off) a busy address
    /// is an answering one.
    pub(super) fn busy(
        &mut self,
        now: Instant,
        delay: Option<Duration>,
        policy: &HoldPolicy,
    ) -> Transition {
        let delay = match delay {
            Some(d) if !d.is_zero() && !policy.base.is_zero() => d.min(HOLD_DOWN_CAP),
            _ => return self.answered(),
        };
        let was_up = self.down.is_none();
        self.hold(now, 0, delay);
        if was_up {
            Transition::Down(delay)
        } else {
            Transition::StillDown(delay)
        }
    }

    /// The address answered (200, 404, a 503 without `Retry-After`, or an
    /// answer unusable for one name such as a 500): up,
    /// and the back-off starts again from `remote.hold_down`.
    pub(super) fn answered(&mut self) -> Transition {
        let was_down = self.down.is_some();
        *self = Hold::default();
        if was_down {
            Transition::Back
        } else {
            Transition::None
        }
    }

    fn hold(&mut self, now: Instant, failures: u32, hold: Duration) {
        self.down = Some(failures);
        self.until = Some(now + hold);
        self.probing_until = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn policy() -> HoldPolicy {
        HoldPolicy {
            base: S(5),
            max: S(60),
            probe_window: S(6),
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = policy();
        let holds: Vec<u64> = (1..=7).map(|n| p.backoff(n).as_secs()).collect();
        assert_eq!(holds, [5, 10, 20, 40, 60, 60, 60]);
        assert_eq!(p.backoff(u32::MAX), S(60));
        let off = HoldPolicy {
            base: Duration::ZERO,
            ..p
        };
        assert_eq!(off.backoff(3), Duration::ZERO);
    }

    /// An address that keeps failing, on an injected clock: held 5 s, then
    /// one probe, 10 s, 20 s, 40 s, 60 s, 60 s; an answer resets it.
    #[test]
    fn failing_probes_double_the_hold_and_an_answer_resets_it() {
        let p = policy();
        let mut t = Instant::now();
        let mut hold = Hold::default();
        assert_eq!(hold.admit(t, &p), Admission::Ask);
        assert_eq!(hold.failed(t, &p), Transition::Down(S(5)));
        assert!(!hold.is_up());
        for expected in [10, 20, 40, 60, 60] {
            // Skipped until the hold runs out…
            assert_eq!(
                hold.admit(t + S(1), &p),
                Admission::Skip(hold_left(&hold, t + S(1)))
            );
            t = hold.until.unwrap();
            // …then one request probes while the others still skip.
            assert_eq!(hold.admit(t, &p), Admission::Probe);
            assert_eq!(hold.admit(t, &p), Admission::Skip(S(6)));
            assert_eq!(hold.failed(t, &p), Transition::StillDown(S(expected)));
        }
        t = hold.until.unwrap();
        assert_eq!(hold.admit(t, &p), Admission::Probe);
        assert_eq!(hold.answered(), Transition::Back);
        assert!(hold.is_up());
        assert_eq!(hold.admit(t, &p), Admission::Ask);
        // The next failure starts from 5 s again.
        assert_eq!(hold.failed(t, &p), Transition::Down(S(5)));
    }

    fn hold_left(hold: &Hold, now: Instant) -> Duration {
        hold.until.unwrap() - now
    }

    #[test]
    fn failures_of_requests_begun_before_the_hold_do_not_extend_it() {
        let p = policy();
        let t = Instant::now();
        let mut hold = Hold::default();
        assert_eq!(hold.failed(t, &p), Transition::Down(S(5)));
        // Nineteen other phones' requests were already waiting on it.
        for _ in 0..19 {
            assert_eq!(hold.failed(t + S(1), &p), Transition::None);
        }
        assert_eq!(hold.admit(t + S(5), &p), Admission::Probe);
        assert_eq!(hold.failed(t + S(5), &p), Transition::StillDown(S(10)));
    }

    #[test]
    fn a_lost_probe_is_replaced_after_its_window() {
        let p = policy();
        let t = Instant::now();
        let mut hold = Hold::default();
        hold.failed(t, &p);
        assert_eq!(hold.admit(t + S(5), &p), Admission::Probe);
        assert_eq!(hold.admit(t + S(10), &p), Admission::Skip(S(1)));
        assert_eq!(hold.admit(t + S(11), &p), Admission::Probe);
    }

    #[test]
    fn retry_after_holds_that_long_capped() {
        let p = policy();
        let t = Instant::now();
        let mut hold = Hold::default();
        assert_eq!(hold.busy(t, Some(S(2)), &p), Transition::Down(S(2)));
        assert!(!hold.is_up());
        assert_eq!(hold.admit(t + S(1), &p), Admission::Skip(S(1)));
        assert_eq!(hold.admit(t + S(2), &p), Admission::Probe);
        assert_eq!(
            hold.busy(t + S(2), Some(S(3600)), &p),
            Transition::StillDown(S(60))
        );
        assert_eq!(hold.skipped_until(t + S(2)), Some(t + S(62)));
        // A 503 without Retry-After is an answer.
        let mut other = Hold::default();
        assert_eq!(other.busy(t, None, &p), Transition::None);
        assert_eq!(other.busy(t, Some(Duration::ZERO), &p), Transition::None);
        assert!(other.is_up());
        assert_eq!(hold.busy(t + S(62), None, &p), Transition::Back);
    }

    #[test]
    fn zero_hold_down_never_skips_but_tracks_down_and_back() {
        let p = HoldPolicy {
            base: Duration::ZERO,
            ..policy()
        };
        let t = Instant::now();
        let mut hold = Hold::default();
        assert_eq!(hold.failed(t, &p), Transition::Down(Duration::ZERO));
        assert_eq!(hold.admit(t, &p), Admission::Ask);
        assert_eq!(hold.admit(t, &p), Admission::Ask);
        // More failures are no news; Retry-After is not honoured either.
        assert_eq!(hold.failed(t, &p), Transition::None);
        assert_eq!(hold.busy(t, Some(S(2)), &p), Transition::Back);
    }
}
