//! Content hashes: sha256 of files and the recipe keys that decide whether a cached build is current.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use vmharness_digest::Sha256;

use super::error::ArtifactError;
use super::package::ResolvedPackage;
use super::recipe::{CommandRecipe, PathRecipe, Recipe, Source, UrlRecipe};

/// Hex sha256 of a file's contents (hashed once per process while the file is unchanged).
pub(crate) fn sha256_file(path: &Path) -> Result<String, ArtifactError> {
    vmharness_digest::file_sha256(path).map_err(|e| ArtifactError::io("read", path, e))
}

/// Hex sha256 of bytes in memory.
pub(crate) fn sha256_bytes(bytes: &[u8]) -> String {
    vmharness_digest::bytes_sha256(bytes)
}

/// A recipe key and the readable inputs it was computed from (kept in `guests.lock`, so a new
/// key can say what moved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedInputs {
    /// The recipe key.
    pub key: String,
    /// Input name (`file linux/build.sh`, `tool clang --version`, `package kernel`) -> value.
    pub inputs: BTreeMap<String, String>,
}

/// Builds an unambiguous digest: every field is tagged and length-prefixed.
struct KeyHasher(Sha256);

impl KeyHasher {
    fn new(domain: &str) -> Self {
        let mut hasher = KeyHasher(Sha256::new());
        hasher.field("domain", domain.as_bytes());
        hasher
    }

    fn field(&mut self, tag: &str, bytes: &[u8]) {
        for part in [tag.as_bytes(), bytes] {
            self.0.update(&(part.len() as u64).to_le_bytes());
            self.0.update(part);
        }
    }

    fn finish(self) -> String {
        self.0.finish_hex()
    }
}

/// The recipe key of any recipe: changes exactly when what the recipe would produce may change.
/// `packages` are the Debian packages a command recipe consumes, as resolved from the index.
pub fn recipe_key(
    recipe: &Recipe,
    guests_dir: &Path,
    packages: &[ResolvedPackage],
) -> Result<KeyedInputs, ArtifactError> {
    match &recipe.source {
        Source::Command(c) => command_key(&recipe.name, c, guests_dir, packages),
        Source::Url(u) => Ok(KeyedInputs {
            key: url_key(u),
            inputs: BTreeMap::from([("url".to_string(), u.url.clone())]),
        }),
        Source::Path(p) => Ok(KeyedInputs {
            key: path_key(p),
            inputs: BTreeMap::from([("path".to_string(), p.path.to_string_lossy().into_owned())]),
        }),
    }
}

/// Key of a command recipe: input contents with their relative paths, argv, env, outputs, the
/// output of every declared tool command and every consumed package (name, version, sha256).
fn command_key(
    name: &str,
    recipe: &CommandRecipe,
    guests_dir: &Path,
    packages: &[ResolvedPackage],
) -> Result<KeyedInputs, ArtifactError> {
    let mut inputs = BTreeMap::new();
    let mut hasher = KeyHasher::new("vmharness command v1");
    for input in &recipe.inputs {
        let root = guests_dir.join(input);
        if !root.exists() {
            return Err(ArtifactError::MissingInput {
                artifact: name.to_string(),
                input: input.clone(),
                guests_dir: guests_dir.to_path_buf(),
            });
        }
        for file in walk_sorted(&root)? {
            let relative = file.strip_prefix(guests_dir).unwrap_or(&file);
            let sha = sha256_file(&file)?;
            hasher.field("input", relative.to_string_lossy().as_bytes());
            hasher.field("sha256", sha.as_bytes());
            inputs.insert(
                format!("file {}", relative.to_string_lossy()),
                format!("sha256:{sha}"),
            );
        }
    }
    for arg in &recipe.command {
        hasher.field("arg", arg.as_bytes());
    }
    for (key, value) in &recipe.env {
        hasher.field("env", format!("{key}={value}").as_bytes());
    }
    for output in &recipe.outputs {
        hasher.field("output", output.as_bytes());
    }
    for tool in &recipe.tools {
        let version = tool_version(name, tool)?;
        hasher.field("tool", tool.join(" ").as_bytes());
        hasher.field("tool-output", &version);
        let first_line = String::from_utf8_lossy(&version)
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default()
            .trim()
            .to_string();
        inputs.insert(format!("tool {}", tool.join(" ")), first_line);
    }
    for package in packages {
        hasher.field("package-role", package.role.as_bytes());
        hasher.field("package", package.lock_value().as_bytes());
        inputs.insert(format!("package {}", package.role), package.lock_value());
    }
    inputs.insert("command".into(), recipe.command.join(" "));
    Ok(KeyedInputs {
        key: hasher.finish(),
        inputs,
    })
}

