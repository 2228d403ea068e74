//! Replays the committed fuzz corpora of the server's parsers (`fuzz/corpus/`): the WebSocket
//! frame reader, the PROXY protocol header and the configuration loader, through the checks the fuzz targets run
//! (`fuzz/src/server.rs`), so a plain `cargo test` re-runs them.

#[path = "../../../fuzz/src/server.rs"]
mod checks;
#[path = "../../../fuzz/src/replay.rs"]
mod replay;

use replay::replay;

#[test]
fn ws_frame() {
    replay("ws_frame", checks::ws_frame);
}

#[test]
fn config() {
    replay("config", checks::config);
}

#[test]
fn proxy_header() {
    replay("proxy_header", checks::proxy_header);
}
