//! The layering rule inside `attune-origin` (ARCHITECTURE.md, "Layers of the
//! origin"): a top-level module may use only modules of lower layers; `lib.rs`
//! and `main.rs` compose everything. The check reads the sources, so it fails
//! the moment an import breaks the rule.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Lowest first.
const LAYERS: &[&[&str]] = &[
    &[
        "clock",
        "record",
        "ledger",
        "metrics",
        "model",
        "experiments",
    ],
    &["config"],
    &["store", "event_log"],
    &["error", "segments", "ranking", "arms"],
    &["consume", "auth", "ratelimit", "encoding"],
    &["ingest", "api", "audit", "dashboard", "health"],
    // The Segment-compatible API, on ingest's append and the attributes' rules.
    &["segment"],
    &["openapi", "server"],
    // A client of the HTTP API, composed by main.rs only.
    &["simulate"],
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn sources(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            sources(&entry.unwrap().path(), out);
        }
    } else if path.is_file() && path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_owned());
    }
}

/// The first path segment of every `crate::…` path, `use crate::{a, b::c}`
/// groups included.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = BTreeSet::new();
    for (at, _) in text.match_indices("crate::") {
        let rest = &text[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let (mut depth, mut item_start) = (0, 0);
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        out.insert(ident(&group[item_start..i]));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.insert(ident(&group[item_start..i]));
                        item_start = i + 1;
                    }
                    _ => {}
                }
            }
        } else {
            out.insert(ident(rest));
        }
    }
    out.retain(|m| !m.is_empty());
    out
}

#[test]
fn every_module_uses_only_lower_layers() {
    let mut broken = Vec::new();
    for (layer, modules) in LAYERS.iter().enumerate() {
        for module in *modules {
            let mut files = Vec::new();
            sources(&src().join(module), &mut files);
            sources(&src().join(format!("{module}.rs")), &mut files);
            assert!(!files.is_empty(), "no sources for `{module}`");
            for file in files {
                let text = std::fs::read_to_string(&file).unwrap();
                for used in crate_paths(&text) {
                    let Some(used_layer) = layer_of(&used) else {
                        continue; // an item of the crate root (AppState…)
                    };
                    if used != *module && used_layer >= layer {
                        broken.push(format!(
                            "{} uses `crate::{used}` (layer {used_layer}, not below {module}'s {layer})",
                            file.strip_prefix(src()).unwrap().display()
                        ));
                    }
                }
            }
        }
    }
    assert!(broken.is_empty(), "layering broken:\n{}", broken.join("\n"));
}

#[test]
fn every_top_level_module_has_a_layer() {
    for entry in std::fs::read_dir(src()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let module = name.trim_end_matches(".rs");
        if module != "lib" && module != "main" {
            assert!(
                layer_of(module).is_some(),
                "`{module}` has no layer: add it to LAYERS and ARCHITECTURE.md"
            );
        }
    }
}

#[test]
fn grouped_and_plain_paths_are_both_seen() {
    let text = "use crate::{a::X, b, c::{d, e}};\nlet x = crate::f::g();";
    assert_eq!(
        crate_paths(text).into_iter().collect::<Vec<_>>(),
        ["a", "b", "c", "f"]
    );
}
