//! Recipes: how each named artifact is obtained, parsed from `guests/*.toml`.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use super::error::ArtifactError;
use super::package::PackageSpec;
pub use super::unpack::ArchiveFormat;

/// One named artifact and how to obtain it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    /// The artifact name (the TOML table name).
    pub name: String,
    /// The recipe file that defines it.
    pub file: PathBuf,
    /// How the artifact is obtained.
    pub source: Source,
}

/// The three kinds of recipe.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Source {
    /// Built by running a command.
    Command(CommandRecipe),
    /// Downloaded, optionally unpacked.
    Url(UrlRecipe),
    /// Taken from a file on this machine.
    Path(PathRecipe),
}

/// `kind = "command"`: run `command` in `guests/` with `{out}` replaced by an empty output dir.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandRecipe {
    /// Files or directories (recursive) relative to `guests/` whose contents go into the key.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// The argv; `{out}` in any argument is replaced by the output directory.
    pub command: Vec<String>,
    /// Commands whose output (e.g. `clang --version`) goes into the key.
    #[serde(default)]
    pub tools: Vec<Vec<String>>,
    /// Files the command must create in `{out}`.
    pub outputs: Vec<String>,
    /// Extra environment variables for the command.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The command needs the network; its failure then means "unavailable".
    #[serde(default)]
    pub network: bool,
    /// Debian packages the command consumes, by role. They are resolved through a private apt
    /// configuration, their name, version and sha256 go into the key, and `{package:<role>}` in
    /// `command` is replaced by the path of the downloaded `.deb`.
    #[serde(default)]
    pub packages: BTreeMap<String, PackageSpec>,
}

/// `kind = "url"`: download `url`, unpack it if `archive` is set.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlRecipe {
    /// `https://` URL (`http://` only for loopback hosts or bytes the lock already pins).
    pub url: String,
    /// Hosts a redirect may lead to besides the URL's own (e.g. a release CDN). Redirects never
    /// downgrade https to http.
    #[serde(default)]
    pub redirect_hosts: Vec<String>,
    /// Archive format of the download; absent means the download is the output file.
    pub archive: Option<ArchiveFormat>,
    /// With `archive`: output name -> path inside the archive.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    /// Without `archive`: the output name (default: the last URL path segment).
    pub file: Option<String>,
}

/// `kind = "path"`: a file already on this machine (e.g. firmware from a distro package).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathRecipe {
    /// Absolute, or relative to `guests/`.
    pub path: PathBuf,
    /// Output name (default: the file name of `path`).
    pub file: Option<String>,
}

impl Recipe {
    /// The output file names this artifact provides, sorted.
    pub fn outputs(&self) -> Vec<String> {
        let mut names = match &self.source {
            Source::Command(c) => c.outputs.clone(),
            Source::Url(u) if u.archive.is_some() => u.files.keys().cloned().collect(),
            Source::Url(u) => vec![u.output_name()],
            Source::Path(p) => vec![p.output_name()],
        };
        names.sort();
        names
    }

    fn validate(&self) -> Result<(), String> {
        match &self.source {
            Source::Command(c) => {
                if c.command.is_empty() {
                    return Err("`command` must not be empty".into());
                }
                if c.outputs.is_empty() {
                    return Err("`outputs` must name at least one file".into());
                }
                if c.tools.iter().any(Vec::is_empty) {
                    return Err("every entry of `tools` must be a non-empty argv".into());
                }
                for input in &c.inputs {
                    check_in_repository(input).map_err(|why| format!("input `{input}`: {why}"))?;
                }
                for (role, spec) in &c.packages {
                    check_name(role).map_err(|why| format!("package role `{role}`: {why}"))?;
                    if spec.suites.is_empty() {
                        return Err(format!("package `{role}`: `suites` must name a suite"));
                    }
                    if let Some(pattern) = &spec.via_depends {
                        regex::Regex::new(pattern)
                            .map_err(|e| format!("package `{role}`: via_depends: {e}"))?;
                    }
                }
                for arg in &c.command {
                    for role in package_placeholders(arg) {
                        if !c.packages.contains_key(role) {
                            return Err(format!(
                                "`{{package:{role}}}` in `command` names no entry of `packages`"
                            ));
                        }
                    }
                }
            }
            Source::Url(u) => {
                if !(u.url.starts_with("http://") || u.url.starts_with("https://")) {
                    return Err(format!(
                        "url `{}` must start with http:// or https://",
                        u.url
                    ));
                }
                match u.archive {
                    Some(_) if u.files.is_empty() => {
                        return Err(
                            "`archive` needs `files = { output = \"path/in/archive\" }`".into()
                        )
                    }
                    Some(_) if u.file.is_some() => {
                        return Err(
                            "`file` is for plain downloads; with `archive` use `files`".into()
                        )
                    }
                    None if !u.files.is_empty() => {
                        return Err(
                            "`files` needs `archive`; for a plain download use `file`".into()
                        )
                    }
                    _ => {}
                }
                if u.output_name().is_empty() {
                    return Err(format!("cannot name the output of `{}`; set `file`", u.url));
                }
            }
            Source::Path(_) => {}
        }
        for output in self.outputs() {
            check_relative(&output).map_err(|why| format!("output `{output}`: {why}"))?;
        }
        Ok(())
    }
}

