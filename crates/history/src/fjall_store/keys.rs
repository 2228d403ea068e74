//! On-disk layout of [`FjallStore`](super::FjallStore).
//!
//! Keyspace `events`: key `channel_id (u64 BE) ‖ offset (u64 BE)`, value `time_ms (u64 BE) ‖
//! payload`. Big-endian keys sort by channel, then offset, so one channel's history is one
//! contiguous key range and replay is a range scan.
//!
//! Keyspace `meta`:
//! * `"u"` → the epoch given to channels created from now on (u64 BE).
//! * `"l"` → lifetime marker `[clean: u8, sync policy tag: u8]`; `clean = 0` while open.
//! * `"c" ‖ channel` → [`ChannelMeta`]. Written when a channel is created and whenever events are
//!   removed, in the same atomic batch as the change, so it always matches the events keyspace.

/// Meta key of the epoch for new channels.
pub(crate) const UNKNOWN_EPOCH_KEY: &[u8] = b"u";
/// Meta key of the lifetime marker.
pub(crate) const LIFETIME_KEY: &[u8] = b"l";
/// Prefix of per-channel meta keys.
pub(crate) const CHANNEL_PREFIX: &[u8] = b"c";

pub(crate) fn event_key(id: u64, offset: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&id.to_be_bytes());
    k[8..].copy_from_slice(&offset.to_be_bytes());
    k
}

/// The offset of an event key, if it is one.
pub(crate) fn offset_of(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(8..16)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

pub(crate) fn event_value(time_ms: u64, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + payload.len());
    v.extend_from_slice(&time_ms.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// `(time_ms, payload)` of an event value.
pub(crate) fn split_value(value: &[u8]) -> Option<(u64, &[u8])> {
    let (time, payload) = value.split_at_checked(8)?;
    Some((u64::from_be_bytes(time.try_into().ok()?), payload))
}

pub(crate) fn channel_key(channel: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + channel.len());
    k.extend_from_slice(CHANNEL_PREFIX);
    k.extend_from_slice(channel.as_bytes());
    k
}

pub(crate) fn u64_value(v: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(v.try_into().ok()?))
}

/// Durable per-channel bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChannelMeta {
    pub(crate) id: u64,
    pub(crate) epoch: u64,
    /// Every offset up to this one was removed (0: none).
    pub(crate) removed_through: u64,
    /// `time_ms` of event `removed_through`, if any was removed.
    pub(crate) removed_time_ms: Option<u64>,
    pub(crate) namespace: String,
}

impl ChannelMeta {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(33 + self.namespace.len());
        v.extend_from_slice(&self.id.to_be_bytes());
        v.extend_from_slice(&self.epoch.to_be_bytes());
        v.extend_from_slice(&self.removed_through.to_be_bytes());
        v.push(u8::from(self.removed_time_ms.is_some()));
        v.extend_from_slice(&self.removed_time_ms.unwrap_or(0).to_be_bytes());
        v.extend_from_slice(self.namespace.as_bytes());
        v
    }

    pub(crate) fn decode(v: &[u8]) -> Option<Self> {
        let u = |range: std::ops::Range<usize>| v.get(range).and_then(u64_value);
        let namespace = std::str::from_utf8(v.get(33..)?).ok()?.to_owned();
        Some(Self {
            id: u(0..8)?,
            epoch: u(8..16)?,
            removed_through: u(16..24)?,
            removed_time_ms: match v.get(24)? {
                0 => None,
                _ => Some(u(25..33)?),
            },
            namespace,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrips() {
        let m = ChannelMeta {
            id: 3,
            epoch: 99,
            removed_through: 7,
            removed_time_ms: Some(12),
            namespace: "ns".into(),
        };
        assert_eq!(ChannelMeta::decode(&m.encode()), Some(m));
        assert_eq!(offset_of(&event_key(1, 42)), Some(42));
        assert_eq!(split_value(&event_value(5, b"x")), Some((5, &b"x"[..])));
        assert!(event_key(1, u64::MAX) < event_key(2, 0));
    }
}
