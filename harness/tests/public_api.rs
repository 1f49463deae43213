//! The public surface of `vmharness`, pinned: a change to it is a reviewed snapshot diff
//! (`snapshots/public_api__public_api.snap`), never an accident.
//!
//! The list is read from the source as it is: every item of every file under `harness/src`
//! declared `pub` at module level (functions, types, constants, traits, modules, `pub use`
//! re-exports) and every `pub fn` of an inherent `impl`, with the path of the module that
//! declares it. The crate warns on `unreachable_pub` (outside `disk/`) and the gates deny
//! warnings, so a `pub` item is reachable by users, through its module or a re-export the list also shows. `pub(crate)`
//! items, `#[cfg(test)]` items and trait impls are not listed. Fields and variants of public
//! types are part of the surface too, but are left to the review of the type itself.

use std::path::{Path, PathBuf};

mod source;

use source::{code_only, rust_files, without_tests};

/// One file's public items, as `path kind` lines.
fn surface_of(file: &Path, module: &str, out: &mut Vec<String>) {
    let text =
        std::fs::read_to_string(file).unwrap_or_else(|err| panic!("{}: {err}", file.display()));
    let code = without_tests(&code_only(&text));
    let mut depth = 0usize;
    let mut impl_type: Option<String> = None;
    let mut statement = String::new();
    for line in code.lines() {
        let trimmed = line.trim();
        if !statement.is_empty() {
            statement.push(' ');
            statement.push_str(trimmed);
            if trimmed.ends_with(';') {
                out.push(format!("{module} {}", squeeze(&statement)));
                statement.clear();
            }
        } else if depth == 0 {
            if let Some(rest) = trimmed.strip_prefix("pub use ") {
                if rest.ends_with(';') {
                    out.push(format!("{module} pub use {}", squeeze(rest)));
                } else {
                    statement = format!("pub use {rest}");
                }
            } else if let Some(rest) = trimmed.strip_prefix("pub mod ") {
                let name = rest.trim_end_matches(';').trim();
                out.push(format!("{module}::{name} mod"));
            } else if let Some((kind, name)) = item(trimmed) {
                out.push(format!("{module}::{name} {kind}"));
            } else if let Some(rest) = trimmed.strip_prefix("impl") {
                impl_type = inherent_impl_type(rest);
            }
        } else if depth == 1 {
            if let (Some(ty), Some(("fn", name))) = (&impl_type, item(trimmed)) {
                out.push(format!("{module}::{ty}::{name} fn"));
            }
        }
        for c in line.chars() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        impl_type = None;
                    }
                }
                _ => {}
            }
        }
    }
}

/// `pub fn name`, `pub struct Name`... (not `pub(crate)`), as (kind, name).
fn item(line: &str) -> Option<(&'static str, String)> {
    let rest = line.strip_prefix("pub ")?;
    let rest = rest
        .trim_start_matches("const fn ")
        .trim_start_matches("unsafe ")
        .trim_start_matches("async ");
    let (kind, rest) = [
        ("fn", "fn "),
        ("struct", "struct "),
        ("enum", "enum "),
        ("const", "const "),
        ("static", "static "),
        ("type", "type "),
        ("trait", "trait "),
    ]
    .into_iter()
    .find_map(|(kind, prefix)| rest.strip_prefix(prefix).map(|rest| (kind, rest)))?;
    let name: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    Some((kind, name))
}

/// The type of an inherent `impl<T> Type<T> {` (none for `impl Trait for Type`).
fn inherent_impl_type(rest: &str) -> Option<String> {
    let mut rest = rest.trim_start();
    if rest.starts_with('<') {
        let mut depth = 0;
        let end = rest.char_indices().find_map(|(at, c)| {
            match c {
                '<' => depth += 1,
                '>' => depth -= 1,
                _ => {}
            }
            (depth == 0).then_some(at)
        })?;
        rest = rest[end + 1..].trim_start();
    }
    if rest.contains(" for ") {
        return None;
    }
    let name: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
        .collect();
    name.rsplit("::").next().map(str::to_string)
}

fn squeeze(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace("{ ", "{")
        .replace(" }", "}")
        .replace(",}", "}")
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn public_api() {
    let src = src();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut items = Vec::new();
    for file in &files {
        let rel = file
            .strip_prefix(&src)
            .expect("under src")
            .with_extension("");
        let mut module = vec!["vmharness".to_string()];
        module.extend(
            rel.components()
                .map(|c| c.as_os_str().to_string_lossy().to_string())
                .filter(|c| c != "lib" && c != "mod"),
        );
        surface_of(file, &module.join("::"), &mut items);
    }
    // A workspace crate mounted as a module is part of this surface at its mounted path.
    for (krate, name) in mounted_crates() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../crates")
            .join(krate.replace('_', "-"))
            .join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        for file in &files {
            let rel = file
                .strip_prefix(&src)
                .expect("under src")
                .with_extension("");
            let mut module = vec!["vmharness".to_string(), name.clone()];
            module.extend(
                rel.components()
                    .map(|c| c.as_os_str().to_string_lossy().to_string())
                    .filter(|c| c != "lib" && c != "mod"),
            );
            surface_of(file, &module.join("::"), &mut items);
        }
    }
    items.sort();
    insta::assert_snapshot!("public_api", items.join("\n"));
}

/// The workspace crates `lib.rs` mounts as modules (`pub use vmharness_digest as digest;`,
/// possibly under a `#[cfg(feature = ..)]`): (crate, module name).
fn mounted_crates() -> Vec<(String, String)> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("lib.rs");
    lib.lines()
        .filter_map(|line| {
            let line = line.strip_suffix(';')?.strip_prefix("pub use ")?;
            let (krate, name) = line.split_once(" as ")?;
            Some((krate.to_string(), name.to_string()))
        })
        .collect()
}

/// The crate docs say why each public module is public: every `pub mod` of `lib.rs` (and every
/// workspace crate it mounts as a module) is named in its doc list, and the list names no
/// module that is not public.
#[test]
fn the_crate_docs_list_every_public_module() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("lib.rs");
    let public: Vec<&str> = lib
        .lines()
        .filter_map(|line| {
            let line = line.strip_suffix(';')?;
            // A workspace crate mounted as a module (`pub use vmharness_digest as digest;`).
            line.strip_prefix("pub mod ").or_else(|| {
                let (_, name) = line.strip_prefix("pub use ")?.split_once(" as ")?;
                Some(name)
            })
        })
        .collect();
    let listed: Vec<&str> = lib
        .lines()
        .filter_map(|line| line.strip_prefix("//! - [`")?.split('`').next())
        .collect();
    let mut sorted = listed.clone();
    sorted.sort_unstable();
    let mut expected = public.clone();
    expected.sort_unstable();
    assert_eq!(
        sorted, expected,
        "lib.rs: the `//! - [`module`]: why` list must name exactly the `pub mod`s"
    );
}
