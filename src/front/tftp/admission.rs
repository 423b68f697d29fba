//! Per-client admission on the TFTP listeners, after the allow-list: how
//! many new requests one client address may make per second
//! (`tftp.client_request_rate`, a token bucket with a burst of the same
//! size) and how many transfers it may run at once
//! (`tftp.max_transfers_per_client`).
//!
//! Over the rate a request gets **no answer**. UDP sources are not
//! authenticated: a source sending faster than any phone boots is most
//! likely a spoofed flood, and every answer to it — even a small ERROR —
//! would go to the victim whose address was forged (reflection). A real
//! phone that trips the limit simply retransmits its RRQ a second later.
//! Over the transfer cap the client gets `busy, retry later`: it is
//! already being sent files, so it is real, and the answer is small.
//!
//! The rate table is keyed by address and bounded: it remembers at most
//! [`MAX_RATE_KEYS`] addresses. When full, the addresses idle for the
//! bucket's refill time are forgotten (their bucket would be full again
//! anyway); if that frees less than half, a flood of spoofed sources is
//! filling it, and the table starts again empty. An address forgotten early
//! starts again with a full bucket: under such a flood the limit loosens,
//! memory does not grow.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use governor::clock::DefaultClock;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};

use crate::sync::lock;

/// Client addresses whose request rate is remembered at most (an entry is
/// an address and 8 bytes of bucket state in a hash map: a few MB when
/// full).
pub(crate) const MAX_RATE_KEYS: usize = 65_536;

/// Every client address's token bucket, in one map under one lock: a
/// lookup per new request costs a tenth of a concurrent cache's (measured
/// with callgrind in a boot storm: 3,000 instructions per file with moka).
type Buckets =
    RateLimiter<IpAddr, HashMapStateStore<IpAddr, foldhash::fast::RandomState>, DefaultClock>;

/// The buckets for one `client_request_rate` (a reload to another rate
/// starts a new table).
struct RateTable {
    rate: u32,
    /// Swapped for an empty table when a flood fills it (see the module's
    /// documentation).
    buckets: ArcSwap<Buckets>,
    quota: Quota,
    /// One clock for every table: a new one calibrates itself with CPUID
    /// instructions, which trap to the hypervisor on a VM.
    clock: DefaultClock,
}

impl RateTable {
    fn new(rate: u32, clock: DefaultClock) -> RateTable {
        let per_second = NonZeroU32::new(rate.max(1)).unwrap_or(NonZeroU32::MIN);
        // The burst equals the rate: a bucket left alone for a second is
        // full, as a new one would be, and can be forgotten.
        let quota = Quota::per_second(per_second).allow_burst(per_second);
        RateTable {
            rate,
            buckets: ArcSwap::from_pointee(empty(quota, &clock)),
            quota,
            clock,
        }
    }

    /// Whether `client` may make one more request now (and counts it).
    fn check(&self, client: IpAddr, capacity: usize) -> bool {
        let buckets = self.buckets.load();
        let allowed = buckets.check_key(&client).is_ok();
        if buckets.len() >= capacity {
            buckets.retain_recent();
            if buckets.len() > capacity / 2 {
                self.buckets.store(Arc::new(empty(self.quota, &self.clock)));
            }
        }
        allowed
    }
}

fn empty(quota: Quota, clock: &DefaultClock) -> Buckets {
    RateLimiter::hashmap_with_clock_and_hasher(quota, clock.clone(), Default::default())
}

/// The per-client state of the TFTP front, shared by every listener and
/// kept across reloads.
pub(super) struct Admission {
    rate: ArcSwap<RateTable>,
    /// Addresses the rate table remembers at most.
    capacity: usize,
    /// Transfers running per client address; an address leaves the map when
    /// its last transfer ends, so it holds at most `max_transfers` entries.
    running: Mutex<HashMap<IpAddr, usize>>,
}

impl Admission {
    pub(super) fn new(rate: u32) -> Arc<Admission> {
        Admission::with_capacity(rate, MAX_RATE_KEYS)
    }

