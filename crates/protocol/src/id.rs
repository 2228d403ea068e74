//! Identifiers: random (version 4) UUIDs, one per published event, also what handlers get from
//! `util.autoId()`.
//!
//! A per-thread wyrand generator seeded from the OS-seeded `RandomState` keeps generation off the
//! syscall path; identifiers need uniqueness, not secrecy.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// A fresh seed: the OS-seeded std hasher keys mixed with the clock.
pub fn seed() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

/// The next output of this thread's wyrand generator (fast, good-quality, not secret).
pub fn next_u64() -> u64 {
    STATE.with(|s| {
        let x = s.get().wrapping_add(0xa076_1d64_78bd_642f);
        s.set(x);
        let t = u128::from(x) * u128::from(x ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    })
}

/// A random (version 4) UUID in its 36-character form.
pub fn uuid_v4() -> String {
    let hi = (next_u64() & 0xffff_ffff_ffff_0fff) | 0x4000;
    let lo = (next_u64() & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    let n = (u128::from(hi) << 64) | u128::from(lo);
    let hex = format!("{n:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_well_formed_and_distinct() {
        let a = uuid_v4();
        let b = uuid_v4();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.as_bytes()[14], b'4');
        assert!(matches!(a.as_bytes()[19], b'8' | b'9' | b'a' | b'b'));
    }
}
