//! Fuzz target `config`: see `herald_fuzz::server::config` for what it feeds and asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| herald_fuzz::server::config(data));
