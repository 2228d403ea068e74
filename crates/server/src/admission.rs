//! Who may hold a socket, and how fast each client address may connect and publish: the total
//! socket cap, the per-address socket cap, and per-address token buckets for WebSocket connects
//! and HTTP publishes. API keys ship in browser code, so anyone may be a client; these bounds
//! keep one address from exhausting what the others need.
//!
//! Addresses: the TCP peer, unless the peer is a configured trusted proxy — then the client is
//! the last address of `X-Forwarded-For` that is not itself a trusted proxy, so per-address limits
//! stay meaningful behind a load balancer and cannot be spoofed by clients that reach Herald
//! directly. IPv6 addresses count per /64, the block one subscriber usually holds.
//!
//! Overflow rules: a socket over either cap is closed at once, unanswered (counted in
//! `herald_refused_sockets_total`); a connect or publish over its rate gets 429
//! `LimitExceededError`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// `[limits]` keys that bound what one client address may hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdmissionConfig {
    /// Open sockets of every kind (HTTP and WebSocket); past it new sockets are closed at once.
    pub max_sockets: usize,
    /// Open sockets from one address (a trusted proxy is exempt).
    pub max_sockets_per_address: usize,
    /// WebSocket connects per second from one client address (burst: as many).
    pub max_connects_per_address_per_second: u32,
    /// HTTP publishes per second from one client address (burst: as many).
    pub max_http_publishes_per_address_per_second: u32,
    /// Load balancers whose `X-Forwarded-For` is believed: addresses or CIDR blocks
    /// (`10.0.0.0/8`, `fd00::/8`).
    pub trusted_proxies: Vec<String>,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            max_sockets: 120_000,
            max_sockets_per_address: 1_000,
            max_connects_per_address_per_second: 50,
            max_http_publishes_per_address_per_second: 200,
            trusted_proxies: Vec::new(),
        }
    }
}

impl AdmissionConfig {
    pub fn check(&self, problems: &mut Vec<String>) {
        for (key, value) in [
            ("admission.max_sockets", self.max_sockets as u64),
            (
                "admission.max_sockets_per_address",
                self.max_sockets_per_address as u64,
            ),
            (
                "admission.max_connects_per_address_per_second",
                u64::from(self.max_connects_per_address_per_second),
            ),
            (
                "admission.max_http_publishes_per_address_per_second",
                u64::from(self.max_http_publishes_per_address_per_second),
            ),
        ] {
            if value == 0 {
                problems.push(format!("{key}: must be greater than 0"));
            }
        }
        for (i, p) in self.trusted_proxies.iter().enumerate() {
            if Block::parse(p).is_none() {
                problems.push(format!(
                    "admission.trusted_proxies[{i}]: {p:?} is not an address or CIDR block such as 10.0.0.0/8"
                ));
            }
        }
    }
}

/// An address block (`a.b.c.d/n`, `x::/n`, or one address).
#[derive(Debug, Clone, Copy)]
struct Block {
    base: IpAddr,
    bits: u8,
}

