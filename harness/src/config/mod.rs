//! Loading VM configs: TOML → [`VmConfig`], with errors that name file:line:column and suggest
//! the key the author probably meant.

mod locate;
mod schema;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::regular_file::{self, FileKind};

pub use schema::{
    AccelChoice, CasePatterns, CaseSpec, ConsoleSection, CpuSince, LoaderSpec, Pattern,
    QemuSection, ReadySection, ResultsSection, RetrySection, Step, TimeoutSection, Unfinished,
    VmConfig, MAX_DURATION, MAX_RETRIES,
};

/// A config file that failed to load.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read VM config {}: {source}", path.display())]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is malformed or does not fit the schema.
    #[error("{location}: {message}{}", suggestion.as_ref().map(|s| format!("\n  help: did you mean `{s}`?")).unwrap_or_default())]
    Invalid {
        /// Where in which file.
        location: Location,
        /// What is wrong.
        message: String,
        /// A close valid key or value, when the mistake looks like a typo.
        suggestion: Option<String>,
    },
    /// The path is not a regular file (a FIFO, a directory, a device, a socket).
    #[error("{}: {kind}, not a regular file", path.display())]
    NotRegular {
        /// The config file.
        path: PathBuf,
        /// What it is.
        kind: FileKind,
    },
    /// The file is larger than any config needs to be.
    #[error("{}: {size} bytes, more than the {MAX_CONFIG_BYTES} a VM config may have", path.display())]
    TooLarge {
        /// The config file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// The file name does not make a usable test name.
    #[error("{}: `{name}` cannot be a test name (use letters, digits, `-`, `_`, `.` and `+`, and do not start with `.`)", escape_controls(&path.display().to_string()))]
    BadName {
        /// The config file.
        path: PathBuf,
        /// The name its stem gives.
        name: String,
    },
    /// Several mistakes in one file, in the order they are written (every unknown key and
    /// bad value serde meets; see `config::parse`).
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Several(Vec<ConfigError>),
    /// A `--set key=value` override could not be applied.
    #[error("invalid override `{text}`: {reason}")]
    Override {
        /// The override as given.
        text: String,
        /// Why it was rejected.
        reason: String,
    },
}

impl ConfigError {
    /// Where the (first) mistake is written, when it has a place in the file.
    pub fn location(&self) -> Option<&Location> {
        match self {
            ConfigError::Invalid { location, .. } => Some(location),
            ConfigError::Several(errors) => errors.first()?.location(),
            _ => None,
        }
    }
}

/// A position in a config file (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The config file.
    pub path: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, ":{line}:{column}")?;
        }
        Ok(())
    }
}

/// A config file loaded and validated, with where it came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The test name: the file stem.
    pub name: String,
    /// The config file.
    pub path: PathBuf,
    /// The parsed config.
    pub config: VmConfig,
    /// The TOML text it was parsed from (after `--set` overrides), for locating keys.
    pub source: String,
}

impl LoadedConfig {
    /// The directory relative paths in this config are resolved against.
    pub fn base_dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// Where a key (`["qemu", "cpu"]`) is written, at its value; the file alone if unset.
    pub(crate) fn locate(&self, keys: &[&str]) -> Location {
        locate_in(&self.path, &self.source, keys)
    }
}

fn locate_in(path: &Path, text: &str, keys: &[&str]) -> Location {
    let (line, column) = match locate::span(text, keys) {
        Some(span) => {
            let (line, column) = line_column(text, span.start);
            (Some(line), Some(column))
        }
        None => (None, None),
    };
    Location {
        path: path.to_path_buf(),
        line,
        column,
    }
}

/// The test name for a config path: its file stem, with control characters escaped (`\n`,
/// `\u{1b}`) so that a name [`valid_test_name`] refuses still lists on one line.
pub fn test_name(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    escape_controls(&stem)
}

/// `text` with each control character escaped as Rust writes it (`\n`, `\t`, `\u{1b}`).
pub(crate) fn escape_controls(text: &str) -> String {
    text.chars()
        .map(|c| match c.is_control() {
            true => c.escape_default().to_string(),
            false => c.to_string(),
        })
        .collect()
}

