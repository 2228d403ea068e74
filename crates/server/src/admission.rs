//! Who may hold a socket, and how fast each client may connect and publish: the total socket
//! cap, and per client address and per authenticated identity a socket cap and token buckets for
//! WebSocket connects and HTTP publishes. API keys ship in browser code, so anyone may be a
//! client; these bounds keep one address, or one stolen credential used from many addresses,
//! from exhausting what the others need.
//!
//! Addresses: the TCP peer, unless the peer is a configured trusted proxy — then the client is
//! the source of the connection's PROXY protocol header (`admission.proxy_protocol`), else the
//! last address of `X-Forwarded-For` that is not itself a trusted proxy, so per-address limits
//! stay meaningful behind a load balancer and cannot be spoofed by clients that reach Herald
//! directly. IPv6 addresses count per /64, the block one subscriber usually holds.
//!
//! Identities: the principal a credential proves (Cognito/OIDC issuer and `sub`, the IAM access
//! key). API keys prove no one — every browser shares the key — and a Lambda authorizer's answer
//! names no principal, so those clients are bounded per address only.
//!
//! Overflow rules: a socket over the total or per-address cap is closed at once, unanswered
//! (counted in `herald_refused_sockets_total`); a connect or publish over its rate, and a
//! WebSocket over its identity's socket cap, gets 429 `LimitExceededError`.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
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
    /// WebSocket publishes per second from one client address, all its sockets together (burst:
    /// as many). `limits.max_publishes_per_second` bounds each socket; this stops an address
    /// multiplying that by opening more sockets.
    pub max_socket_publishes_per_address_per_second: u32,
    /// Open WebSockets of one authenticated identity.
    pub max_sockets_per_identity: usize,
    /// WebSocket connects per second of one authenticated identity (burst: as many).
    pub max_connects_per_identity_per_second: u32,
    /// HTTP publishes per second of one authenticated identity (burst: as many).
    pub max_http_publishes_per_identity_per_second: u32,
    /// Load balancers whose `X-Forwarded-For` (or PROXY protocol header) is believed: addresses
    /// or CIDR blocks (`10.0.0.0/8`, `fd00::/8`).
    pub trusted_proxies: Vec<String>,
    /// Whether trusted proxies open every connection with a PROXY protocol header (v1 or v2, as
    /// HAProxy and AWS NLB send): its source address is then the client's.
    pub proxy_protocol: bool,
    /// Refusals of one address within one second (sockets over its socket cap, and WebSocket or
    /// event-stream connects over its connect rate) after which the address is blocked in the
    /// kernel: its connection attempts are dropped by a filter on the listening socket before
    /// any accept (Linux; elsewhere they keep being refused one by one). 0 turns blocking off.
    pub flood_block_refusals_per_second: u32,
    /// How long such a block lasts; the address's open connections are untouched.
    pub flood_block_secs: u64,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            max_sockets: 120_000,
            max_sockets_per_address: 1_000,
            max_connects_per_address_per_second: 50,
            max_http_publishes_per_address_per_second: 200,
            max_socket_publishes_per_address_per_second: 200,
            max_sockets_per_identity: 1_000,
            max_connects_per_identity_per_second: 50,
            max_http_publishes_per_identity_per_second: 1_000,
            trusted_proxies: Vec::new(),
            proxy_protocol: false,
            flood_block_refusals_per_second: 200,
            flood_block_secs: 30,
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
            (
                "admission.max_socket_publishes_per_address_per_second",
                u64::from(self.max_socket_publishes_per_address_per_second),
            ),
            (
                "admission.max_sockets_per_identity",
                self.max_sockets_per_identity as u64,
            ),
            (
                "admission.max_connects_per_identity_per_second",
                u64::from(self.max_connects_per_identity_per_second),
            ),
            (
                "admission.max_http_publishes_per_identity_per_second",
                u64::from(self.max_http_publishes_per_identity_per_second),
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
        if self.flood_block_refusals_per_second > 0 && self.flood_block_secs == 0 {
            problems.push(
                "admission.flood_block_secs: must be greater than 0 (or set admission.flood_block_refusals_per_second = 0 to turn blocking off)"
                    .into(),
            );
        }
        if self.proxy_protocol && self.trusted_proxies.is_empty() {
            problems.push(
                "admission.proxy_protocol: list the proxies that send it in admission.trusted_proxies"
                    .into(),
            );
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

/// Who a bound is kept for: a client address, or an authenticated identity (a keyed hash of its
/// principal, so the table holds no credential and attacker-chosen names cannot collide on
/// purpose).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Address(IpAddr),
    Identity(u64),
}

/// What is known of one client address or identity.
#[derive(Debug)]
struct Address {
    open: usize,
    connects: Bucket,
    publishes: Bucket,
    /// WebSocket publishes (addresses only; identities are bounded per socket and over HTTP).
    socket_publishes: Bucket,
    last_seen: Instant,
    /// Sockets refused since `refused_since` (a one-second window), for flood blocking.
    refused: u32,
    refused_since: Instant,
}

impl Address {
    /// Counts a refusal in the current one-second window; true for the refusal that makes the
    /// address a flood (`flood` refusals in the window), said once per window.
    fn refuse(&mut self, flood: u32) -> bool {
        if self
            .last_seen
            .saturating_duration_since(self.refused_since)
            .as_secs()
            >= 1
        {
            self.refused = 0;
            self.refused_since = self.last_seen;
        }
        self.refused = self.refused.saturating_add(1);
        flood > 0 && self.refused == flood
    }
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
    shards: Box<[Mutex<HashMap<Key, Address>>]>,
    /// Seeds identity hashes, fresh per process.
    hasher: RandomState,
    /// Addresses found flooding by their connect rate, for the accept loop (which owns the
    /// kernel blocklist) to block.
    floods: tokio::sync::mpsc::Sender<IpAddr>,
    flood_receiver: Mutex<Option<tokio::sync::mpsc::Receiver<IpAddr>>>,
}

/// Flooding addresses waiting for the accept loop; more in one instant are dropped and found
/// again in their next window.
const FLOOD_QUEUE: usize = 64;

/// Why a socket was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_sockets` are open.
    Full,
    /// `max_sockets_per_address` are open from this address.
    AddressFull,
    /// As `AddressFull`, and this refusal is the one that makes the address a flood
    /// (`flood_block_refusals_per_second`): block it for `flood_block_secs`. Said once per
    /// window, so the caller blocks once.
    Flood(IpAddr),
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
            self.admission.release(Key::Address(ip));
        }
    }
}