/// What changed between the inputs a lock entry recorded and the current ones, one line each
/// (`package kernel: linux-image-6.1.0-56-arm64 6.1.192-2 -> linux-image-6.1.0-57-arm64 6.1.192-3`).
pub(crate) fn input_changes(
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> Vec<String> {
    let short = |name: &str, value: &str| -> String {
        if name.starts_with("package ") {
            value
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            value.to_string()
        }
    };
    if old.is_empty() {
        // An entry from before inputs were recorded: nothing to compare with.
        return Vec::new();
    }
    let mut names: Vec<&String> = old.keys().chain(new.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|name| match (old.get(name), new.get(name)) {
            (Some(a), Some(b)) if a == b => None,
            (Some(a), Some(b)) if short(name, a) == short(name, b) => {
                Some(format!("{name}: {a} -> {b}"))
            }
            (Some(a), Some(b)) => Some(format!("{name}: {} -> {}", short(name, a), short(name, b))),
            (Some(a), None) => Some(format!("{name}: {} -> (gone)", short(name, a))),
            (None, Some(b)) => Some(format!("{name}: (new) {}", short(name, b))),
            (None, None) => None,
        })
        .collect()
}

fn url_key(recipe: &UrlRecipe) -> String {
    let mut hasher = KeyHasher::new("vmharness url v1");
    hasher.field("url", recipe.url.as_bytes());
    hasher.field(
        "archive",
        recipe.archive.map_or("", |a| a.as_str()).as_bytes(),
    );
    for (output, inner) in &recipe.files {
        hasher.field("file", format!("{output}={inner}").as_bytes());
    }
    hasher.field("name", recipe.output_name().as_bytes());
    hasher.finish()
}

/// Key under which a local build of a `url` artifact is materialized: the release key mixed
/// with "local build" and the build's sha256, so it can never be taken for the release.
pub(crate) fn local_build_key(release_key: &str, sha256: &str) -> String {
    let mut hasher = KeyHasher::new("vmharness local build v1");
    hasher.field("release-key", release_key.as_bytes());
    hasher.field("sha256", sha256.as_bytes());
    hasher.finish()
}

/// Key of a path recipe: the path and output name. The file's contents are checked against the
/// lock on every resolution, so a changed file is a changed output (an error), not a new key.
fn path_key(recipe: &PathRecipe) -> String {
    let mut hasher = KeyHasher::new("vmharness path v1");
    hasher.field("path", recipe.path.to_string_lossy().as_bytes());
    hasher.field("name", recipe.output_name().as_bytes());
    hasher.finish()
}

/// Runs a declared tool command and returns its stdout and stderr.
///
/// Answers are remembered per process, keyed by the argv and the tool binary's identity (path,
/// size, mtime, inode): every resolve computes the recipe key, and running `clang --version`
/// each time cost ~60 ms per VM boot.
fn tool_version(artifact: &str, argv: &[String]) -> Result<Vec<u8>, ArtifactError> {
    type Memo = std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>;
    static MEMO: std::sync::OnceLock<Memo> = std::sync::OnceLock::new();
    let memo_key = format!(
        "{argv:?}\0{}",
        binary_identity(argv.first().map_or("", String::as_str))
    );
    let memo = MEMO.get_or_init(Memo::default);
    if let Some(bytes) = memo.lock().ok().and_then(|m| m.get(&memo_key).cloned()) {
        return Ok(bytes);
    }
    let bytes = run_tool(artifact, argv)?;
    if let Ok(mut m) = memo.lock() {
        m.insert(memo_key, bytes.clone());
    }
    Ok(bytes)
}

/// Where `program` resolves to and its size/mtime/inode, so a replaced tool is asked again.
fn binary_identity(program: &str) -> String {
    use std::os::unix::fs::MetadataExt;
    let path = if program.contains('/') {
        Some(PathBuf::from(program))
    } else {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(program))
                .find(|candidate| candidate.is_file())
        })
    };
    match path.and_then(|p| std::fs::metadata(&p).ok().map(|m| (p, m))) {
        Some((p, m)) => format!(
            "{}:{}:{}:{}:{}",
            p.display(),
            m.len(),
            m.mtime(),
            m.mtime_nsec(),
            m.ino()
        ),
        None => String::new(),
    }
}

fn run_tool(artifact: &str, argv: &[String]) -> Result<Vec<u8>, ArtifactError> {
    let (program, args) = argv.split_first().ok_or_else(|| ArtifactError::Recipe {
        file: PathBuf::new(),
        message: format!("artifact `{artifact}`: empty tool command"),
    })?;
    let output =
        Command::new(program)
            .args(args)
            .output()
            .map_err(|e| ArtifactError::Unavailable {
                artifact: artifact.to_string(),
                reason: format!("tool `{}` cannot run: {e}", argv.join(" ")),
            })?;
    if !output.status.success() {
        return Err(ArtifactError::Unavailable {
            artifact: artifact.to_string(),
            reason: format!("tool `{}` failed: {}", argv.join(" "), output.status),
        });
    }
    let mut bytes = output.stdout;
    bytes.extend_from_slice(&output.stderr);
    Ok(bytes)
}

/// All regular files under `root` (or `root` itself if it is a file), in sorted order.
fn walk_sorted(root: &Path) -> Result<Vec<PathBuf>, ArtifactError> {
    let meta = std::fs::metadata(root).map_err(|e| ArtifactError::io("stat", root, e))?;
    if !meta.is_dir() {
        return Ok(vec![root.to_path_buf()]);
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(root)
        .map_err(|e| ArtifactError::io("list", root, e))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(|e| ArtifactError::io("list", root, e))?;
    entries.sort();
    let mut files = Vec::new();
    for entry in entries {
        files.extend(walk_sorted(&entry)?);
    }
    Ok(files)
}
