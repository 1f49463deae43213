//! The layering of `harness/src` (docs/architecture.md, "Layers"): every top-level module
//! belongs to one layer, and a file may name only modules of its own layer or a lower one.
//! Because the layers are strictly ordered, this also rules out an import cycle between files
//! of different layers; on top of that, no two top-level modules may import each other in a
//! cycle, even inside one layer.
//!
//! The check reads the source as it is: every `.rs` file under `harness/src` and the `mod`
//! lines of `lib.rs` must match [`LAYERS`], and every `crate::` path (use trees, including
//! `use crate::{a, b::c}`, and inline paths) and every `super::` path that climbs to the crate
//! root is checked, outside comments, string literals and `#[cfg(test)]` items (test code may
//! reach anywhere). Doc links are comments: rustdoc checks them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

mod source;

use source::{code_only, rust_files, without_tests};

/// Bottom to top. A module may use modules of its own layer or below.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "vocabulary",
        &["error", "note", "arch", "digest", "regular_file", "temp"],
    ),
    (
        "inputs",
        &["settings", "paths", "config", "fileref", "disk", "artifact"],
    ),
    ("plan", &["plan"]),
    ("machine", &["qemu", "console", "accel", "states", "remote"]),
    ("run", &["evidence", "results", "outcome", "run"]),
    ("suite", &["suite"]),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|(_, modules)| modules.contains(&module))
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The first identifier of `path` (`qemu` of `qemu::spec::Accel`), unless it is `self`.
fn first_segment(path: &str) -> Option<String> {
    let name: String = path
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty() && name != "self").then_some(name)
}

/// The top-level modules named after `prefix` at `from` in `code`: one for a plain path, one
/// per item of a brace group.
fn names_after(code: &str, from: usize) -> Vec<String> {
    let rest = code[from..].trim_start();
    let Some(group) = rest.strip_prefix('{') else {
        return first_segment(rest).into_iter().collect();
    };
    let mut names = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (k, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                names.extend(first_segment(&group[start..k]));
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                names.extend(first_segment(&group[start..k]));
                start = k + 1;
            }
            _ => {}
        }
    }
    names
}

/// The top-level modules a file names, with line numbers. `depth` is how many modules deep the
/// file is (`run/case.rs` is 2: `super::` stays in `run`, `super::super::` reaches the root).
fn references(code: &str, depth: usize) -> Vec<(String, usize)> {
    let bytes = code.as_bytes();
    let mut found = Vec::new();
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let mut from = 0;
    while let Some(at) = code[from..].find("crate::").map(|n| from + n) {
        from = at + "crate::".len();
        if at > 0 && (is_ident(bytes[at - 1]) || bytes[at - 1] == b'$' || bytes[at - 1] == b':') {
            continue;
        }
        for name in names_after(code, from) {
            found.push((name, line_of(at)));
        }
    }
    let mut from = 0;
    while let Some(at) = code[from..].find("super::").map(|n| from + n) {
        from = at + "super::".len();
        if at > 0 && (is_ident(bytes[at - 1]) || bytes[at - 1] == b':') {
            continue;
        }
        let mut climbs = 1;
        while code[from..].starts_with("super::") {
            climbs += 1;
            from += "super::".len();
        }
        if climbs >= depth {
            for name in names_after(code, from) {
                found.push((name, line_of(at)));
            }
        }
    }
    found
}

/// The modules `lib.rs` declares (`mod x;`, `pub mod x;`, `pub(crate) mod x;`), and the
/// workspace crates it mounts as modules (`pub use some_crate as x;`, e.g. `digest`).
fn declared_modules(lib: &str) -> BTreeSet<String> {
    lib.lines()
        .filter_map(|line| {
            let line = line.trim();
            let rest = line
                .strip_prefix("pub ")
                .or_else(|| line.strip_prefix("pub(crate) "));
            let rest = rest.unwrap_or(line);
            if let Some(mounted) = rest.strip_prefix("use ") {
                let (_, name) = mounted.strip_suffix(';')?.split_once(" as ")?;
                return Some(name.trim().to_string());
            }
            rest.strip_prefix("mod ")?
                .strip_suffix(';')
                .map(str::to_string)
        })
        .collect()
}