/// A WebSocket's place under its identity's socket cap; dropping it releases the place.
pub struct IdentityTicket {
    admission: Arc<Admission>,
    key: Key,
}

impl Drop for IdentityTicket {
    fn drop(&mut self) {
        self.admission.release(self.key);
    }
}

/// An identity that per-identity bounds apply to: a principal the credential proves.
pub fn principal(identity: &herald_auth::Identity) -> Option<(&'static str, &str, &str)> {
    use herald_auth::Identity;
    match identity {
        Identity::Jwt(j) if !j.sub.is_empty() => Some(("jwt", &j.issuer, &j.sub)),
        Identity::Iam(i) => Some(("iam", "", &i.access_key_id)),
        Identity::ApiKey { .. } | Identity::Jwt(_) | Identity::Lambda(_) => None,
    }
}

impl Admission {
    pub fn new(config: &AdmissionConfig) -> Admission {
        let (floods, flood_receiver) = tokio::sync::mpsc::channel(FLOOD_QUEUE);
        Admission {
            floods,
            flood_receiver: Mutex::new(Some(flood_receiver)),
            trusted: config
                .trusted_proxies
                .iter()
                .filter_map(|p| Block::parse(p))
                .collect(),
            config: config.clone(),
            open: AtomicUsize::new(0),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, key: Key) -> std::sync::MutexGuard<'_, HashMap<Key, Address>> {
        let h = match key {
            Key::Address(IpAddr::V4(a)) => u32::from(a) as usize,
            Key::Address(IpAddr::V6(a)) => (u128::from(a) >> 64) as usize,
            Key::Identity(h) => h as usize,
        };
        // The modulo keeps the index in range.
        self.shards[h % SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the entry of an address or identity, creating it (and sweeping idle ones) as
    /// needed.
    fn with<T>(&self, key: Key, f: impl FnOnce(&mut Address) -> T) -> T {
        let now = Instant::now();
        let mut shard = self.shard(key);
        if shard.len() >= SWEEP_AT && !shard.contains_key(&key) {
            shard.retain(|_, a| {
                a.open > 0
                    || now.saturating_duration_since(a.last_seen).as_secs() < FORGET_AFTER_SECS
            });
        }
        let (connects, publishes) = self.rates(key);
        let entry = shard.entry(key).or_insert_with(|| Address {
            open: 0,
            connects: Bucket::full(connects, now),
            publishes: Bucket::full(publishes, now),
            socket_publishes: Bucket::full(
                self.config.max_socket_publishes_per_address_per_second,
                now,
            ),
            last_seen: now,
            refused: 0,
            refused_since: now,
        });
        entry.last_seen = now;
        f(entry)
    }

    /// Connects and HTTP publishes per second for this kind of key.
    fn rates(&self, key: Key) -> (u32, u32) {
        let c = &self.config;
        match key {
            Key::Address(_) => (
                c.max_connects_per_address_per_second,
                c.max_http_publishes_per_address_per_second,
            ),
            Key::Identity(_) => (
                c.max_connects_per_identity_per_second,
                c.max_http_publishes_per_identity_per_second,
            ),
        }
    }

    fn release(&self, key: Key) {
        if let Some(a) = self.shard(key).get_mut(&key) {
            a.open = a.open.saturating_sub(1);
        }
    }

    fn identity_key(&self, identity: &herald_auth::Identity) -> Option<Key> {
        let (kind, issuer, name) = principal(identity)?;
        Some(Key::Identity(self.hasher.hash_one((kind, issuer, name))))
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
        let flood = self.config.flood_block_refusals_per_second;
        let refused = self.with(Key::Address(ip), |a| {
            if a.open < max {
                a.open += 1;
                return None;
            }
            Some(if a.refuse(flood) {
                Refusal::Flood(ip)
            } else {
                Refusal::AddressFull
            })
        });
        if let Some(refusal) = refused {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return Err(refusal);
        }
        Ok(Ticket {
            admission: self.clone(),
            address: Some(ip),
        })
    }

    /// Whether a socket from `peer` starts with a PROXY protocol header to read.
    pub fn expects_proxy_header(&self, peer: IpAddr) -> bool {
        self.config.proxy_protocol && self.trusted(peer)
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

    /// Takes a WebSocket (or event-stream) connect from this client's budget. `direct` says the
    /// client is the socket's TCP peer (no proxy named it): a client refused that fast
    /// (`flood_block_refusals_per_second`) is then handed to the listener to block in the
    /// kernel, because each refused connect still costs an accept, a parse and a 429. A trusted
    /// proxy is exempt.
    pub fn connect(&self, client: IpAddr, direct: bool) -> bool {
        if self.trusted(client) {
            return true;
        }
        let ip = key(client);
        let (rate, _) = self.rates(Key::Address(ip));
        let flood = self.config.flood_block_refusals_per_second;
        let (granted, flooding) = self.with(Key::Address(ip), |a| {
            if a.connects.take(rate, Instant::now()) {
                (true, false)
            } else {
                (false, a.refuse(flood))
            }
        });
        if flooding && direct {
            // Full only when the listener is far behind; the next window says it again.
            let _ = self.floods.try_send(ip);
        }
        granted
    }

    /// Addresses to block, as `connect` finds them; taken once, by the listener's accept loop.
    pub fn take_floods(&self) -> Option<tokio::sync::mpsc::Receiver<IpAddr>> {
        self.flood_receiver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Takes an HTTP publish from this client's budget.
    pub fn publish(&self, client: IpAddr) -> bool {
        self.take_publish(Key::Address(key(client)))
    }

    /// Takes a WebSocket publish from this client address's budget (all its sockets together).
    pub fn socket_publish(&self, client: IpAddr) -> bool {
        if self.trusted(client) {
            return true;
        }
        let rate = self.config.max_socket_publishes_per_address_per_second;
        self.with(Key::Address(key(client)), |a| {
            a.socket_publishes.take(rate, Instant::now())
        })
    }

    /// Takes an HTTP publish from this identity's budget (always granted to identities the
    /// per-identity bounds do not apply to).
    pub fn identity_publish(&self, identity: &herald_auth::Identity) -> bool {
        self.identity_key(identity)
            .is_none_or(|k| self.take_publish(k))
    }

    /// Admits a WebSocket of this identity: takes a connect from its budget and a place under its
    /// socket cap. `Ok(None)` for identities the per-identity bounds do not apply to.
    pub fn identity_connect(
        self: &Arc<Self>,
        identity: &herald_auth::Identity,
    ) -> Result<Option<IdentityTicket>, IdentityRefusal> {
        let Some(k) = self.identity_key(identity) else {
            return Ok(None);
        };
        let max = self.config.max_sockets_per_identity;
        let (rate, _) = self.rates(k);
        self.with(k, |a| {
            if a.open >= max {
                return Err(IdentityRefusal::Sockets);
            }
            if !a.connects.take(rate, Instant::now()) {
                return Err(IdentityRefusal::Rate);
            }
            a.open += 1;
            Ok(())
        })?;
        Ok(Some(IdentityTicket {
            admission: self.clone(),
            key: k,
        }))
    }

    fn take_publish(&self, k: Key) -> bool {
        let (_, rate) = self.rates(k);
        self.with(k, |a| a.publishes.take(rate, Instant::now()))
    }

    /// Open sockets.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// Why an identity's WebSocket was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityRefusal {
    /// `max_sockets_per_identity` are open.
    Sockets,
    /// Over `max_connects_per_identity_per_second`.
    Rate,
}

impl IdentityRefusal {
    /// What the client is told.
    pub fn message(self) -> &'static str {
        match self {
            IdentityRefusal::Sockets => {
                "this identity holds the maximum number of connections; close one first"
            }
            IdentityRefusal::Rate => {
                "too many connections per second for this identity; retry with backoff"
            }
        }
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
            max_socket_publishes_per_address_per_second: 2,
            max_sockets_per_identity: 2,
            max_connects_per_identity_per_second: 3,
            max_http_publishes_per_identity_per_second: 1,
            trusted_proxies: trusted.iter().map(|s| s.to_string()).collect(),
            proxy_protocol: false,
            flood_block_refusals_per_second: 3,
            flood_block_secs: 1,
        }))
    }

