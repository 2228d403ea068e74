//! Cluster mode's JetStream key-value buckets (idempotency keys, the control plane's records):
//! the one stream layout they share.

/// The stream of a JetStream key-value bucket, laid out as the key-value API lays it out
/// (`KV_<bucket>` on `$KV.<bucket>.>`, one value per key). Built here rather than by
/// `create_key_value`, which first asks for account details that NATS servers before 2.10
/// answer in a shape the client rejects. `max_age` zero keeps values until deleted.
pub fn kv_stream(
    bucket: &str,
    description: &str,
    replicas: usize,
    max_age: std::time::Duration,
) -> async_nats::jetstream::stream::Config {
    use async_nats::jetstream::stream;
    stream::Config {
        name: format!("KV_{bucket}"),
        description: Some(description.to_owned()),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_age,
        storage: stream::StorageType::File,
        num_replicas: replicas.max(1),
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    }
}
