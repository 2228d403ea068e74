//! Fuzz target `subprotocol`: see `herald_fuzz::protocol::subprotocol` for what it feeds and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| herald_fuzz::protocol::subprotocol(data));