    #[test]
    fn an_address_refused_fast_is_called_a_flood_once() {
        let a = admission(&[]);
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        let _held = [a.admit(ip).unwrap(), a.admit(ip).unwrap()];
        assert_eq!(a.admit(ip).err(), Some(Refusal::AddressFull));
        assert_eq!(a.admit(ip).err(), Some(Refusal::AddressFull));
        assert_eq!(a.admit(ip).err(), Some(Refusal::Flood(ip)));
        assert_eq!(a.admit(ip).err(), Some(Refusal::AddressFull));
        // Another address is not charged for it.
        let other: IpAddr = "10.0.0.10".parse().unwrap();
        assert!(a.admit(other).is_ok());
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
        assert!(a.connect(ip, true) && a.connect(ip, true));
        assert!(!a.connect(ip, true));
        assert!(a.publish(ip));
        assert!(!a.publish(ip));
        assert!(a.connect("192.0.2.2".parse().unwrap(), true));
    }

    #[test]
    fn connects_refused_fast_are_a_flood_once_and_only_for_direct_clients() {
        let a = admission(&["10.0.0.1"]);
        let mut floods = a.take_floods().unwrap();
        assert!(a.take_floods().is_none(), "one listener takes them");
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let refused = (0..10).filter(|_| !a.connect(ip, true)).count();
        assert_eq!(refused, 8, "two granted, then over the rate");
        assert_eq!(floods.try_recv().ok(), Some(ip));
        assert!(floods.try_recv().is_err(), "said once per window");
        // A client a proxy named cannot be blocked in the kernel: counted, never handed over.
        let forwarded: IpAddr = "192.0.2.8".parse().unwrap();
        for _ in 0..10 {
            a.connect(forwarded, false);
        }
        assert!(floods.try_recv().is_err());
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(
            (0..10).all(|_| a.connect(proxy, true)),
            "a trusted proxy is exempt"
        );
    }

