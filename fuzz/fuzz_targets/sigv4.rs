//! Fuzz target `sigv4`: see `herald_fuzz::auth::sigv4` for what it feeds and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| herald_fuzz::auth::sigv4(data));
