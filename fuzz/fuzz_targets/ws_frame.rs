//! Fuzz target `ws_frame`: see `herald_fuzz::server::ws_frame` for what it feeds and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| herald_fuzz::server::ws_frame(data));
