//! The shared conformance suite, run against every store: the embedded ones, and JetStream on its
//! own `nats-server` per test.

mod common;

conformance!(memory, |r| embedded(memory, r));
conformance!(fjall, |r| embedded(fjall, r));
conformance!(fjall_interval, |r| embedded(fjall_interval, r));
conformance!(any_memory, |r| embedded(any_memory, r));
conformance!(jetstream, jetstream);
