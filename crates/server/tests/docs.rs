//! The configuration examples in the docs work as written: every TOML block loads and validates.

use herald_server::{Config, Settings};

fn toml_blocks(doc: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        match (&mut current, line.trim()) {
            (None, "```toml") => current = Some(String::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn documented_configs_are_valid() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs");
    for doc in ["access-rules.md", "extensions.md", "cluster.md"] {
        let text = std::fs::read_to_string(format!("{root}/{doc}")).unwrap();
        let blocks = toml_blocks(&text);
        assert!(!blocks.is_empty(), "{doc} has TOML examples");
        for (i, block) in blocks.iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("herald.toml");
            std::fs::write(&file, block).unwrap();
            let config = Config::load(Some(&file))
                .unwrap_or_else(|e| panic!("{doc} block {i}: {e}\n{block}"));
            Settings::build(config)
                .map(drop)
                .unwrap_or_else(|e| panic!("{doc} block {i}: {e}\n{block}"));
        }
    }
}
