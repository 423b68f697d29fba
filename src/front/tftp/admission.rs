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
//! The rate table is keyed by address and bounded: at most
//! [`MAX_RATE_KEYS`] addresses are remembered, and an address idle for
//! the bucket's refill time is forgotten (its bucket would be full again
//! anyway), so a flood from spoofed sources cannot grow memory without
//! bound. An address forgotten early under such a flood starts again with a
//! full bucket: the limit loosens, memory does not grow.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use governor::clock::DefaultClock;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::sync::lock;

/// Client addresses whose request rate is remembered at most (measured:
/// RSS grew by 15 MB while 65,536 addresses each made three requests).
pub(crate) const MAX_RATE_KEYS: u64 = 65_536;

/// One client address's token bucket.
type Bucket = Arc<DefaultDirectRateLimiter>;

/// The buckets for one `client_request_rate` (a reload to another rate
/// starts a new table).
struct RateTable {
    quota: Quota,
    rate: u32,
    buckets: moka::sync::Cache<IpAddr, Bucket>,
    /// One clock for every bucket: a new one calibrates itself with CPUID
    /// instructions, which trap to the hypervisor on a VM (1.6 % of the
    /// CPU in a boot storm, each phone being a new address).
    clock: DefaultClock,
}

impl RateTable {
    fn new(rate: u32, capacity: u64) -> RateTable {
        let per_second = NonZeroU32::new(rate.max(1)).unwrap_or(NonZeroU32::MIN);
        RateTable {
            quota: Quota::per_second(per_second).allow_burst(per_second),
            rate,
            buckets: moka::sync::Cache::builder()
                .max_capacity(capacity)
                // The burst equals the rate: a bucket left alone for a
                // second is full, as a new one would be.
                .time_to_idle(Duration::from_secs(1))
                .build(),
            clock: DefaultClock::default(),
        }
    }
}

/// The per-client state of the TFTP front, shared by every listener and
/// kept across reloads.
pub(super) struct Admission {
    rate: ArcSwap<RateTable>,
    /// Addresses the rate table remembers at most.
    capacity: u64,
    /// Transfers running per client address; an address leaves the map when
    /// its last transfer ends, so it holds at most `max_transfers` entries.
    running: Mutex<HashMap<IpAddr, usize>>,
}

impl Admission {
    pub(super) fn new(rate: u32) -> Arc<Admission> {
        Admission::with_capacity(rate, MAX_RATE_KEYS)
    }

    fn with_capacity(rate: u32, capacity: u64) -> Arc<Admission> {
        Arc::new(Admission {
            rate: ArcSwap::from_pointee(RateTable::new(rate, capacity)),
            capacity,
            running: Mutex::default(),
        })
    }

    /// Applies a reloaded `client_request_rate` (buckets start full).
    pub(super) fn update(&self, rate: u32) {
        if self.rate.load().rate != rate {
            self.rate
                .store(Arc::new(RateTable::new(rate, self.capacity)));
        }
    }

    /// Whether `client` may make one more new request now (and counts it).
    pub(super) fn within_rate(&self, client: IpAddr) -> bool {
        let table = self.rate.load();
        let bucket = table.buckets.get_with(client.to_canonical(), || {
            Arc::new(RateLimiter::direct_with_clock(
                table.quota,
                table.clock.clone(),
            ))
        });
        bucket.check().is_ok()
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
        let table = admission.rate.load();
        table.buckets.run_pending_tasks();
        assert!(
            table.buckets.entry_count() <= 1000,
            "{}",
            table.buckets.entry_count()
        );
        // Idle addresses are forgotten once their bucket is full again.
        std::thread::sleep(Duration::from_millis(1100));
        table.buckets.run_pending_tasks();
        assert_eq!(table.buckets.entry_count(), 0);
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