/// Loads and validates one VM config file.
pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
    load_with_overrides(path, &[])
}

/// Whether `name` is usable as a test name, and so as a directory name under `logs/`: not
/// empty, not starting with `.` (so never `.` or `..`), and only letters, digits, `-`, `_`,
/// `.` and `+`.
pub fn valid_test_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'))
}

/// Loads a VM config, first applying `key=value` overrides (dotted keys, TOML values; a value
/// that is not valid TOML is taken as a string), as the `--set` option of `cargo xtask qemu` does.
pub fn load_with_overrides(path: &Path, overrides: &[String]) -> Result<LoadedConfig, ConfigError> {
    let name = test_name(path);
    if !valid_test_name(&name) {
        return Err(ConfigError::BadName {
            path: path.to_path_buf(),
            name,
        });
    }
    let text = read_source(path)?;
    let (config, source) = if overrides.is_empty() {
        (parse(path, &text)?, text)
    } else {
        let mut table: toml::Table =
            toml::from_str(&text).map_err(|err| invalid(path, &text, &err))?;
        for text in overrides {
            apply_override(&mut table, text)?;
        }
        let merged = toml::to_string(&table).map_err(|err| ConfigError::Override {
            text: overrides.join(" "),
            reason: err.to_string(),
        })?;
        (parse(path, &merged)?, merged)
    };
    validate(path, &source, &config)?;
    Ok(LoadedConfig {
        name,
        path: path.to_path_buf(),
        config,
        source,
    })
}

/// The most a config file may hold (4 MiB; the largest in-tree config is a few KiB).
pub(crate) const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// A config file's text: only a regular file is read (a FIFO, a device or a directory is a
/// [`ConfigError::NotRegular`], found without blocking), and at most [`MAX_CONFIG_BYTES`].
pub(crate) fn read_source(path: &Path) -> Result<String, ConfigError> {
    use std::io::Read;
    let read_error = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let (file, _) = regular_file::open_regular(path).map_err(|err| match err {
        regular_file::OpenError::NotRegular(kind) => ConfigError::NotRegular {
            path: path.to_path_buf(),
            kind,
        },
        regular_file::OpenError::Io(source) => read_error(source),
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge {
            path: path.to_path_buf(),
            size: std::fs::metadata(path).map_or(bytes.len() as u64, |m| m.len()),
        });
    }
    String::from_utf8(bytes).map_err(|err| not_utf8(path, &err))
}

/// Where the first byte that is not UTF-8 is (line and column, in characters before it).
fn not_utf8(path: &Path, err: &std::string::FromUtf8Error) -> ConfigError {
    let valid = err.utf8_error().valid_up_to();
    let bytes = err.as_bytes();
    let before = String::from_utf8_lossy(&bytes[..valid]);
    let (line, column) = line_column(&before, before.len());
    let byte = bytes.get(valid).copied().unwrap_or_default();
    ConfigError::Invalid {
        location: Location {
            path: path.to_path_buf(),
            line: Some(line),
            column: Some(column),
        },
        message: format!("byte {byte:#04x} is not UTF-8 (a VM config is UTF-8 text)"),
        suggestion: None,
    }
}

/// Parses config text; `path` is only used in error messages.
///
/// Every mistake serde meets is reported, each located, in one [`ConfigError::Several`]:
/// after each one the text is parsed again without the entry at fault (an unknown key, or
/// the key holding a bad value), until it parses or fails where no entry can be taken out.
/// A missing field after a bad value was taken out is that removal's doing and is dropped.
pub(crate) fn parse(path: &Path, text: &str) -> Result<VmConfig, ConfigError> {
    let mut errors = Vec::new();
    let mut rest = text.to_string();
    let mut removed_a_value = false;
    while errors.len() < MAX_REPORTED_ERRORS {
        let err = match toml::from_str::<VmConfig>(&rest) {
            Ok(config) if errors.is_empty() => return Ok(config),
            Ok(_) => break,
            Err(err) => err,
        };
        let unknown = err.message().starts_with("unknown field `");
        if removed_a_value && err.message().starts_with("missing field `") {
            break;
        }
        // Located in the file as written, by the entry's path (the rest is written anew).
        let at = err
            .span()
            .and_then(|span| locate::path_at(&rest, span.start));
        let mut error = invalid(path, &rest, &err);
        if let ConfigError::Invalid { location, .. } = &mut error {
            let span = at
                .as_ref()
                .and_then(|(entry, part)| locate::part_span(text, entry, *part));
            let (line, column) = match span {
                Some(span) => line_column(text, span.start),
                None => (0, 0),
            };
            location.line = (line > 0).then_some(line);
            location.column = (column > 0).then_some(column);
        }
        errors.push(error);
        // The entry to take out: the key, or the key whose value (or element) is at fault.
        let Some((mut entry, _)) = at else {
            break;
        };
        while matches!(entry.last(), Some(locate::Segment::Index(_))) {
            entry.pop();
        }
        match locate::without_key(&rest, &entry) {
            Some(without) => rest = without,
            None => break,
        }
        removed_a_value |= !unknown;
    }
    match errors.len() {
        1 => Err(errors.remove(0)),
        _ => Err(ConfigError::Several(errors)),
    }
}