impl UrlRecipe {
    /// The output name of a plain download: `file`, else the last URL path segment.
    pub(crate) fn output_name(&self) -> String {
        if let Some(file) = &self.file {
            return file.clone();
        }
        let path = self.url.split(['?', '#']).next().unwrap_or_default();
        path.rsplit('/').next().unwrap_or_default().to_string()
    }
}

impl PathRecipe {
    /// The output name: `file`, else the file name of `path`.
    pub(crate) fn output_name(&self) -> String {
        match (&self.file, self.path.file_name()) {
            (Some(file), _) => file.clone(),
            (None, Some(name)) => name.to_string_lossy().into_owned(),
            (None, None) => String::new(),
        }
    }
}

/// The roles named by `{package:<role>}` placeholders in one argument.
pub(crate) fn package_placeholders(arg: &str) -> Vec<&str> {
    arg.match_indices("{package:")
        .filter_map(|(at, prefix)| {
            let rest = &arg[at + prefix.len()..];
            rest.find('}').map(|end| &rest[..end])
        })
        .collect()
}

/// Checks that `path` is a non-empty relative path without `..`, so it stays inside its root.
pub(crate) fn check_relative(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("is empty");
    }
    for component in Path::new(path).components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err("must not contain `..`"),
            Component::RootDir | Component::Prefix(_) => return Err("must be relative"),
        }
    }
    Ok(())
}

/// A command recipe's input, relative to `guests/`: anywhere in the repository that holds
/// `guests/` (`../src/boot.S` is the repository's `src/boot.S`), never above it.
pub(crate) fn check_in_repository(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("is empty");
    }
    // How far below `guests/` the path is after each component; -1 is the repository.
    let mut depth: i64 = 0;
    for component in Path::new(path).components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < -1 {
                    return Err("must stay inside the repository that holds guests/");
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err("must be relative (to guests/)")
            }
        }
    }
    Ok(())
}

/// Parses one recipe file; every top-level table is one artifact.
pub(crate) fn parse_file(file: &Path) -> Result<Vec<Recipe>, ArtifactError> {
    let text = std::fs::read_to_string(file).map_err(|e| ArtifactError::io("read", file, e))?;
    parse_str(file, &text)
}

/// Parses recipe text; `file` is used for error messages and as the recipe's origin.
pub(crate) fn parse_str(file: &Path, text: &str) -> Result<Vec<Recipe>, ArtifactError> {
    let recipe_error = |message: String| ArtifactError::Recipe {
        file: file.to_path_buf(),
        message,
    };
    let tables: BTreeMap<String, toml::Spanned<toml::Value>> =
        toml::from_str(text).map_err(|e| recipe_error(e.to_string()))?;
    let mut recipes = Vec::with_capacity(tables.len());
    for (name, table) in tables {
        // Name the line of the artifact's table: a tagged enum loses serde's own position.
        let line = text
            .get(..table.span().start)
            .unwrap_or(text)
            .matches('\n')
            .count()
            + 1;
        let at = |what: String| recipe_error(format!("line {line}: artifact `{name}`: {what}"));
        check_name(&name).map_err(|why| at(why.to_string()))?;
        let source =
            Source::deserialize(table.into_inner()).map_err(|e| at(e.message().to_string()))?;
        let recipe = Recipe {
            name,
            file: file.to_path_buf(),
            source,
        };
        recipe.validate().map_err(|why| {
            recipe_error(format!("line {line}: artifact `{}`: {why}", recipe.name))
        })?;
        recipes.push(recipe);
    }
    Ok(recipes)
}

fn check_name(name: &str) -> Result<(), &'static str> {
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.starts_with('.') || !name.chars().all(valid) {
        return Err("use only letters, digits, `-`, `_` and `.`, not starting with `.`");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_may_be_anywhere_in_the_repository_and_nowhere_above() {
        for inside in [
            "hello/hello.S",
            "../src/boot.S",
            "../src",
            "./../Cargo.toml",
            "a/../../src/x",
        ] {
            assert_eq!(check_in_repository(inside), Ok(()), "{inside}");
        }
        for outside in [
            "../..",
            "../../other/x",
            "../src/../../x",
            "a/../../../x",
            "/etc/passwd",
            "",
        ] {
            assert!(check_in_repository(outside).is_err(), "{outside}");
        }
    }
}