/// Every problem of the tree at `src`, as the messages a failure prints.
fn problems(src: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let table: BTreeSet<&str> = LAYERS
        .iter()
        .flat_map(|(_, modules)| modules.iter().copied())
        .collect();
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("harness/src/lib.rs");
    let declared = declared_modules(&code_only(&lib));
    for module in &declared {
        if !table.contains(module.as_str()) {
            problems.push(format!(
                "lib.rs declares `mod {module}`, which is in no layer: add it to LAYERS (harness/tests/layers.rs) and to docs/architecture.md"
            ));
        }
    }
    for module in &table {
        if !declared.contains(*module) {
            problems.push(format!(
                "LAYERS lists `{module}`, which lib.rs does not declare"
            ));
        }
    }
    let mut files = Vec::new();
    rust_files(src, &mut files);
    // module -> module it names -> the first site that names it.
    let mut graph: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for file in &files {
        let rel = file.strip_prefix(src).expect("under src");
        let shown = Path::new("harness/src").join(rel);
        let components: Vec<String> = rel
            .components()
            .map(|c| {
                c.as_os_str()
                    .to_string_lossy()
                    .trim_end_matches(".rs")
                    .to_string()
            })
            .collect();
        let module = components[0].clone();
        if module == "lib" {
            continue;
        }
        let depth = components.len() - usize::from(components.last().is_some_and(|c| c == "mod"));
        let Some(from_layer) = layer_of(&module) else {
            problems.push(format!(
                "{}: module `{module}` is in no layer: add it to LAYERS (harness/tests/layers.rs) and to docs/architecture.md",
                shown.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).expect("source file");
        for (target, line) in references(&without_tests(&code_only(&text)), depth) {
            if target == module {
                continue;
            }
            graph
                .entry(module.clone())
                .or_default()
                .entry(target.clone())
                .or_insert_with(|| format!("{}:{line}", shown.display()));
            match layer_of(&target) {
                None => problems.push(format!(
                    "{}:{line}: `{module}` ({}) names `crate::{target}`, which is in no layer",
                    shown.display(),
                    LAYERS[from_layer].0
                )),
                Some(to_layer) if to_layer > from_layer => problems.push(format!(
                    "{}:{line}: `{module}` ({} layer) uses `crate::{target}` ({} layer), a higher layer",
                    shown.display(),
                    LAYERS[from_layer].0,
                    LAYERS[to_layer].0
                )),
                Some(_) => {}
            }
        }
    }
    problems.extend(cycles(&graph));
    problems
}

/// Every import cycle between top-level modules, with the site of each of its edges.
fn cycles(graph: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<String> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeMap<String, String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
        found: &mut Vec<String>,
    ) {
        state.insert(node.to_string(), 1);
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flat_map(BTreeMap::keys) {
            match state.get(next.as_str()).copied().unwrap_or(0) {
                0 => visit(next, graph, state, path, found),
                1 => {
                    let start = path.iter().position(|n| n == next).expect("on the path");
                    let mut ring: Vec<&String> = path[start..].iter().collect();
                    ring.push(next);
                    let sites: Vec<String> = ring
                        .windows(2)
                        .map(|pair| {
                            format!("{} -> {} at {}", pair[0], pair[1], graph[pair[0]][pair[1]])
                        })
                        .collect();
                    found.push(format!(
                        "import cycle between top-level modules: {}",
                        sites.join(", ")
                    ));
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(node.to_string(), 2);
    }
    let mut state = BTreeMap::new();
    let mut found = Vec::new();
    for node in graph.keys() {
        if state.get(node.as_str()).copied().unwrap_or(0) == 0 {
            visit(node, graph, &mut state, &mut Vec::new(), &mut found);
        }
    }
    found
}

#[test]
fn every_file_imports_only_its_layer_or_below() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let problems = problems(&src);
    assert!(
        problems.is_empty(),
        "the layers of docs/architecture.md are broken:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_reader_sees_use_trees_inline_paths_and_super_but_not_comments_strings_or_tests() {
    let code = r#"
use crate::{arch::Arch, qemu::{self, Accel}};
// use crate::suite::hidden;
/// [`crate::suite::Doc`]
fn f() -> crate::settings::Settings { let _ = "crate::suite"; super::super::plan::x() }
#[cfg(test)]
mod tests { use crate::suite::Tested; }
"#;
    let found = references(&without_tests(&code_only(code)), 2);
    let names: Vec<(&str, usize)> = found.iter().map(|(n, l)| (n.as_str(), *l)).collect();
    assert_eq!(
        names,
        [("arch", 2), ("qemu", 2), ("settings", 5), ("plan", 5)]
    );
    assert!(references("fn g() { super::sibling::h() }", 2).is_empty());
}
