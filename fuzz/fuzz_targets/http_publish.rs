//! Fuzz target `http_publish`: see `herald_fuzz::protocol::http_publish` for what it feeds and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| herald_fuzz::protocol::http_publish(data));
