//! Replays a fuzz target's committed corpus (`fuzz/corpus/<target>/`) through its check, without
//! libFuzzer. Compiled into each crate's `tests/fuzz_corpus.rs`; not part of the fuzz crate.

use std::path::Path;

/// Runs `check` on every file of the corpus of `target`, which must not be empty.
pub fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    for file in files {
        // Name the input on failure: `cargo fuzz run <target> <file>` reproduces it.
        eprintln!("{target}: {}", file.display());
        check(&std::fs::read(&file).unwrap());
    }
}
