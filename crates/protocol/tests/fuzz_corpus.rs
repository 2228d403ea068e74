//! Replays the committed fuzz corpora of herald-protocol's parsers (`fuzz/corpus/`) through the
//! checks the fuzz targets run (`fuzz/src/protocol.rs`), so a plain `cargo test` re-runs them.

#[path = "../../../fuzz/src/protocol.rs"]
mod checks;
#[path = "../../../fuzz/src/replay.rs"]
mod replay;

use replay::replay;

#[test]
fn client_message() {
    replay("client_message", checks::client_message);
}

#[test]
fn http_publish() {
    replay("http_publish", checks::http_publish);
}

#[test]
fn subprotocol() {
    replay("subprotocol", checks::subprotocol);
}

#[test]
fn channel() {
    replay("channel", checks::channel);
}