/// The most mistakes reported for one config file.
const MAX_REPORTED_ERRORS: usize = 50;

fn invalid(path: &Path, text: &str, err: &toml::de::Error) -> ConfigError {
    let (line, column) = match err.span() {
        Some(span) => {
            let (line, column) = line_column(text, span.start);
            (Some(line), Some(column))
        }
        None => (None, None),
    };
    let message = err.message().trim().to_string();
    ConfigError::Invalid {
        location: Location {
            path: path.to_path_buf(),
            line,
            column,
        },
        suggestion: suggest(&message),
        message,
    }
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |tail| tail.chars().count())
        + 1;
    (line, column)
}

/// For serde's "unknown field `x`, expected one of `a`, `b`" (or "unknown variant"), the closest
/// expected name.
fn suggest(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("unknown variant `"))?;
    let (given, expected) = rest.split_once('`')?;
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|candidate| (strsim::damerau_levenshtein(given, candidate), candidate))
        .filter(|(distance, candidate)| *distance <= (candidate.len() / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate.to_string())
}

/// Checks that span keys (serde checked each value on its own, with its location).
fn validate(path: &Path, text: &str, config: &VmConfig) -> Result<(), ConfigError> {
    validate_cases(path, text, config)?;
    if let Some(cases) = config.results.as_ref().and_then(|r| r.cases.as_ref()) {
        let groups = |p: &Pattern| -> Vec<String> {
            p.0.capture_names().flatten().map(str::to_string).collect()
        };
        let end = groups(&cases.end);
        let result_group = end.iter().any(|g| g == "status" || g == "code");
        let named = end.iter().any(|g| g == "name") || cases.start.is_some();
        let start_named = cases
            .start
            .as_ref()
            .is_none_or(|s| groups(s).iter().any(|g| g == "name"));
        let problem = match (result_group, named, start_named) {
            (false, _, _) => Some(("end", "needs a group `(?P<status>...)` or `(?P<code>...)`")),
            (_, false, _) => Some((
                "end",
                "needs a group `(?P<name>...)` (or a `start` pattern that has one)",
            )),
            (_, _, false) => Some(("start", "needs a group `(?P<name>...)`")),
            _ => None,
        };
        if let Some((key, message)) = problem {
            return Err(ConfigError::Invalid {
                location: locate_in(path, text, &["results", "cases", key]),
                message: format!("`results.cases.{key}` {message}"),
                suggestion: None,
            });
        }
    }
    if config.accel == AccelChoice::Tcg && config.qemu.cpu.as_deref() == Some(crate::arch::HOST_CPU)
    {
        return Err(ConfigError::Invalid {
            location: locate_in(path, text, &["qemu", "cpu"]),
            message: "`qemu.cpu = \"host\"` needs KVM, but `accel = \"tcg\"`: drop `cpu` or use accel \"auto\"/\"kvm\"".into(),
            suggestion: None,
        });
    }
    Ok(())
}

