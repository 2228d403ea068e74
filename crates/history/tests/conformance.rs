//! The shared conformance suite, run against every store.

mod common;

conformance!(memory, memory);
conformance!(fjall, fjall);
conformance!(fjall_interval, fjall_interval);
conformance!(any_memory, any_memory);
