//! The import graph of the library's top-level modules, read from the
//! sources: no circle among them, and the low layers (configuration,
//! telemetry, the kinds of worker, text) import nothing of the workers,
//! the command line, the supervisor or the wiring above them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The library's top-level modules, as `lib.rs` declares them.
fn top_modules(src: &Path) -> BTreeSet<String> {
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    lib.lines()
        .filter_map(|line| line.trim().strip_prefix("pub mod "))
        .map(|rest| rest.trim_end_matches(';').to_owned())
        .collect()
}

/// Every `.rs` file of module `name`: `name.rs`, or the files under
/// `name/`.
fn files_of(src: &Path, name: &str) -> Vec<PathBuf> {
    let file = src.join(format!("{name}.rs"));
    if file.exists() {
        return vec![file];
    }
    let mut files = Vec::new();
    let mut dirs = vec![src.join(name)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files
}

/// The top-level modules named after `crate::` in `code`, including each
/// of a group (`use crate::{a::x, b}`); comment lines are skipped.
fn crate_paths(code: &str) -> BTreeSet<String> {
    let code: String = code
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let Some(group) = rest.strip_prefix('{') else {
            found.insert(ident(rest));
            continue;
        };
        // The first segment of each item of the group, at its top level.
        let mut depth = 1;
        let mut item_start = true;
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 1 => item_start = true,
                c if item_start && depth == 1 && !c.is_whitespace() => {
                    found.insert(ident(&group[i..]));
                    item_start = false;
                }
                _ => {}
            }
            if depth == 0 {
                break;
            }
        }
    }
    found
}

/// Module -> the other top-level modules it imports.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = top_modules(&src);
    let mut graph = BTreeMap::new();
    for module in &modules {
        let mut imports = BTreeSet::new();
        for file in files_of(&src, module) {
            let code = std::fs::read_to_string(&file).unwrap();
            imports.extend(
                crate_paths(&code)
                    .into_iter()
                    .filter(|m| m != module && modules.contains(m)),
            );
        }
        graph.insert(module.clone(), imports);
    }
    graph
}

/// A circle through `from`, if there is one, as the modules along it.
fn circle_from(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
    fn walk(
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
        target: &str,
    ) -> bool {
        let last = path.last().cloned().unwrap_or_default();
        for next in graph.get(&last).into_iter().flatten() {
            if next == target {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, path, seen, target) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![from.to_owned()];
    walk(graph, &mut path, &mut BTreeSet::new(), from).then_some(path)
}

#[test]
fn group_imports_are_read_item_by_item() {
    let code = "use crate::{a::x, b::{c, d}, e};\n// crate::f\nlet g = crate::g::h();";
    let found: Vec<_> = crate_paths(code).into_iter().collect();
    assert_eq!(found, ["a", "b", "e", "g"]);
}

#[test]
fn the_top_level_modules_import_each_other_in_one_direction() {
    let graph = graph();
    assert!(graph.len() > 10, "{graph:?}");
    for module in graph.keys() {
        if let Some(circle) = circle_from(&graph, module) {
            panic!("import circle: {}", circle.join(" -> "));
        }
    }
}

#[test]
fn the_low_layers_import_only_what_is_below_them() {
    let graph = graph();
    let allowed: [(&str, &[&str]); 4] = [
        ("text", &[]),
        ("telemetry", &["text"]),
        ("config", &["bank", "platform"]),
        ("kinds", &["config"]),
    ];
    for (module, may) in allowed {
        let imports = &graph[module];
        let beyond: Vec<_> = imports
            .iter()
            .filter(|m| !may.contains(&m.as_str()))
            .collect();
        assert!(beyond.is_empty(), "{module} imports {beyond:?}");
    }
    // Nothing below the supervisor reaches up to it or to the wiring.
    for module in ["workers", "broker", "store", "health", "watchdog"] {
        for above in ["supervisor", "runtime", "cli", "bench"] {
            assert!(!graph[module].contains(above), "{module} imports {above}");
        }
    }
}