/// `[[case]]` needs `[ready]`; names are unique test names; each case expects something;
/// the probe carries its token and the answer is a regex.
fn validate_cases(path: &Path, text: &str, config: &VmConfig) -> Result<(), ConfigError> {
    let fail = |keys: &[&str], message: String| ConfigError::Invalid {
        location: locate_in(path, text, keys),
        message,
        suggestion: None,
    };
    if let Some(ready) = &config.ready {
        if !ready.probe.contains("{token}") {
            return Err(fail(
                &["ready", "probe"],
                "`ready.probe` must contain `{token}`: its answer proves this restore answers"
                    .into(),
            ));
        }
        if let Err(err) = regex::Regex::new(&ready.answer.replace("{token}", "0")) {
            return Err(fail(
                &["ready", "answer"],
                format!("`ready.answer`: invalid regex: {err}"),
            ));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for (index, case) in config.cases.iter().enumerate() {
        let problem = if config.ready.is_none() {
            Some("`[[case]]` needs a `[ready]` section: the point where cases start".to_string())
        } else if !valid_test_name(&case.name) {
            Some(format!(
                "case name `{}` may only have letters, digits, `-`, `_`, `.` and `+`",
                escape_controls(&case.name)
            ))
        } else if !seen.insert(case.name.as_str()) {
            Some(format!("case `{}` is defined twice", case.name))
        } else if !case
            .steps
            .iter()
            .any(|step| matches!(step, Step::Expect { .. } | Step::ExpectNot { .. }))
        {
            Some(format!(
                "case `{}` has no `expect` or `expect_not` step, so it could not fail",
                case.name
            ))
        } else {
            None
        };
        if let Some(message) = problem {
            return Err(fail(&["case", &index.to_string(), "name"], message));
        }
    }
    Ok(())
}

fn apply_override(table: &mut toml::Table, text: &str) -> Result<(), ConfigError> {
    let fail = |reason: &str| ConfigError::Override {
        text: text.to_string(),
        reason: reason.to_string(),
    };
    let (key, raw_value) = text
        .split_once('=')
        .ok_or_else(|| fail("expected key=value"))?;
    let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {raw_value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw_value.to_string()));
    let parts: Vec<&str> = key.trim().split('.').collect();
    let (last, parents) = parts.split_last().ok_or_else(|| fail("empty key"))?;
    let mut current = table;
    for part in parents {
        let entry = current
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry
            .as_table_mut()
            .ok_or_else(|| fail(&format!("`{part}` is not a table")))?;
    }
    current.insert(last.to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(text: &str) -> String {
        parse(Path::new("vm-configs/t.toml"), text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn minimal_config_parses_with_defaults() {
        let config = parse(Path::new("t.toml"), "arch = \"aarch64\"\n").unwrap();
        assert_eq!(config.accel, AccelChoice::Auto);
        assert_eq!(config.timeouts.no_output.as_secs(), 60);
        assert_eq!(config.qemu.exit_device, None);
    }

    #[test]
    fn misspelled_key_names_location_and_suggestion() {
        let err = parse_err("arch = \"aarch64\"\n[console]\nbaner = [\"x\"]\n");
        assert!(err.starts_with("vm-configs/t.toml:3:1:"), "{err}");
        assert!(err.contains("unknown field `baner`"), "{err}");
        assert!(err.contains("did you mean `banner`?"), "{err}");
    }

    #[test]
    fn misspelled_variant_is_suggested() {
        let err = parse_err("arch = \"aarch64\"\naccel = \"kmv\"\n");
        assert!(err.contains("did you mean `kvm`?"), "{err}");
        assert!(err.contains(":2:9:"), "{err}");
    }

    #[test]
    fn bad_regex_and_duration_are_located() {
        let err = parse_err("arch = \"x86_64\"\n[console]\nbanner = [\"ok\", \"(unclosed\"]\n");
        assert!(
            err.contains(":3:10:") && err.contains("invalid regex"),
            "{err}"
        );
        let err = parse_err("arch = \"x86_64\"\n[timeouts]\ntotal = \"3 parsecs\"\n");
        assert!(
            err.contains(":3:9:") && err.contains("invalid duration"),
            "{err}"
        );
    }

    /// Every huge, non-finite or negative duration is a located load error (it used to panic
    /// while listing, taking every other trial down, or overflow an Instant at run time).
    #[test]
    fn huge_and_non_finite_durations_are_rejected_with_their_location() {
        for value in [
            "1e20",
            "1.8e19",
            "1e300",
            "inf",
            "-inf",
            "nan",
            "-1",
            "31536001",
            "\"366 days\"",
            "\"1000000000 years\"",
            "\"99999999999999999999s\"",
        ] {
            for key in ["total", "step", "no_output"] {
                let err = parse_err(&format!("arch = \"x86_64\"\n[timeouts]\n{key} = {value}\n"));
                assert!(
                    err.starts_with("vm-configs/t.toml:3:"),
                    "{key} = {value}: {err}"
                );
            }
            let err = parse_err(&format!(
                "arch = \"x86_64\"\n[[console.steps]]\nexpect = \"a\"\ntimeout = {value}\n"
            ));
            assert!(
                err.starts_with("vm-configs/t.toml:"),
                "timeout = {value}: {err}"
            );
        }
        for value in ["1e300", "inf", "nan", "0", "-1", "1e7"] {
            let err = parse_err(&format!(
                "arch = \"x86_64\"\n[timeouts]\ntcg_scale = {value}\n"
            ));
            assert!(
                err.starts_with("vm-configs/t.toml:3:13:"),
                "tcg_scale = {value}: {err}"
            );
        }
        let ok = parse(
            Path::new("t"),
            "arch = \"x86_64\"\n[timeouts]\ntotal = \"365 days\"\nstep = 0\n",
        );
        assert!(ok.is_ok(), "{ok:?}");
        let err =
            parse_err("arch = \"x86_64\"\n[[console.steps]]\nexpect_not = \"a\"\ntimeout = 0\n");
        assert!(err.contains("watch forever"), "{err}");
    }

    #[test]
    fn step_needs_exactly_one_action() {
        let err = parse_err("arch = \"x86_64\"\n[[console.steps]]\nexpect = \"a\"\nsend = \"b\"\n");
        assert!(err.contains("exactly one of"), "{err}");
        let ok = parse(
            Path::new("t"),
            "arch = \"x86_64\"\n[[console.steps]]\nsend_line = \"hi\"\n[[console.steps]]\nexpect = \"hi\"\ntimeout = 2\n",
        )
        .unwrap();
        assert!(matches!(ok.console.steps[0], Step::Send { line: true, .. }));
        assert!(
            matches!(ok.console.steps[1], Step::Expect { timeout: Some(t), .. } if t.as_secs() == 2)
        );
    }

    /// What a user reads for each kind of config mistake, pinned: a change is a reviewed diff.
    #[test]
    #[cfg(feature = "artifacts")] // it names `artifact:` references
    fn config_errors_read_well() {
        let cases = [
            (
                "unknown key",
                "arch = \"aarch64\"\n[console]\nbaner = [\"x\"]\n",
            ),
            ("wrong type", "arch = \"x86_64\"\n[qemu]\nsmp = \"two\"\n"),
            (
                "bad regex",
                "arch = \"x86_64\"\n[console]\nsuccess = \"(unclosed\"\n",
            ),
            (
                "bad duration",
                "arch = \"x86_64\"\n[timeouts]\ntotal = \"3 parsecs\"\n",
            ),
            (
                "bad reference",
                "arch = \"x86_64\"\n[qemu]\nkernel = \"artifact:linux\"\n",
            ),
            (
                "bad memory",
                "arch = \"x86_64\"\n[qemu]\nmemory = \"lots\"\n",
            ),
            ("zero cpus", "arch = \"x86_64\"\n[qemu]\nsmp = 0\n"),
            (
                "bad scale",
                "arch = \"x86_64\"\n[timeouts]\ntcg_scale = -2.0\n",
            ),
            ("unknown arch", "arch = \"mips\"\n"),
            (
                "host cpu under tcg",
                "arch = \"x86_64\"\naccel = \"tcg\"\n[qemu]\ncpu = \"host\"\n",
            ),
            (
                "case without ready",
                "arch = \"x86_64\"\n[[case]]\nname = \"a\"\nsteps = [{ expect = \"x\" }]\n",
            ),
            (
                "case defined twice",
                "arch = \"x86_64\"\n[ready]\nexpect = \"# \"\n[[case]]\nname = \"a\"\nsteps = [{ expect = \"x\" }]\n[[case]]\nname = \"a\"\nsteps = [{ expect = \"y\" }]\n",
            ),
            (
                "case that cannot fail",
                "arch = \"x86_64\"\n[ready]\nexpect = \"# \"\n[[case]]\nname = \"a\"\nsteps = [{ send_line = \"ls\" }]\n",
            ),
            (
                "case name with a slash",
                "arch = \"x86_64\"\n[ready]\nexpect = \"# \"\n[[case]]\nname = \"a/b\"\nsteps = [{ expect = \"x\" }]\n",
            ),
            (
                "probe without a token",
                "arch = \"x86_64\"\n[ready]\nexpect = \"# \"\nprobe = \"echo hi\"\n",
            ),
            (
                "several unknown keys",
                "arch = \"x86_64\"\nacel = \"tcg\"\ntimeouts.totl = 5\n[qemu]\nkernal = \"k.elf\"\nsmp = 2\n[console]\nbaner = [\"x\"]\nsteps = [{ expect = \"a\" }, { expect = \"b\", tiemout = 1 }]\n[[console.step]]\nexpect = \"c\"\n[disk.entrys]\ndest = \"/a\"\n",
            ),
            (
                "unknown keys, then a bad value",
                "arch = \"x86_64\"\n[qemu]\nkernal = \"k.elf\"\nsmp = \"two\"\n[console]\nbaner = [\"x\"]\n",
            ),
            (
                "a bad arch and an unknown key",
                "arch = \"mips\"\n[qemu]\nkernal = \"k.elf\"\n",
            ),
            (
                "no arch and an unknown key",
                "[qemu]\nkernal = \"k.elf\"\n",
            ),
            (
                "misspelled ready key",
                "arch = \"x86_64\"\n[ready]\nexpect = \"# \"\nprobes = \"{token}\"\n",
            ),
        ];
        // Bytes that are no UTF-8 (a Latin-1 `é`, a stray continuation byte).
        let bytes: [(&str, &[u8]); 2] = [
            (
                "invalid UTF-8",
                b"arch = \"x86_64\"\n[qemu]\nappend = \"caf\xe9\"\n",
            ),
            (
                "invalid UTF-8 after a multi-byte character",
                b"arch = \"x86_64\"\ndescription = \"\xc3\xa9\xc3\xa9\x80\"\n",
            ),
        ];
        let dir = tempfile::tempdir().unwrap();
        let mut out = String::new();
        let cases = cases.map(|(name, text)| (name, text.as_bytes()));
        for (name, text) in cases.into_iter().chain(bytes) {
            let path = dir.path().join("t.toml");
            std::fs::write(&path, text).unwrap();
            let err = load(&path).unwrap_err().to_string();
            let err = err.replace(&dir.path().display().to_string(), "vm-configs");
            let text = String::from_utf8_lossy(text);
            out.push_str(&format!("--- {name}\n{text}=> {err}\n\n"));
        }
        insta::assert_snapshot!(out);
    }

    /// `...toml` used to give the test name `..`, whose logs landed above `logs/`.
    #[test]
    fn names_that_are_not_a_directory_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        for file in [
            "...toml",
            "..toml",
            ".toml",
            "a b.toml",
            "x\\y.toml",
            "é.toml",
        ] {
            let path = dir.path().join(file);
            std::fs::write(&path, "arch = \"x86_64\"\n").unwrap();
            let err = load(&path).unwrap_err();
            assert!(matches!(err, ConfigError::BadName { .. }), "{file}: {err}");
        }
        for good in ["linux-aarch64", "a.b", "c++", "v0.7_x"] {
            assert!(valid_test_name(good), "{good}");
        }
    }

    #[test]
    fn overrides_apply_dotted_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.toml");
        std::fs::write(&path, "arch = \"x86_64\"\n").unwrap();
        let loaded =
            load_with_overrides(&path, &["qemu.memory=1G".into(), "qemu.smp=2".into()]).unwrap();
        assert_eq!(loaded.config.qemu.memory.as_deref(), Some("1G"));
        assert_eq!(loaded.config.qemu.smp, Some(2));
        assert_eq!(loaded.name, "x");
    }
}
