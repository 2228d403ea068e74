//! Fuzz target `client_message`: see `herald_fuzz::protocol::client_message` for what it feeds and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| herald_fuzz::protocol::client_message(data));
