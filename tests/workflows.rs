//! The GitHub workflow and action files parse, have the structure GitHub needs, and every
//! `cargo xtask ...` / `cargo nextest ...` / script command in their `run:` steps is accepted by
//! the real tool: each is run with `--help` appended, so clap rejects unknown subcommands and
//! flags exactly as it would in CI.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use yaml_rust2::{Yaml, YamlLoader};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every workflow and composite-action file in the repository.
fn ci_files() -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let workflows = root().join(".github/workflows");
    for entry in std::fs::read_dir(&workflows).context("listing .github/workflows")? {
        let path = entry?.path();
        if path
            .extension()
            .is_some_and(|ext| ext == "yml" || ext == "yaml")
        {
            files.push(path);
        }
    }
    for entry in std::fs::read_dir(root().join(".github/actions")).context("listing actions")? {
        let path = entry?.path().join("action.yml");
        if path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn load(path: &Path) -> Result<Yaml> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let mut docs = YamlLoader::load_from_str(&text)
        .with_context(|| format!("{} is not valid YAML", path.display()))?;
    ensure!(docs.len() == 1, "{}: expected one document", path.display());
    Ok(docs.remove(0))
}

fn hash_keys(yaml: &Yaml) -> Vec<String> {
    yaml.as_hash()
        .map(|h| {
            h.keys()
                .filter_map(|k| k.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Scalars as the strings GitHub substitutes for them.
fn scalar(yaml: &Yaml) -> Option<String> {
    match yaml {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Every `<prefix><name>` reference (e.g. `matrix.arch`) in `text`.
fn references(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        let after = &rest[at + prefix.len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .collect();
        if !name.is_empty() {
            found.insert(name);
        }
        rest = after;
    }
    found
}

/// A `run:` script and the sample values its `${{ }}` expressions take.
struct Script {
    origin: String,
    text: String,
    values: BTreeMap<String, String>,
    /// The step's `env:`, as written (values may hold `${{ }}` expressions).
    env: BTreeMap<String, String>,
}

impl Script {
    /// A word that is exactly `$NAME` of a step variable, as the shell would see it.
    fn expand(&self, word: &str) -> Result<String> {
        let Some(value) = word.strip_prefix('$').and_then(|name| self.env.get(name)) else {
            return Ok(word.to_string());
        };
        substitute(&Script {
            origin: self.origin.clone(),
            text: value.clone(),
            values: self.values.clone(),
            env: BTreeMap::new(),
        })
    }
}

/// Replaces `${{ matrix.x }}` / `${{ inputs.x }}` with sample values and any other expression
/// (`runner.temp`, comparisons) with a placeholder word.
fn substitute(script: &Script) -> Result<String> {
    let mut out = String::new();
    let mut rest = script.text.as_str();
    while let Some(start) = rest.find("${{") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find("}}")
            .with_context(|| format!("{}: unterminated ${{{{", script.origin))?;
        let expr = rest[start + 3..start + end].trim();
        match script.values.get(expr) {
            Some(value) => out.push_str(value),
            None if expr.starts_with("matrix.") || expr.starts_with("inputs.") => {
                bail!("{}: `{expr}` is not defined", script.origin)
            }
            None => out.push_str("placeholder"),
        }
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Simple commands in a script: continuation lines joined, split on `;`, `&&`, `||`, `|`.
fn commands(script: &str) -> Vec<Vec<String>> {
    let joined = script.replace("\\\n", " ");
    let mut commands = Vec::new();
    for line in joined.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        // Lines that shell_words cannot split (heredocs, unbalanced quotes) hold no commands
        // we check; every checked line in our files splits.
        let Ok(words) = shell_words::split(line) else {
            continue;
        };
        let mut current = Vec::new();
        for word in words {
            let (word, ends) = match word.strip_suffix(';') {
                Some(stripped) => (stripped.to_string(), true),
                None => (word, false),
            };
            if ["&&", "||", "|", "then", "do", "else", "if", "!"].contains(&word.as_str()) {
                commands.push(std::mem::take(&mut current));
                continue;
            }
            if !word.is_empty() {
                current.push(word);
            }
            if ends {
                commands.push(std::mem::take(&mut current));
            }
        }
        commands.push(current);
    }
    commands.retain(|c| !c.is_empty());
    commands
}

/// Collects the scripts of a workflow (per job, with the first value of each matrix key).
fn workflow_scripts(path: &Path, doc: &Yaml, scripts: &mut Vec<Script>) -> Result<()> {
    let name = path.display();
    ensure!(!doc["name"].is_badvalue(), "{name}: no `name`");
    ensure!(!doc["on"].is_badvalue(), "{name}: no `on` trigger");
    let jobs = doc["jobs"]
        .as_hash()
        .with_context(|| format!("{name}: no `jobs` map"))?;
    ensure!(!jobs.is_empty(), "{name}: no jobs");
    let job_names = hash_keys(&doc["jobs"]);
    for job_name in &job_names {
        let job = &doc["jobs"][job_name.as_str()];
        let here = format!("{name}: job `{job_name}`");
        ensure!(!job["runs-on"].is_badvalue(), "{here}: no `runs-on`");
        let steps = job["steps"]
            .as_vec()
            .with_context(|| format!("{here}: no `steps`"))?;
        ensure!(!steps.is_empty(), "{here}: empty `steps`");
        let needs: Vec<String> = match &job["needs"] {
            Yaml::BadValue => Vec::new(),
            Yaml::Array(list) => list.iter().filter_map(scalar).collect(),
            other => scalar(other).into_iter().collect(),
        };
        for need in needs {
            ensure!(
                job_names.contains(&need),
                "{here}: needs unknown job `{need}`"
            );
        }
        let job_text = yaml_text(job)?;
        let values = matrix_values(&job["strategy"]["matrix"], &job_text, &here)?;
        check_steps(steps, &here, values, scripts)?;
    }
    Ok(())
}

/// The matrix's sample values (`matrix.<key>` -> first value), checking every key is used and
/// every used key exists.
fn matrix_values(matrix: &Yaml, job_text: &str, here: &str) -> Result<BTreeMap<String, String>> {
    let mut values = BTreeMap::new();
    let mut keys = BTreeSet::new();
    for key in hash_keys(matrix) {
        if key == "include" || key == "exclude" {
            continue;
        }
        let first = matrix[key.as_str()]
            .as_vec()
            .and_then(|v| v.first())
            .and_then(scalar)
            .with_context(|| format!("{here}: matrix `{key}` is not a non-empty list"))?;
        values.insert(format!("matrix.{key}"), first);
        keys.insert(key);
    }
    for entry in matrix["include"].as_vec().into_iter().flatten() {
        for key in hash_keys(entry) {
            let value = scalar(&entry[key.as_str()])
                .with_context(|| format!("{here}: include `{key}` is not a scalar"))?;
            values.entry(format!("matrix.{key}")).or_insert(value);
            keys.insert(key);
        }
    }
    let used = references(job_text, "matrix.");
    for key in &keys {
        ensure!(
            used.contains(key),
            "{here}: matrix key `{key}` is never used"
        );
    }
    for key in &used {
        ensure!(
            keys.contains(key),
            "{here}: uses `matrix.{key}`, not in its matrix"
        );
    }
    Ok(values)
}

fn check_steps(
    steps: &[Yaml],
    here: &str,
    values: BTreeMap<String, String>,
    scripts: &mut Vec<Script>,
) -> Result<()> {
    for (index, step) in steps.iter().enumerate() {
        let at = format!("{here}, step {}", index + 1);
        let uses = step["uses"].as_str();
        let run = step["run"].as_str();
        ensure!(
            uses.is_some() != run.is_some(),
            "{at}: needs exactly one of `uses` and `run`"
        );
        if let Some(uses) = uses {
            ensure!(
                uses.contains('@') || uses.starts_with("./"),
                "{at}: `{uses}` is not pinned to a ref"
            );
        }
        if let Some(run) = run {
            let env = step["env"]
                .as_hash()
                .map(|env| {
                    env.iter()
                        .filter_map(|(k, v)| Some((k.as_str()?.to_string(), scalar(v)?)))
                        .collect()
                })
                .unwrap_or_default();
            scripts.push(Script {
                origin: at,
                text: run.to_string(),
                values: values.clone(),
                env,
            });
        }
    }
    Ok(())
}

/// Collects the scripts of a composite action, with each input's default as its value.
fn action_scripts(path: &Path, doc: &Yaml, scripts: &mut Vec<Script>) -> Result<()> {
    let name = path.display();
    ensure!(!doc["name"].is_badvalue(), "{name}: no `name`");
    ensure!(
        !doc["description"].is_badvalue(),
        "{name}: no `description`"
    );
    ensure!(
        doc["runs"]["using"].as_str() == Some("composite"),
        "{name}: not a composite action"
    );
    let mut values = BTreeMap::new();
    let inputs = hash_keys(&doc["inputs"]);
    for input in &inputs {
        let spec = &doc["inputs"][input.as_str()];
        ensure!(
            spec["description"].as_str().is_some(),
            "{name}: input `{input}` has no description"
        );
        let sample = scalar(&spec["default"])
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "x86_64".to_string());
        values.insert(format!("inputs.{input}"), sample);
    }
    let used = references(&yaml_text(&doc["runs"])?, "inputs.");
    for input in &inputs {
        ensure!(
            used.contains(input),
            "{name}: input `{input}` is never used"
        );
    }
    let steps = doc["runs"]["steps"]
        .as_vec()
        .with_context(|| format!("{name}: no `runs.steps`"))?;
    for (index, step) in steps.iter().enumerate() {
        if step["run"].as_str().is_some() {
            ensure!(
                step["shell"].as_str().is_some(),
                "{name}, step {}: composite `run` steps need `shell`",
                index + 1
            );
        }
    }
    check_steps(steps, &name.to_string(), values, scripts)
}

fn yaml_text(yaml: &Yaml) -> Result<String> {
    let mut out = String::new();
    yaml_rust2::YamlEmitter::new(&mut out).dump(yaml)?;
    Ok(out)
}

fn all_scripts() -> Result<Vec<Script>> {
    let files = ci_files()?;
    ensure!(
        files.iter().any(|f| f.ends_with("workflows/ci.yml")),
        "no ci.yml"
    );
    ensure!(
        files.iter().any(|f| f.ends_with("action.yml")),
        "no composite action"
    );
    let mut scripts = Vec::new();
    for file in &files {
        let doc = load(file)?;
        if file.ends_with("action.yml") {
            action_scripts(file, &doc, &mut scripts)?;
        } else {
            workflow_scripts(file, &doc, &mut scripts)?;
        }
    }
    Ok(scripts)
}

#[test]
fn workflows_have_the_structure_github_needs() -> Result<()> {
    let scripts = all_scripts()?;
    for script in &scripts {
        substitute(script)?;
    }
    Ok(())
}

#[test]
fn msrv_matrix_matches_the_workspace_rust_version() -> Result<()> {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml"))?;
    let msrv = manifest
        .lines()
        .find_map(|line| {
            let value = line
                .strip_prefix("rust-version")?
                .trim()
                .strip_prefix('=')?;
            Some(value.trim().trim_matches('"').to_string())
        })
        .context("no rust-version in Cargo.toml")?;
    let ci = load(&root().join(".github/workflows/ci.yml"))?;
    for job in ["build", "test"] {
        let toolchains: Vec<String> = ci["jobs"][job]["strategy"]["matrix"]["toolchain"]
            .as_vec()
            .with_context(|| format!("job {job} has no toolchain matrix"))?
            .iter()
            .filter_map(scalar)
            .collect();
        ensure!(
            toolchains.contains(&msrv) && toolchains.iter().any(|t| t == "stable"),
            "job {job}: toolchains {toolchains:?} must include stable and the MSRV {msrv}"
        );
        let allowed = scalar(&ci["jobs"][job]["continue-on-error"]).unwrap_or_default();
        for latest in toolchains
            .iter()
            .filter(|t| *t == "beta" || *t == "nightly")
        {
            ensure!(
                allowed.contains(&format!("'{latest}'")),
                "job {job}: `{latest}` must be allowed to fail via continue-on-error, got `{allowed}`"
            );
        }
    }
    Ok(())
}

/// Inner cargo builds use their own target dir so they never wait on the outer build's lock.
fn inner_target() -> PathBuf {
    vmharness::settings::Settings::from_env()
        .expect("usable environment")
        .target_dir
        .join("inner")
}

fn run_ok(mut command: Command, what: &str) -> Result<()> {
    let output = command
        .output()
        .with_context(|| format!("starting {what}"))?;
    ensure!(
        output.status.success(),
        "{what} was rejected ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

#[test]
fn every_command_in_run_steps_exists() -> Result<()> {
    let mut checked = 0;
    for script in all_scripts()? {
        let text = substitute(&script)?;
        for words in commands(&text) {
            // Skip env assignments (`VAR=value cargo ...`) and `sudo`.
            let start = words
                .iter()
                .position(|w| {
                    let assignment = w.contains('=') && !w.starts_with('-');
                    !assignment && w != "sudo"
                })
                .unwrap_or(words.len());
            let expanded: Vec<String> = words[start..]
                .iter()
                .filter(|w| !(w.starts_with("${") && w.ends_with("[@]}")))
                .map(|w| script.expand(w))
                .collect::<Result<_>>()?;
            let words: Vec<&str> = expanded.iter().map(String::as_str).collect();
            let what = format!("{}: `{}`", script.origin, words.join(" "));
            match words.as_slice() {
                ["cargo", "xtask", args @ ..] => {
                    let mut command = Command::new(env!("CARGO"));
                    command
                        .current_dir(root())
                        .env("CARGO_TARGET_DIR", inner_target())
                        .args(["run", "--quiet", "--package", "xtask", "--"])
                        .args(args)
                        .arg("--help");
                    run_ok(command, &what)?;
                }
                ["vmharness", args @ ..] => {
                    let mut command = Command::new(env!("CARGO"));
                    command
                        .current_dir(root())
                        .env("CARGO_TARGET_DIR", inner_target())
                        .args(["run", "--quiet", "--package", "vmharness-cli", "--bin"])
                        .args(["vmharness", "--"])
                        .args(args)
                        .arg("--help");
                    run_ok(command, &what)?;
                }
                ["cargo", "nextest", args @ ..] => {
                    let mut command = Command::new(env!("CARGO"));
                    command
                        .current_dir(root())
                        .arg("nextest")
                        .args(args)
                        .arg("--help");
                    run_ok(command, &what)?;
                }
                ["bash" | "sh", file, ..] if !file.starts_with('-') => {
                    ensure!(root().join(file).is_file(), "{what}: no file {file}");
                }
                [file, ..] if file.starts_with("./") => {
                    ensure!(root().join(file).is_file(), "{what}: no file {file}");
                }
                _ => continue,
            }
            checked += 1;
        }
    }
    // ci.yml alone has setup, guests build, nextest archive and nextest run.
    ensure!(
        checked >= 4,
        "only {checked} commands found: the parser lost some"
    );
    Ok(())
}

#[test]
fn the_checker_rejects_what_github_or_clap_would() -> Result<()> {
    let bad = Script {
        origin: "sample".into(),
        text: "cargo xtask ${{ matrix.nope }}".into(),
        values: BTreeMap::new(),
        env: BTreeMap::new(),
    };
    ensure!(
        substitute(&bad).is_err(),
        "an undefined matrix key must be an error"
    );
    let split =
        commands("A=1 cargo xtask setup && cargo nextest run \\\n --partition hash:1/2; echo ok");
    ensure!(
        split
            == vec![
                vec!["A=1", "cargo", "xtask", "setup"],
                vec!["cargo", "nextest", "run", "--partition", "hash:1/2"],
                vec!["echo", "ok"],
            ],
        "{split:?}"
    );
    let mut command = Command::new(env!("CARGO"));
    command
        .current_dir(root())
        .env("CARGO_TARGET_DIR", inner_target())
        .args(["run", "--quiet", "--package", "xtask", "--"])
        .args(["no-such-task", "--help"]);
    ensure!(
        run_ok(command, "no-such-task").is_err(),
        "an unknown xtask subcommand must be rejected"
    );
    let mut command = Command::new(env!("CARGO"));
    command.args(["nextest", "run", "--no-such-flag", "--help"]);
    ensure!(
        run_ok(command, "--no-such-flag").is_err(),
        "an unknown nextest flag must be rejected"
    );
    Ok(())
}

/// The composite action fences each guest's console off from GitHub's command parser.
#[test]
fn the_action_fences_guest_output_from_workflow_commands() -> Result<()> {
    // Guests run only through `vmharness ci`, which fences their output with a random
    // `::stop-commands::` token (proved on a real guest by tests/xtask_ci.rs); nothing in the
    // action streams a console itself.
    let text = std::fs::read_to_string(root().join(".github/actions/vmharness/action.yml"))?;
    ensure!(
        text.contains("vmharness ci "),
        "the action does not run `vmharness ci`"
    );
    for direct in ["vmharness qemu", "cargo xtask qemu", "qemu-system-"] {
        ensure!(
            !text.contains(direct),
            "the action runs `{direct}` unfenced"
        );
    }
    Ok(())
}
