//! The shared conformance suite, run against every store.

mod common;

conformance!(memory, memory);
conformance!(fjall, fjall);
conformance!(any_memory, any_memory);
