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

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../");

/// Pages whose every TOML block is a whole configuration file, checked here.
const WHOLE_FILES: &[&str] = &[
    "access-rules.md",
    "extensions.md",
    "cluster.md",
    "configuration.md",
    "control-plane.md",
    "handlers.md",
];

/// Pages whose TOML blocks are fragments of one file, checked where named.
const ELSEWHERE: &[(&str, &str)] = &[(
    "authorization.md",
    "concatenated and served by crates/server/tests/auth_docs.rs, parsed by crates/auth/tests/providers.rs",
)];

#[test]
fn documented_configs_are_valid() {
    for doc in WHOLE_FILES {
        let text = std::fs::read_to_string(format!("{ROOT}docs/{doc}")).unwrap();
        let blocks = toml_blocks(&text);
        assert!(!blocks.is_empty(), "{doc} has TOML examples");
        for (i, block) in blocks.iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            // The files an example names exist on the machine it is written for: here they
            // are made, empty (their existence is what the check looks at), or, for handler
            // code, a handler that forwards every event.
            let at = |p: &str| dir.path().join(p).display().to_string();
            let block = block
                .replace("/etc/herald/", &format!("{}/", at("etc")))
                .replace("/var/lib/herald", &at("data"));
            std::fs::create_dir_all(dir.path().join("etc")).unwrap();
            for file in ["cert.pem", "key.pem"] {
                std::fs::write(dir.path().join("etc").join(file), "").unwrap();
            }
            std::fs::create_dir_all(dir.path().join("handlers")).unwrap();
            for name in ["chat.js", "stored.js"] {
                std::fs::write(
                    dir.path().join("handlers").join(name),
                    "export function onPublish(ctx) { return ctx.events; }\n",
                )
                .unwrap();
            }
            let file = dir.path().join("herald.toml");
            std::fs::write(&file, &block).unwrap();
            let config = Config::load(Some(&file))
                .unwrap_or_else(|e| panic!("{doc} block {i}: {e}\n{block}"));
            Settings::build(config)
                .map(drop)
                .unwrap_or_else(|e| panic!("{doc} block {i}: {e}\n{block}"));
        }
    }
}

/// A page with TOML examples is checked here or names where it is.
#[test]
fn every_page_with_toml_is_checked() {
    for entry in std::fs::read_dir(format!("{ROOT}docs")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(format!("{ROOT}docs/{name}")).unwrap();
        if toml_blocks(&text).is_empty() {
            continue;
        }
        assert!(
            WHOLE_FILES.contains(&name.as_str()) || ELSEWHERE.iter().any(|(p, _)| *p == name),
            "docs/{name} has TOML examples: add it to WHOLE_FILES or ELSEWHERE"
        );
    }
    let readme = std::fs::read_to_string(format!("{ROOT}README.md")).unwrap();
    assert!(
        toml_blocks(&readme).is_empty(),
        "README.md: check its TOML here"
    );
}
