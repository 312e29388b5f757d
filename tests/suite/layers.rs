//! The layering rule of `docs/ARCHITECTURE.md`, checked from the source:
//! a module uses only its own layer and the layers below it (issue 9).
//! `#[cfg(test)]` code may reach up (tests drive lower layers through
//! higher ones), so test modules and the lines after a `#[cfg(test)]` are
//! not checked, nor are comments (docs may point anywhere).

use std::path::{Path, PathBuf};

/// Top-level modules by layer, lowest first; a module may use any module
/// of its own layer or one listed before it.
const LAYERS: &[&[&str]] = &[
    &["util"],
    &["proto"],
    &["disk"],
    &["net"],
    &["engine"],
    &["create", "tracker_server", "serve"],
    &["cli"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_module_uses_a_layer_above_its_own() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    let mut checked = 0;
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let top = top.trim_end_matches(".rs");
        let Some(own) = layer_of(top) else {
            continue; // lib.rs, main.rs
        };
        if rel.file_name().is_some_and(|n| n == "tests.rs")
            || rel.components().any(|c| c.as_os_str() == "tests")
        {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for (n, line) in code.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue; // docs may point anywhere
            }
            for used in line.split("crate::").skip(1) {
                let module: String = used
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                checked += 1;
                if layer_of(&module).is_some_and(|l| l > own) {
                    wrong.push(format!("{}:{}: {}", rel.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        checked > 100,
        "only {checked} uses found: is the scan right?"
    );
    assert!(
        wrong.is_empty(),
        "uses of a higher layer:\n{}",
        wrong.join("\n")
    );
}