impl Block {
    fn parse(text: &str) -> Option<Block> {
        let (addr, bits) = match text.split_once('/') {
            Some((a, b)) => (a.parse::<IpAddr>().ok()?, Some(b.parse::<u8>().ok()?)),
            None => (text.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(max);
        (bits <= max).then_some(Block { base: addr, bits })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let (a, b, width) = match (self.base, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => (
                u128::from(u32::from(a)) << 96,
                u128::from(u32::from(b)) << 96,
                32,
            ),
            (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
            _ => return false,
        };
        let bits = u32::from(self.bits.min(width));
        let mask = if bits == 0 {
            0
        } else {
            u128::MAX << (128 - bits)
        };
        a & mask == b & mask
    }
}

/// A token bucket: `rate` per second, at most `rate` saved up.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn full(rate: u32, now: Instant) -> Bucket {
        Bucket {
            tokens: f64::from(rate),
            last: now,
        }
    }

    fn take(&mut self, rate: u32, now: Instant) -> bool {
        let rate = f64::from(rate);
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What is known of one client address.
#[derive(Debug)]
struct Address {
    open: usize,
    connects: Bucket,
    publishes: Bucket,
    last_seen: Instant,
}

const SHARDS: usize = 16;
/// Addresses tracked per shard before idle ones are swept.
const SWEEP_AT: usize = 4096;
/// An address with nothing open and unseen this long is forgotten; its buckets are full again by
/// then for any rate of at least one per second.
const FORGET_AFTER_SECS: u64 = 60;

/// Admission state for the whole server.
pub struct Admission {
    config: AdmissionConfig,
    trusted: Vec<Block>,
    open: AtomicUsize,
    shards: Box<[Mutex<HashMap<IpAddr, Address>>]>,
}

/// Why a socket was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_sockets` are open.
    Full,
    /// `max_sockets_per_address` are open from this address.
    AddressFull,
}

/// An admitted socket; dropping it releases its place. Shared by the HTTP connection and the
/// WebSocket it may become, so the place is held until both are gone.
pub struct Ticket {
    admission: Arc<Admission>,
    /// The address charged, or `None` for a trusted proxy.
    address: Option<IpAddr>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admission.open.fetch_sub(1, Ordering::Relaxed);
        if let Some(ip) = self.address {
            let mut shard = self.admission.shard(ip);
            if let Some(a) = shard.get_mut(&ip) {
                a.open = a.open.saturating_sub(1);
            }
        }
    }
}

impl Admission {
    pub fn new(config: &AdmissionConfig) -> Admission {
        Admission {
            trusted: config
                .trusted_proxies
                .iter()
                .filter_map(|p| Block::parse(p))
                .collect(),
            config: config.clone(),
            open: AtomicUsize::new(0),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, ip: IpAddr) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Address>> {
        let h = match ip {
            IpAddr::V4(a) => u32::from(a) as usize,
            IpAddr::V6(a) => (u128::from(a) >> 64) as usize,
        };
        // The modulo keeps the index in range.
        self.shards[h % SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the address's entry, creating it (and sweeping idle ones) as needed.
    fn with<T>(&self, ip: IpAddr, f: impl FnOnce(&mut Address) -> T) -> T {
        let now = Instant::now();
        let mut shard = self.shard(ip);
        if shard.len() >= SWEEP_AT && !shard.contains_key(&ip) {
            shard.retain(|_, a| {
                a.open > 0
                    || now.saturating_duration_since(a.last_seen).as_secs() < FORGET_AFTER_SECS
            });
        }
        let c = &self.config;
        let entry = shard.entry(ip).or_insert_with(|| Address {
            open: 0,
            connects: Bucket::full(c.max_connects_per_address_per_second, now),
            publishes: Bucket::full(c.max_http_publishes_per_address_per_second, now),
            last_seen: now,
        });
        entry.last_seen = now;
        f(entry)
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|b| b.contains(ip))
    }

    /// Admits a socket from `peer`, or says why not.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Ticket, Refusal> {
        if self.open.fetch_add(1, Ordering::Relaxed) >= self.config.max_sockets {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return Err(Refusal::Full);
        }
        if self.trusted(peer) {
            return Ok(Ticket {
                admission: self.clone(),
                address: None,
            });
        }
        let ip = key(peer);
        let max = self.config.max_sockets_per_address;
        let admitted = self.with(ip, |a| {
            if a.open >= max {
                return false;
            }
            a.open += 1;
            true
        });
        if !admitted {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return Err(Refusal::AddressFull);
        }
        Ok(Ticket {
            admission: self.clone(),
            address: Some(ip),
        })
    }

    /// The client's address: the peer, or what a trusted proxy says in `X-Forwarded-For`.
    pub fn client(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        if !self.trusted(peer) {
            return peer;
        }
        // Proxies append: the last address not itself a trusted proxy is the one our proxy saw.
        forwarded_for
            .into_iter()
            .flat_map(|v| v.rsplit(','))
            .filter_map(|a| a.trim().parse::<IpAddr>().ok())
            .find(|a| !self.trusted(*a))
            .unwrap_or(peer)
    }

    /// Takes a WebSocket connect from this client's budget.
    pub fn connect(&self, client: IpAddr) -> bool {
        let rate = self.config.max_connects_per_address_per_second;
        self.with(key(client), |a| a.connects.take(rate, Instant::now()))
    }

    /// Takes an HTTP publish from this client's budget.
    pub fn publish(&self, client: IpAddr) -> bool {
        let rate = self.config.max_http_publishes_per_address_per_second;
        self.with(key(client), |a| a.publishes.take(rate, Instant::now()))
    }

    /// Open sockets.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// What an address is counted as: itself for IPv4, its /64 for IPv6.
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(a) & (u128::MAX << 64))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(trusted: &[&str]) -> Arc<Admission> {
        Arc::new(Admission::new(&AdmissionConfig {
            max_sockets: 3,
            max_sockets_per_address: 2,
            max_connects_per_address_per_second: 2,
            max_http_publishes_per_address_per_second: 1,
            trusted_proxies: trusted.iter().map(|s| s.to_string()).collect(),
        }))
    }

    #[test]
    fn caps_sockets_in_total_and_per_address() {
        let a = admission(&[]);
        let one: IpAddr = "10.0.0.1".parse().unwrap();
        let two: IpAddr = "10.0.0.2".parse().unwrap();
        let t1 = a.admit(one).unwrap();
        let _t2 = a.admit(one).unwrap();
        assert_eq!(a.admit(one).err(), Some(Refusal::AddressFull));
        let _t3 = a.admit(two).unwrap();
        assert_eq!(a.admit(two).err(), Some(Refusal::Full));
        drop(t1);
        assert!(a.admit(one).is_ok());
    }

    #[test]
    fn ipv6_counts_per_64() {
        let a = admission(&[]);
        let _x = a.admit("2001:db8::1".parse().unwrap()).unwrap();
        let _y = a.admit("2001:db8::2".parse().unwrap()).unwrap();
        assert_eq!(
            a.admit("2001:db8::3".parse().unwrap()).err(),
            Some(Refusal::AddressFull)
        );
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let a = admission(&["10.0.0.0/8"]);
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let stranger: IpAddr = "192.0.2.9".parse().unwrap();
        let xff = Some("198.51.100.7, 203.0.113.5, 10.9.9.9");
        assert_eq!(
            a.client(proxy, xff),
            "203.0.113.5".parse::<IpAddr>().unwrap()
        );
        assert_eq!(a.client(stranger, xff), stranger);
        assert_eq!(a.client(proxy, None), proxy);
        // A proxy's own sockets are not capped per address.
        let _p: Vec<_> = (0..3).map(|_| a.admit(proxy).unwrap()).collect();
    }

    #[test]
    fn rates_per_address() {
        let a = admission(&[]);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(a.connect(ip) && a.connect(ip));
        assert!(!a.connect(ip));
        assert!(a.publish(ip));
        assert!(!a.publish(ip));
        assert!(a.connect("192.0.2.2".parse().unwrap()));
    }

    #[test]
    fn bad_blocks_are_problems() {
        let mut p = Vec::new();
        AdmissionConfig {
            trusted_proxies: vec!["10.0.0.0/33".into(), "nope".into(), "fd00::/8".into()],
            ..AdmissionConfig::default()
        }
        .check(&mut p);
        assert_eq!(p.len(), 2, "{p:?}");
    }
}
