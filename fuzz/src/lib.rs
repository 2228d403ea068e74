//! The checks behind Herald's fuzz targets, one function per target, grouped by the crate whose
//! parser they drive. Each takes the raw bytes a hostile client could send, runs them through the
//! parser and asserts what must hold of the result (no panic is the least of it).
//!
//! The same files are compiled into each crate's `tests/fuzz_corpus.rs` (with `#[path]`), which
//! replays the committed corpora (`fuzz/corpus/<target>/`) in a plain `cargo test`.

pub mod auth;
pub mod protocol;
pub mod server;
