//! `ci`: the gates and the tests as separate, timed steps, with GitHub Actions
//! groups, `::error` annotations and a markdown summary when `GITHUB_ACTIONS=true`.
//!
//! Every step runs even after an earlier one failed; the exit status is non-zero if any did.
//! The cargo commands run in the cargo workspace around the current directory; the VM configs
//! are read from `<root>/vm-configs` (`VMHARNESS_ROOT` may move the root).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use vmharness::arch::Arch;
use vmharness::config::{self, AccelChoice, ConfigError};
use vmharness::settings::{Settings, ACCEL_ENV, ARCH_ENV};
use vmharness::suite::{Label, ResultRecord};

#[derive(Args)]
#[command(after_help = "\
Steps: fmt, clippy, doc (the gates); library tests (`cargo test --workspace`, leaving out
--package's tests; without --package only libraries and binaries) and the frontend's own test
steps, both without --arch; VM configs; VM tests (`cargo test [--package P] --test NAME...`, or
nextest's `ci` profile with JUnit at target/nextest/ci/junit.xml). Console logs and result.toml
files: target/vmharness/logs/<test>/latest/.
Exit status: 0 when every step passed, 1 otherwise.")]
/// Arguments of `ci`.
pub struct CiArgs {
    /// Only VM tests whose config is for this arch (sets VMHARNESS_ARCH); skips the library tests.
    #[arg(long)]
    pub arch: Option<Arch>,
    /// Force an accelerator for every VM test: auto, kvm or tcg (sets VMHARNESS_ACCEL).
    #[arg(long)]
    pub accel: Option<AccelChoice>,
    /// Run only the tests, not fmt/clippy/doc.
    #[arg(long)]
    pub skip_gates: bool,
    /// Run the VM tests with `cargo nextest run --profile ci` (JUnit XML) instead of `cargo test`.
    #[arg(long)]
    pub nextest: bool,
    /// The package whose test targets are the VM tests (`cargo test -p PACKAGE`); the library
    /// tests step leaves its tests out.
    #[arg(long, short = 'p', value_name = "PACKAGE")]
    pub package: Option<String>,
    /// A test target that runs VM configs (repeatable; default: every test target, `--tests`).
    #[arg(long = "test", value_name = "NAME")]
    pub tests: Vec<String>,
}

/// What a frontend adds to `ci` for its own workspace.
#[derive(Debug, Clone, Default)]
pub struct CiPlan {
    /// Test steps run after the library tests (without `--arch`), in this order.
    pub test_steps: Vec<CargoStep>,
}

/// A `ci` step that runs cargo in the workspace.
#[derive(Debug, Clone)]
pub struct CargoStep {
    /// The step's name in the log and the summary.
    pub name: String,
    /// cargo's arguments, e.g. `["test", "-p", "mine", "--test", "cli"]`.
    pub args: Vec<String>,
}

/// One finished step.
struct StepResult {
    name: String,
    ok: bool,
    elapsed: Duration,
}

/// A VM test's row in the summary, from its `result.toml` or from a config that did not load.
#[derive(Debug, Clone)]
struct Row {
    test: String,
    arch: String,
    accel: String,
    /// `None` for a config that did not load (INVALID).
    outcome: Option<Label>,
    detail: String,
    elapsed_secs: String,
    log: String,
    config: String,
    /// `[[booted]]` entries whose key guests.lock had not recorded (inputs moved).
    moved: Vec<String>,
    /// Guest-reported sub-results that failed, `name (status): detail`.
    failed_sub_results: Vec<String>,
    /// Values the config records from the console (`[[results.record]]`).
    values: std::collections::BTreeMap<String, String>,
}

impl Row {
    /// A row with every field `-`.
    fn dashes() -> Row {
        let dash = || "-".to_string();
        Row {
            test: dash(),
            arch: dash(),
            accel: dash(),
            outcome: None,
            detail: dash(),
            elapsed_secs: dash(),
            log: dash(),
            config: dash(),
            moved: Vec::new(),
            failed_sub_results: Vec::new(),
            values: Default::default(),
        }
    }

    /// The row of a test's result record.
    fn of(record: ResultRecord) -> Row {
        let failed_sub_results = record
            .sub_results
            .iter()
            .filter(|c| matches!(c.status.as_str(), "FAIL" | "CRASHED"))
            .map(|c| {
                let detail = c
                    .detail
                    .as_deref()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default();
                format!("{} ({}){detail}", c.name, c.status.to_lowercase())
            })
            .collect();
        Row {
            values: record.values.clone(),
            failed_sub_results,
            moved: moved_inputs(&record),
            test: record.test,
            arch: record.arch,
            accel: record.accel.unwrap_or_else(|| "-".into()),
            outcome: Some(record.outcome),
            detail: record.detail,
            elapsed_secs: format!("{:.3}", record.elapsed_secs),
            log: record.log.display().to_string(),
            config: record.config.display().to_string(),
        }
    }

    /// PASS, FAIL, ... or INVALID.
    fn label(&self) -> String {
        self.outcome
            .map_or_else(|| "INVALID".to_string(), |label| label.to_string())
    }

    /// A failure, or a config that did not load.
    fn is_failure(&self) -> bool {
        self.outcome.is_none_or(Label::is_failure)
    }

    /// Nothing was tested.
    fn is_skip(&self) -> bool {
        self.outcome.is_some_and(Label::is_skip)
    }
}

/// A config that failed to load: where, and why.
struct ConfigProblem {
    path: PathBuf,
    line: Option<usize>,
    column: Option<usize>,
    message: String,
}

struct Ci {
    github: bool,
    /// The cargo workspace whose code is checked (around the current directory).
    cargo_dir: PathBuf,
    /// The vmharness workspace root: vm-configs (`VMHARNESS_ROOT` may move it).
    root: PathBuf,
    /// Where the VM tests' logs and `result.toml` files go.
    state_dir: PathBuf,
    /// The cargo target dir (nextest's JUnit).
    target_dir: PathBuf,
    env: Vec<(&'static str, String)>,
    steps: Vec<StepResult>,
    /// The frontend command hints name (`cargo xtask`).
    cli: String,
}

/// Runs the pipeline with the frontend's own steps; returns 0 when every step passed, else 1.
pub fn run(args: CiArgs, plan: &CiPlan) -> anyhow::Result<i32> {
    let settings = Settings::from_env()?;
    let cargo_dir = workspace_dir()?;
    let mut env = Vec::new();
    if let Some(arch) = args.arch {
        env.push((ARCH_ENV, arch.to_string()));
    }
    if let Some(accel) = args.accel {
        env.push((ACCEL_ENV, accel.to_string()));
    }
    let mut ci = Ci {
        github: std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true"),
        cargo_dir,
        root: settings.root.clone(),
        state_dir: settings.state_dir(),
        target_dir: settings.target_dir.clone(),
        env,
        steps: Vec::new(),
        cli: settings.artifacts.cli.clone(),
    };
    if !args.skip_gates {
        ci.cargo_step("fmt", &["fmt", "--all", "--", "--check"], None);
        ci.cargo_step(
            "clippy",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
            None,
        );
        ci.cargo_step(
            "doc",
            &["doc", "--no-deps", "--workspace"],
            Some(("RUSTDOCFLAGS", "-D warnings")),
        );
    }
    if args.arch.is_none() {
        let library = match &args.package {
            Some(package) => vec!["test", "--workspace", "--exclude", package.as_str()],
            None => vec!["test", "--workspace", "--lib", "--bins"],
        };
        ci.cargo_step("library tests", &library, None);
        for step in &plan.test_steps {
            let step_args: Vec<&str> = step.args.iter().map(String::as_str).collect();
            ci.cargo_step(&step.name, &step_args, None);
        }
    }
    let arch = args.arch.map(|a| a.to_string());
    let static_rows = ci.step("VM configs", |ci| Ok(ci.check_configs(arch.as_deref())));
    let rows = ci.vm_tests(&args, static_rows.unwrap_or_default());
    ci.report(&rows)?;
    Ok(ci.finish())
}

impl Ci {
    /// Runs one step between a header and a footer (a folded group on GitHub Actions).
    fn step<T>(
        &mut self,
        name: &str,
        body: impl FnOnce(&mut Ci) -> anyhow::Result<(bool, T)>,
    ) -> Option<T> {
        if self.github {
            println!("::group::{name}");
        }
        println!("==> {name}");
        let _ = std::io::stdout().flush();
        let started = Instant::now();
        let result = body(self);
        let elapsed = started.elapsed();
        let (ok, value) = match result {
            Ok((ok, value)) => (ok, Some(value)),
            Err(err) => {
                println!("error: {err:#}");
                (false, None)
            }
        };
        if self.github {
            println!("::endgroup::");
        }
        let verdict = if ok { "ok" } else { "FAILED" };
        println!("<== {name}: {verdict} in {:.1}s", elapsed.as_secs_f64());
        if self.github && !ok {
            println!(
                "::error title=ci step failed::{}",
                escape_data(&format!("step `{name}` failed"))
            );
        }
        let _ = std::io::stdout().flush();
        self.steps.push(StepResult {
            name: name.to_string(),
            ok,
            elapsed,
        });
        value
    }

    fn cargo(&self, args: &[&str], extra_env: Option<(&str, &str)>) -> Command {
        let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        command.args(args).current_dir(&self.cargo_dir);
        crate::nested_cargo::scrub_cargo_run_env(&mut command);
        command.envs(self.env.iter().map(|(k, v)| (*k, v.as_str())));
        if let Some((key, value)) = extra_env {
            command.env(key, value);
        }
        command
    }

    fn cargo_step(&mut self, name: &str, args: &[&str], extra_env: Option<(&str, &str)>) {
        let mut command = self.cargo(args, extra_env);
        self.step(name, |_| {
            println!("$ cargo {}", args.join(" "));
            let status = command
                .status()
                .with_context(|| format!("cannot run cargo {}", args.join(" ")))?;
            Ok((status.success(), ()))
        });
    }

    /// Loads every config (for `arch`), printing each; returns rows for the configs that will
    /// not report a result themselves: invalid ones and ignored ones.
    fn check_configs(&self, arch: Option<&str>) -> (bool, Vec<Row>) {
        let dir = self.root.join("vm-configs");
        let files = match vmharness::suite::config_files(&dir) {
            Ok(files) => files,
            Err(err) => {
                println!("cannot list {}: {err}", dir.display());
                return (false, Vec::new());
            }
        };
        let mut problems = Vec::new();
        let mut rows = Vec::new();
        for path in files {
            if arch.is_some_and(|arch| !vmharness::suite::arch_matches(&path, arch)) {
                continue;
            }
            match config::load(&path) {
                Ok(loaded) => match &loaded.config.ignore {
                    Some(reason) => {
                        println!("  ignored {} ({reason})", loaded.name);
                        rows.push(Row {
                            test: loaded.name.clone(),
                            arch: loaded.config.arch.to_string(),
                            outcome: Some(Label::Skipped),
                            detail: format!("ignored: {reason}"),
                            config: path.display().to_string(),
                            ..Row::dashes()
                        });
                    }
                    None => println!("  ok      {}", loaded.name),
                },
                Err(err) => {
                    println!("  INVALID {err}");
                    problems.push(problem(&path, &err));
                }
            }
        }
        if self.github {
            for problem in &problems {
                let mut properties =
                    format!("file={}", escape_property(&self.relative(&problem.path)));
                if let Some(line) = problem.line {
                    properties.push_str(&format!(",line={line}"));
                }
                if let Some(column) = problem.column {
                    properties.push_str(&format!(",col={column}"));
                }
                println!(
                    "::error {properties},title=invalid VM config::{}",
                    escape_data(&problem.message)
                );
            }
        }
        let ok = problems.is_empty();
        rows.extend(problems.into_iter().map(|p| Row {
            test: config::test_name(&p.path),
            outcome: None,
            detail: p.message,
            config: p.path.display().to_string(),
            ..Row::dashes()
        }));
        (ok, rows)
    }

    /// Runs the VM test suite and collects one row per test.
    fn vm_tests(&mut self, args: &CiArgs, static_rows: Vec<Row>) -> Vec<Row> {
        let logs = self.state_dir.join("logs");
        // Only this run's tests: a concurrent run for other configs keeps its results.
        let arch = args.arch.map(|a| a.to_string());
        let names = self.selected_tests(arch.as_deref());
        clear_results(&logs, &names);
        let mut test_args: Vec<&str> = if args.nextest {
            vec!["nextest", "run", "--profile", "ci"]
        } else {
            vec!["test"]
        };
        if let Some(package) = &args.package {
            test_args.extend(["-p", package.as_str()]);
        }
        if args.tests.is_empty() {
            test_args.push("--tests");
        }
        for test in &args.tests {
            test_args.extend(["--test", test.as_str()]);
        }
        let mut command = self.cargo(&test_args, None);
        let rows = self.step("VM tests", move |ci| {
            println!("$ cargo {}", test_args.join(" "));
            // Guest output is data: GitHub must not read `::add-mask::` or `::error` in it.
            let token = ci.github.then(stop_token).transpose()?;
            if let Some(token) = &token {
                println!("::stop-commands::{token}");
                let _ = std::io::stdout().flush();
            }
            let status = command.status().context("cannot run the VM tests");
            if let Some(token) = &token {
                println!("::{token}::");
            }
            let status = status?;
            let mut rows = read_results(&logs, &names);
            rows.extend(static_rows);
            rows.sort_by(|a, b| a.test.cmp(&b.test));
            let failed = rows.iter().any(Row::is_failure);
            if args.nextest {
                let junit = ci.target_dir.join("nextest/ci/junit.xml");
                println!("JUnit report: {}", junit.display());
            }
            println!("console logs: {}", logs.display());
            Ok((status.success() && !failed, rows))
        });
        rows.unwrap_or_default()
    }

    /// The trial names this run covers: a config's, or one per `[[case]]` (`config::case`).
    fn selected_tests(&self, arch: Option<&str>) -> Vec<String> {
        vmharness::suite::config_files(&self.root.join("vm-configs"))
            .unwrap_or_default()
            .iter()
            .filter(|path| arch.is_none_or(|arch| vmharness::suite::arch_matches(path, arch)))
            .flat_map(|path| vmharness::suite::trial_names(path))
            // A name that is not a directory (`..`) names no results: never touch those paths.
            .filter(|name| name.split("::").all(config::valid_test_name))
            .collect()
    }

    /// Prints the results, annotates failures and writes the GitHub step summary.
    fn report(&self, rows: &[Row]) -> anyhow::Result<()> {
        print!("\nVM tests:\n{}", table(rows));
        let skipped: Vec<&Row> = rows.iter().filter(|r| r.is_skip()).collect();
        if rows.is_empty() {
            println!("no VM test reported a result");
        } else if skipped.len() == rows.len() {
            let reasons: Vec<String> = skipped
                .iter()
                .map(|r| format!("{}: {}", r.test, r.detail))
                .collect();
            let message = format!(
                "all {} tests were ignored: {}",
                rows.len(),
                reasons.join("; ")
            );
            println!("{message}");
            if self.github {
                println!(
                    "::warning title=nothing was tested::{}",
                    escape_data(&message)
                );
            }
        }
        for line in moved_lines(rows) {
            println!("note: guest inputs moved: {line}");
            if self.github {
                println!("::warning title=guest inputs moved::{}", escape_data(&line));
            }
        }
        if self.github {
            for row in rows
                .iter()
                .filter(|r| r.outcome.is_some_and(Label::is_failure))
            {
                println!(
                    "::error file={},title={}::{}",
                    escape_property(&self.relative(Path::new(&row.config))),
                    escape_property(&format!("{} {}", row.test, row.label())),
                    escape_data(&row.detail)
                );
            }
            if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY") {
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .with_context(|| {
                        format!("opening GITHUB_STEP_SUMMARY {}", Path::new(&path).display())
                    })?;
                file.write_all(summary_markdown(&self.steps, rows, &self.cli).as_bytes())
                    .context("writing the step summary")?;
            }
        }
        Ok(())
    }

    fn finish(&self) -> i32 {
        println!("\nci steps:");
        for step in &self.steps {
            let verdict = if step.ok { "ok" } else { "FAILED" };
            println!(
                "  {:<14} {:<6} {:>7.1}s",
                step.name,
                verdict,
                step.elapsed.as_secs_f64()
            );
        }
        let failed: Vec<&str> = self
            .steps
            .iter()
            .filter(|s| !s.ok)
            .map(|s| s.name.as_str())
            .collect();
        if failed.is_empty() {
            println!("ci: all steps passed");
            0
        } else {
            println!("ci: FAILED steps: {}", failed.join(", "));
            1
        }
    }

    /// A path as GitHub wants it in annotations: relative to the checkout.
    fn relative(&self, path: &Path) -> String {
        let bases = [
            std::env::var_os("GITHUB_WORKSPACE").map(PathBuf::from),
            Some(self.root.clone()),
        ];
        bases
            .iter()
            .flatten()
            .find_map(|base| path.strip_prefix(base).ok())
            .unwrap_or(path)
            .display()
            .to_string()
    }
}

/// The cargo workspace around the current directory (`cargo locate-project --workspace`).
fn workspace_dir() -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(&cargo);
    command.args(["locate-project", "--workspace", "--message-format", "plain"]);
    crate::nested_cargo::scrub_cargo_run_env(&mut command);
    let output = command
        .output()
        .with_context(|| format!("running `{cargo} locate-project --workspace`"))?;
    anyhow::ensure!(
        output.status.success(),
        "expected a cargo workspace around {}, `cargo locate-project --workspace` said: {}",
        std::env::current_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_default(),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    let manifest = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    manifest
        .parent()
        .map(Path::to_path_buf)
        .with_context(|| format!("workspace manifest {} has no directory", manifest.display()))
}

fn problem(path: &Path, err: &ConfigError) -> ConfigProblem {
    match err.location() {
        Some(location) => ConfigProblem {
            path: location.path.clone(),
            line: location.line,
            column: location.column,
            message: err.to_string(),
        },
        None => ConfigProblem {
            path: path.to_path_buf(),
            line: None,
            column: None,
            message: err.to_string(),
        },
    }
}

/// Forgets the named tests' earlier runs (their `latest` links; the runs stay on disk).
fn clear_results(logs: &Path, names: &[String]) {
    for name in names {
        let _ = std::fs::remove_file(vmharness::run::logs::latest_dir(logs, name));
    }
}

fn read_results(logs: &Path, names: &[String]) -> Vec<Row> {
    let mut rows = Vec::new();
    for name in names {
        let path =
            vmharness::run::logs::latest_dir(logs, name).join(vmharness::suite::record::FILE_NAME);
        if !path.exists() {
            continue;
        }
        match ResultRecord::read(&path) {
            Ok(record) => rows.push(Row::of(record)),
            Err(err) => println!("warning: {}", crate::error_chain(&err)),
        }
    }
    rows
}

/// The `[[booted]]` entries of a result whose key is new, as one line each.
fn moved_inputs(record: &ResultRecord) -> Vec<String> {
    record
        .booted
        .iter()
        .filter(|b| b.new_key)
        .map(|b| {
            format!(
                "{} booted {} ({})",
                b.artifact,
                b.packages.join(", "),
                b.lock
            )
        })
        .collect()
}

/// The VM test table printed at the end: one aligned line per test.
fn table(rows: &[Row]) -> String {
    rows.iter()
        .map(|row| {
            format!(
                "  {:<11} {:<32} {:<8} {:<4} {:>9}  {}\n",
                row.label(),
                row.test,
                row.arch,
                row.accel,
                seconds(&row.elapsed_secs),
                row.log
            )
        })
        .collect()
}

/// The markdown appended to `$GITHUB_STEP_SUMMARY`.
fn summary_markdown(steps: &[StepResult], rows: &[Row], cli: &str) -> String {
    let mut out = String::from("## vmharness ci\n\n| step | result | time |\n|---|---|---|\n");
    for step in steps {
        let verdict = if step.ok { "ok" } else { "**FAILED**" };
        out.push_str(&format!(
            "| {} | {verdict} | {:.1}s |\n",
            step.name,
            step.elapsed.as_secs_f64()
        ));
    }
    out.push_str(
        "\n| test | arch | accel | outcome | time | why | log |\n|---|---|---|---|---|---|---|\n",
    );
    for row in rows {
        let time = seconds(&row.elapsed_secs);
        let why = match row.outcome {
            Some(Label::Pass) => String::new(),
            _ => cell(&shorten(&row.detail, 160)),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {time} | {why} | `{}` |\n",
            cell(&row.test),
            cell(&row.arch),
            cell(&row.accel),
            cell(&row.label()),
            cell(&row.log)
        ));
    }
    let failed: Vec<String> = rows
        .iter()
        .flat_map(|r| {
            r.failed_sub_results
                .iter()
                .map(move |f| format!("{}: {f}", r.test))
        })
        .collect();
    if !failed.is_empty() {
        out.push_str("\n### Guest-reported sub-results that failed\n\n");
        for line in failed {
            out.push_str(&format!("- {}\n", cell(&line)));
        }
    }
    let recorded: Vec<&Row> = rows.iter().filter(|r| !r.values.is_empty()).collect();
    if !recorded.is_empty() {
        out.push_str("\n### Recorded values\n\n| test | name | value |\n|---|---|---|\n");
        for row in recorded {
            for (name, value) in &row.values {
                out.push_str(&format!(
                    "| {} | {} | {} |\n",
                    cell(&row.test),
                    cell(name),
                    cell(value)
                ));
            }
        }
    }
    let moved: Vec<String> = moved_lines(rows);
    if !moved.is_empty() {
        out.push_str(&format!(
            "\n### Guest inputs that moved (not failures; `{cli} guests lock` records them)\n\n"
        ));
        for line in moved {
            out.push_str(&format!("- {}\n", cell(&line)));
        }
    }
    out.push('\n');
    out
}

/// Every distinct moved-input line of the results.
fn moved_lines(rows: &[Row]) -> Vec<String> {
    let mut lines: Vec<String> = rows.iter().flat_map(|r| r.moved.clone()).collect();
    lines.sort();
    lines.dedup();
    lines
}

/// `1.234` → `1.234s`; `-` stays.
fn seconds(value: &str) -> String {
    if value == "-" {
        value.to_string()
    } else {
        format!("{value}s")
    }
}

/// At most `max` characters, with `…` when cut.
fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// A token nobody can guess, for `::stop-commands::`.
fn stop_token() -> anyhow::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut bytes))
        .context("reading /dev/urandom for a stop-commands token")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Escapes an annotation message (GitHub's workflow-command data encoding).
fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes an annotation property value (file, title).
fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moved_guest_inputs_are_read_from_result_toml() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("result.toml");
        std::fs::write(
            &path,
            r#"
schema = 2
test = "linux-aarch64"
arch = "aarch64"
outcome = "PASS"
detail = "all expectations met"
elapsed_secs = 1.5
log = "/l/console.log"
config = "/c/linux-aarch64.toml"
[[booted]]
artifact = "linux-aarch64"
key = "abc"
lock = "new key, inputs moved: package kernel: a 1 -> b 2"
new_key = true
packages = ["b 2", "busybox-static 1"]
[[booted]]
artifact = "selftest-aarch64"
key = "def"
lock = "locked"
new_key = false
packages = []
"#,
        )
        .unwrap();
        let record = ResultRecord::read(&path).unwrap();
        assert_eq!(
            moved_inputs(&record),
            vec!["linux-aarch64 booted b 2, busybox-static 1 (new key, inputs moved: package kernel: a 1 -> b 2)"]
        );
        let summary = summary_markdown(&[], &[Row::of(record)], "cargo xtask");
        assert!(summary.contains("### Guest inputs that moved"), "{summary}");
        assert!(summary.contains("- linux-aarch64 booted b 2"), "{summary}");
    }

    /// The end-of-run table and the step summary, pinned: one row of every kind.
    #[test]
    fn summary_reads_well() {
        let row = |test: &str, outcome: Option<Label>, detail: &str| Row {
            test: test.into(),
            arch: "aarch64".into(),
            accel: "tcg".into(),
            outcome,
            detail: detail.into(),
            elapsed_secs: "1.250".into(),
            log: format!("target/vmharness/logs/{test}/console.log"),
            config: format!("vm-configs/{test}.toml"),
            moved: Vec::new(),
            failed_sub_results: Vec::new(),
            values: Default::default(),
        };
        let mut moved = row("linux-aarch64", Some(Label::Pass), "all expectations met");
        moved.moved =
            vec!["linux-aarch64 booted linux-image-6.1.0-57-arm64 6.1.192-3 (new key)".into()];
        let mut usertests = row(
            "nimbos-standalone-aarch64",
            Some(Label::Fail),
            "1 of 13 sub-results failed",
        );
        usertests.failed_sub_results = vec!["forktest (fail): exit code 1, expected 0".into()];
        usertests.values = [("boot_ms".to_string(), "1234".to_string())].into();
        let rows = vec![
            moved,
            usertests,
            row(
                "panic",
                Some(Label::Fail),
                "panic pattern /panicked at/ matched",
            ),
            row("slow", Some(Label::Timeout), "total timeout of 3.000s"),
            row("no-qemu", Some(Label::Infra), "QEMU binary `x` not found"),
            row(
                "nimbos-aarch64",
                Some(Label::Unavailable),
                "-kernel: not cached",
            ),
            Row {
                accel: "-".into(),
                elapsed_secs: "-".into(),
                log: "-".into(),
                ..row("later", Some(Label::Skipped), "ignored: waiting")
            },
            Row {
                accel: "-".into(),
                arch: "-".into(),
                elapsed_secs: "-".into(),
                log: "-".into(),
                ..row(
                    "broken",
                    None,
                    "vm-configs/broken.toml:3:1: unknown field `baner`",
                )
            },
        ];
        let steps = [
            StepResult {
                name: "fmt".into(),
                ok: true,
                elapsed: Duration::from_millis(1200),
            },
            StepResult {
                name: "VM tests".into(),
                ok: false,
                elapsed: Duration::from_secs(95),
            },
        ];
        insta::assert_snapshot!(format!(
            "{}\n{}",
            table(&rows),
            summary_markdown(&steps, &rows, "cargo xtask")
        ));
    }

    #[test]
    fn annotations_escape_what_github_requires() {
        assert_eq!(escape_data("50% done\nnext"), "50%25 done%0Anext");
        assert_eq!(escape_property("a:b,c"), "a%3Ab%2Cc");
    }
}
