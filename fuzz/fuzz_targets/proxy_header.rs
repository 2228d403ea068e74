//! Fuzz target `proxy_header`: see `herald_fuzz::server::proxy_header` for what it feeds and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| herald_fuzz::server::proxy_header(data));