    fn iam(key: &str) -> herald_auth::Identity {
        herald_auth::Identity::Iam(herald_auth::IamIdentity {
            access_key_id: key.into(),
            principal: "arn:aws:iam::1:user/x".into(),
            account_id: None,
        })
    }

    #[test]
    fn identities_have_their_own_caps_and_rates() {
        let a = admission(&[]);
        let one = a.identity_connect(&iam("AKIDONE")).unwrap().unwrap();
        let _two = a.identity_connect(&iam("AKIDONE")).unwrap().unwrap();
        assert_eq!(
            a.identity_connect(&iam("AKIDONE")).err(),
            Some(IdentityRefusal::Sockets)
        );
        drop(one);
        // Three connects per second: the third is still granted, the fourth is over the rate.
        let _three = a.identity_connect(&iam("AKIDONE")).unwrap().unwrap();
        drop(_three);
        assert_eq!(
            a.identity_connect(&iam("AKIDONE")).err(),
            Some(IdentityRefusal::Rate)
        );
        assert!(a.identity_connect(&iam("AKIDTWO")).unwrap().is_some());
        assert!(a.identity_publish(&iam("AKIDONE")));
        assert!(!a.identity_publish(&iam("AKIDONE")));
        // API keys prove no one: bounded per address only.
        let anon = herald_auth::Identity::ApiKey { name: None };
        for _ in 0..10 {
            assert!(a.identity_connect(&anon).unwrap().is_none());
            assert!(a.identity_publish(&anon));
        }
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

    #[test]
    fn socket_publishes_are_bounded_per_address_not_per_socket() {
        let a = admission(&["10.0.0.1"]);
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(a.socket_publish(one) && a.socket_publish(one));
        assert!(!a.socket_publish(one), "a third publish within the second");
        assert!(
            a.socket_publish(other),
            "another address has its own budget"
        );
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(
            (0..10).all(|_| a.socket_publish(proxy)),
            "a trusted proxy is exempt"
        );
    }
}