    fn with_capacity(rate: u32, capacity: usize) -> Arc<Admission> {
        Arc::new(Admission {
            rate: ArcSwap::from_pointee(RateTable::new(rate, DefaultClock::default())),
            capacity,
            running: Mutex::default(),
        })
    }

    /// Applies a reloaded `client_request_rate` (buckets start full).
    pub(super) fn update(&self, rate: u32) {
        if self.rate.load().rate != rate {
            let clock = self.rate.load().clock.clone();
            self.rate.store(Arc::new(RateTable::new(rate, clock)));
        }
    }

    /// Whether `client` may make one more new request now (and counts it).
    pub(super) fn within_rate(&self, client: IpAddr) -> bool {
        self.rate.load().check(client.to_canonical(), self.capacity)
    }

    /// A claim on one of `client`'s transfers if it runs fewer than `cap`;
    /// dropping it ends the claim.
    pub(super) fn claim(self: &Arc<Self>, client: IpAddr, cap: usize) -> Option<ClientClaim> {
        let client = client.to_canonical();
        let mut running = lock(&self.running);
        let count = running.entry(client).or_insert(0);
        if *count >= cap {
            return None;
        }
        *count += 1;
        Some(ClientClaim {
            admission: self.clone(),
            client,
        })
    }
}

/// One running transfer of a client address.
pub(super) struct ClientClaim {
    admission: Arc<Admission>,
    client: IpAddr,
}

impl Drop for ClientClaim {
    fn drop(&mut self) {
        let mut running = lock(&self.admission.running);
        if let Some(count) = running.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                running.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_client_gets_its_burst_then_waits_while_others_are_served() {
        let admission = Admission::new(5);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "::ffff:192.0.2.2".parse().unwrap();
        let allowed = (0..20).filter(|_| admission.within_rate(a)).count();
        assert!((5..=6).contains(&allowed), "{allowed}");
        assert!(admission.within_rate(b));
        // Mapped and plain are one client.
        assert!((0..10).filter(|_| admission.within_rate(b)).count() <= 5);
        assert!(!admission.within_rate("192.0.2.2".parse().unwrap()));
    }

    #[test]
    fn a_flood_of_sources_cannot_grow_the_rate_table() {
        let admission = Admission::with_capacity(50, 1000);
        for i in 0..20_000u32 {
            let source = IpAddr::from(std::net::Ipv4Addr::from(0x0A00_0000 + i));
            assert!(admission.within_rate(source), "a new source has its burst");
        }
        let remembered = || admission.rate.load().buckets.load().len();
        assert!(remembered() <= 1000, "{}", remembered());
    }

    #[test]
    fn a_full_table_forgets_the_idle_addresses_and_keeps_the_busy_ones() {
        let admission = Admission::with_capacity(3, 100);
        let busy: IpAddr = "192.0.2.1".parse().unwrap();
        while admission.within_rate(busy) {}
        // 60 idle ones, then a second later 60 more: the first 60 are
        // forgotten when the table fills, the busy one is still over.
        for i in 0..60u32 {
            admission.within_rate(IpAddr::from(std::net::Ipv4Addr::from(0x0A00_0000 + i)));
        }
        std::thread::sleep(Duration::from_millis(1100));
        while admission.within_rate(busy) {}
        for i in 0..60u32 {
            admission.within_rate(IpAddr::from(std::net::Ipv4Addr::from(0x0B00_0000 + i)));
        }
        assert!(admission.rate.load().buckets.load().len() < 100);
        assert!(
            !admission.within_rate(busy),
            "the busy address was forgotten"
        );
    }

    #[test]
    fn transfer_claims_are_capped_per_client_and_given_back() {
        let admission = Admission::new(50);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let claims: Vec<_> = (0..3).map(|_| admission.claim(a, 3).unwrap()).collect();
        assert!(admission.claim(a, 3).is_none());
        assert!(admission.claim("192.0.2.9".parse().unwrap(), 3).is_some());
        drop(claims);
        assert!(lock(&admission.running).is_empty(), "no entry left behind");
        assert!(admission.claim(a, 3).is_some());
    }
}
