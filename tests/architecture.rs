//! The codebase's own rules, checked on every test run (ARCHITECTURE.md,
//! "Why the boundaries are where they are"): dependencies between the
//! library's top-level modules point one way, down the layers; every source
//! file has one job, says what it is for and stays short.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The library's top-level modules by layer: a module may use only modules
/// of lower layers.
const LAYERS: &[(&str, u8)] = &[
    ("sync", 0),
    ("tftp", 0),
    ("verdict", 0),
    ("via", 0),
    ("name", 0),
    ("config", 0),
    ("process_metrics", 0),
    ("metrics", 1),
    ("option150", 0),
    ("systemd", 0),
    ("body", 1),
    ("logging", 1),
    ("client", 1),
    ("source", 2),
    ("resolve", 3),
    ("diagnose", 4),
    // The admin front serves `locate --admin` (diagnose).
    ("front", 5),
    ("daemon", 6),
];

const MAX_LINES: usize = 600;

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

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The top-level module a file under `src/` belongs to (`None`: lib.rs, main.rs).
fn top_module(file: &Path) -> Option<String> {
    let relative = file.strip_prefix(root().join("src")).unwrap();
    let first = relative
        .components()
        .next()?
        .as_os_str()
        .to_str()?
        .to_owned();
    match first.strip_suffix(".rs") {
        Some("lib" | "main") => None,
        Some(stem) => Some(stem.to_owned()),
        None => Some(first),
    }
}

/// The source without `#[cfg(test)]` modules and comments (unit tests may
/// reach across layers; prose may name any module).
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn dependencies_between_top_level_modules_point_down_the_layers() {
    let layer: BTreeMap<&str, u8> = LAYERS.iter().copied().collect();
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let mut violations = Vec::new();
    for file in &files {
        let Some(module) = top_module(file) else {
            continue;
        };
        // A module's unit tests moved to their own file (`#[cfg(test)]
        // #[path = "x_tests.rs"] mod tests;`) may reach across layers too.
        if file
            .file_stem()
            .is_some_and(|stem| stem.to_string_lossy().ends_with("_tests"))
        {
            continue;
        }
        let Some(&own) = layer.get(module.as_str()) else {
            violations.push(format!("{}: module {module} has no layer", file.display()));
            continue;
        };
        let code = code_of(&std::fs::read_to_string(file).unwrap());
        for used in code.split("crate::").skip(1) {
            let name: String = used
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if name == module {
                continue;
            }
            match layer.get(name.as_str()) {
                Some(&other) if other < own => {}
                _ => violations.push(format!(
                    "{}: {module} (layer {own}) uses crate::{name} (layer {:?})",
                    file.display(),
                    layer.get(name.as_str())
                )),
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn every_layer_module_exists() {
    for (module, _) in LAYERS {
        let file = root().join("src").join(format!("{module}.rs"));
        let dir = root().join("src").join(module).join("mod.rs");
        assert!(
            file.exists() || dir.exists(),
            "src/{module} is listed but missing"
        );
    }
}

#[test]
fn source_files_are_short_and_say_what_they_are_for() {
    let mut files = Vec::new();
    for dir in ["src", "tests", "benches", "testkit", "examples"] {
        let dir = root().join(dir);
        if dir.exists() {
            rust_files(&dir, &mut files);
        }
    }
    assert!(files.len() > 40, "only {} files found", files.len());
    let mut problems = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let lines = text.lines().count();
        if lines > MAX_LINES {
            problems.push(format!(
                "{}: {lines} lines (limit {MAX_LINES})",
                file.display()
            ));
        }
        if !text.trim_start().starts_with("//!") && !text.contains("\n//!") {
            problems.push(format!(
                "{}: no //! doc saying what it is for",
                file.display()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
