//! Replays the committed fuzz corpora of herald-auth's parsers (`fuzz/corpus/`) through the
//! checks the fuzz targets run (`fuzz/src/auth.rs`), so a plain `cargo test` re-runs them.

#[path = "../../../fuzz/src/auth.rs"]
mod checks;
#[path = "../../../fuzz/src/replay.rs"]
mod replay;

use replay::replay;

#[test]
fn sigv4() {
    replay("sigv4", checks::sigv4);
}

#[test]
fn jwt() {
    replay("jwt", checks::jwt);
}
