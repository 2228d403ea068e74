//! Fuzz target `jwt`: see `herald_fuzz::auth::jwt` for what it feeds and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| herald_fuzz::auth::jwt(data));
