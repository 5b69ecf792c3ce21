//! Rate limits per client address and per key, with governor's GCRA limiters. The address map
//! is bounded: an attack from many addresses cannot grow it past `max_tracked_clients`. When it
//! is full, addresses whose buckets have refilled are forgotten (at most every 100 ms); if it is
//! still full, new addresses share one overflow bucket until room frees up.

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use platform::keys::Role;
use serde::Deserialize;

/// A sustained rate and the burst above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

impl Limit {
    fn quota(self) -> Quota {
        Quota::per_second(self.per_second).allow_burst(self.burst)
    }
}

/// `[rate_limits]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    pub enabled: bool,
    /// Addresses tracked at once, at most.
    pub max_tracked_clients: usize,
    pub per_client_ip: Limit,
    pub ingest: Limit,
    pub read: Limit,
    pub admin: Limit,
}

/// Which limit a refused request passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    ClientAddress { limit: Limit, retry_after: Duration },
    Key { limit: Limit, retry_after: Duration },
}

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>;

/// Every limiter of the service.
pub struct RateLimits {
    settings: RateLimitSettings,
    clock: DefaultClock,
    by_address: Keyed<IpAddr>,
    by_key: [(Role, Keyed<i64>); 3],
    /// Milliseconds since `started` of the last sweep of the address map.
    last_sweep_ms: AtomicU64,
    started: Instant,
}

/// What new addresses share while the address map is full.
const OVERFLOW: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
const SWEEP_EVERY_MS: u64 = 100;

impl RateLimits {
    pub fn new(settings: &RateLimitSettings) -> Arc<RateLimits> {
        Arc::new(RateLimits {
            settings: settings.clone(),
            clock: DefaultClock::default(),
            by_address: RateLimiter::keyed(settings.per_client_ip.quota()),
            by_key: [
                (Role::Ingest, RateLimiter::keyed(settings.ingest.quota())),
                (Role::Read, RateLimiter::keyed(settings.read.quota())),
                (Role::Admin, RateLimiter::keyed(settings.admin.quota())),
            ],
            last_sweep_ms: AtomicU64::new(0),
            started: Instant::now(),
        })
    }

    /// Takes one request from the address's bucket.
    pub fn check_address(&self, address: IpAddr) -> Result<(), Limited> {
        let address = self.tracked(address);
        self.by_address
            .check_key(&address)
            .map_err(|not_until| Limited::ClientAddress {
                limit: self.settings.per_client_ip,
                retry_after: not_until.wait_time_from(self.clock.now()),
            })
    }

    /// Takes one request from the key's bucket (its role's limit).
    pub fn check_key(&self, key_id: i64, role: Role) -> Result<(), Limited> {
        let (limiter, limit) = match role {
            Role::Ingest => (&self.by_key[0].1, self.settings.ingest),
            Role::Read => (&self.by_key[1].1, self.settings.read),
            Role::Admin => (&self.by_key[2].1, self.settings.admin),
        };
        limiter
            .check_key(&key_id)
            .map_err(|not_until| Limited::Key {
                limit,
                retry_after: not_until.wait_time_from(self.clock.now()),
            })
    }

    /// Addresses tracked now.
    pub fn tracked_addresses(&self) -> usize {
        self.by_address.len()
    }

    fn tracked(&self, address: IpAddr) -> IpAddr {
        if self.by_address.len() < self.settings.max_tracked_clients {
            return address;
        }
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.last_sweep_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= SWEEP_EVERY_MS
            && self
                .last_sweep_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.by_address.retain_recent();
            self.by_address.shrink_to_fit();
        }
        if self.by_address.len() < self.settings.max_tracked_clients {
            address
        } else {
            OVERFLOW
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn limit(per_second: u32, burst: u32) -> Limit {
        Limit {
            per_second: NonZeroU32::new(per_second).unwrap(),
            burst: NonZeroU32::new(burst).unwrap(),
        }
    }

    fn settings(max_tracked_clients: usize) -> RateLimitSettings {
        RateLimitSettings {
            enabled: true,
            max_tracked_clients,
            per_client_ip: limit(1, 3),
            ingest: limit(1, 2),
            read: limit(1, 1),
            admin: limit(1, 5),
        }
    }

    #[test]
    fn an_address_gets_its_burst_then_is_told_when_to_retry() {
        let limits = RateLimits::new(&settings(100));
        let address = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        for _ in 0..3 {
            assert!(limits.check_address(address).is_ok());
        }
        let Err(Limited::ClientAddress { retry_after, .. }) = limits.check_address(address) else {
            panic!("the fourth request passes a burst of three");
        };
        assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(1));
        // Another address has its own bucket.
        assert!(limits
            .check_address(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)))
            .is_ok());
    }

    #[test]
    fn keys_are_limited_by_their_role() {
        let limits = RateLimits::new(&settings(100));
        assert!(limits.check_key(1, Role::Read).is_ok());
        assert!(matches!(
            limits.check_key(1, Role::Read),
            Err(Limited::Key { .. })
        ));
        for _ in 0..5 {
            assert!(limits.check_key(2, Role::Admin).is_ok());
        }
    }

    #[test]
    fn the_address_map_stays_bounded_under_many_addresses() {
        let limits = RateLimits::new(&settings(1000));
        for n in 0..50_000u32 {
            let _ = limits.check_address(IpAddr::V4(Ipv4Addr::from(n)));
        }
        assert!(
            limits.tracked_addresses() <= 1001,
            "{} addresses tracked",
            limits.tracked_addresses()
        );
    }
}
