//! The source tree's layering (ARCHITECTURE.md): `use crate::` only points down the layers,
//! so there is no module cycle.

use std::collections::BTreeSet;
use std::path::Path;

/// Top to bottom; a module may use only modules of a lower layer (the leaves may use
/// `error`, whose `warn` everyone prints with).
const LAYERS: &[&[&str]] = &[
    &["main", "app"],
    &["health", "export"],
    &["supervise"],
    &["output"],
    &["net"],
    &["config"],
    &["cli", "runtime", "text", "time"],
    &["error"],
];

fn layer(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|l| l.contains(&module))
        .unwrap_or_else(|| panic!("module `{module}` is in no layer: add it to LAYERS"))
}

/// The top-level module a source file belongs to (`src/supervise/start.rs` → `supervise`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn use_crate_only_points_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut wrong = BTreeSet::new();
    for file in &all {
        let from = module_of(&src, file);
        let text = std::fs::read_to_string(file).unwrap();
        for (at, _) in text.match_indices("crate::") {
            let rest = &text[at + "crate::".len()..];
            let to: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let to = if to == "warn" {
                "error".to_string()
            } else {
                to
            };
            if to == from || to.is_empty() {
                continue;
            }
            if layer(&to) <= layer(&from) {
                wrong.insert(format!("{} uses crate::{to}", file.display()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "arrows that do not point down:\n{wrong:#?}"
    );
}
