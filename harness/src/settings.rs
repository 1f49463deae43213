//! [`Settings`]: the one place vmharness reads its environment. Everything else receives the
//! values; a frontend can also build settings explicitly ([`Settings::defaults`]).
//!
//! | variable | field | meaning |
//! |---|---|---|
//! | `VMHARNESS_ROOT` | `root` | the workspace (holds `vm-configs/`, `guests/`); default: the nearest ancestor holding `vm-configs/` of `CARGO_MANIFEST_DIR`, of the running program, or of the current directory |
//! | `CARGO_TARGET_DIR` | `target_dir` | where logs, caches and temp dirs live (`<target>/vmharness`); default: the target dir the running program was built into, else `<root>/target` |
//! | `VMHARNESS_CACHE` | `artifacts.cache_dir` | the artifact cache |
//! | `VMHARNESS_ACCEL` | `accel` | `auto`, `kvm` or `tcg` for every config |
//! | `VMHARNESS_ARCH` | `arch` | only configs for this arch become trials |
//! | `VMHARNESS_TIMEOUT_SCALE` | `timeout_scale` | multiplies every deadline (a positive number) |
//! | `VMHARNESS_INFRA_RETRIES` | `infra_retries` | retries of an infrastructure failure (default 1, at most 10) |
//! | `VMHARNESS_KVM_PROBE_TIMEOUT` | `kvm_probe_timeout` | seconds the KVM probe guest may take (default 10) |
//! | `VMHARNESS_REMOTE` | `remote` | run QEMU on `user@host[:port]` over ssh |
//! | `VMHARNESS_REMOTE_IDENTITY` | `remote.identity` | ssh identity file |
//! | `VMHARNESS_REMOTE_SSH_OPTIONS` | `remote.ssh_options` | extra `ssh -o` options, shell words |
//! | `VMHARNESS_REQUIRE_ARTIFACTS` | `require_artifacts` | `1`: an unavailable input fails instead of skipping |
//! | `VMHARNESS_OFFLINE` | `artifacts.network` | `1`: never download |
//! | `VMHARNESS_LOCKED`, `CI` | `artifacts.lock_mode` | `strict`; `1` or `CI=true`: locked; otherwise first use records a missing entry in `guests.lock` |
//! | `VMHARNESS_LOCK_FIRST_USE` | `artifacts.lock_mode` | `0`: outside CI an unpinned artifact is used with a warning, `guests.lock` is never written (default `1`) |
//! | `VMHARNESS_ARTIFACT_MIRROR` | `artifacts.mirror` | download URL prefix |
//! | `VMHARNESS_DEBIAN_MIRROR`, `VMHARNESS_DEBIAN_SECURITY_MIRROR` | `artifacts.debian` | Debian archive mirrors |
//! | `VMHARNESS_APT_MAX_AGE` | `artifacts.debian.max_age` | refresh package lists older than this (`1h`) |
//! | `VMHARNESS_DOWNLOAD_TIMEOUT` | `artifacts.download.deadline` | one download's deadline (`20m`) |
//! | `VMHARNESS_DOWNLOAD_MAX_BYTES` | `artifacts.download.max_bytes` | one download's size cap |
//! | `SOURCE_DATE_EPOCH` | `source_date_epoch` | timestamp of files on built disks |
//! | `VMHARNESS_CONSOLE_LOG_LIMIT` | `console_log_limit` | cap of one `console.log` (`64M`; head and tail kept) |
//! | `VMHARNESS_SAVED_STATES` | `saved_states`, `state_method` | `auto` (default): `[[case]]`s start from a saved state where that is known to work, saved the best way the QEMU version offers; `off`: every case boots cold; `exec`, `file`, `mapped-ram`, `template`: that way (to compare them) |
//! | `VMHARNESS_SPARE_QEMU` | `spare_qemu` | `on` (default): where a suite runs cases one at a time and a CPU is free, the next case's QEMU starts while a case runs; `off`: every case starts its own |
//! | `VMHARNESS_CLI` | `artifacts.cli` | the command hints name, declared by the frontend (`cargo xtask`, `vmharness`; default `cargo vmharness`) |
//! | `NEXTEST`, `NEXTEST_RUN_ID` | `nextest` | running under nextest (ignores are listed, not run) |
//!
//! `env:VAR` references in configs read `VAR` from the snapshot taken here ([`Settings::var`]).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::arch::AccelChoice;
use crate::arch::Arch;
#[cfg(feature = "artifacts")]
use crate::artifact::{LockMode, Network, ResolveOptions};

/// The variable that forces an accelerator for every config.
pub const ACCEL_ENV: &str = "VMHARNESS_ACCEL";
/// The variable through which a frontend declares the command the user runs it with
/// (`cargo xtask`, `vmharness`, `cargo vmharness`), so that hints name that command; child
/// processes (`cargo test` under the frontend) inherit it.
pub const CLI_ENV: &str = "VMHARNESS_CLI";
/// The command hints name when no frontend declared one ([`CLI_ENV`] unset): a test binary run
/// by plain `cargo test`.
pub const DEFAULT_CLI: &str = "cargo vmharness";
/// The variable that turns recording artifacts in `guests.lock` on first use off (`0`).
#[cfg(feature = "artifacts")]
pub(crate) const FIRST_USE_ENV: &str = "VMHARNESS_LOCK_FIRST_USE";
/// The variable that keeps only one arch's configs.
pub const ARCH_ENV: &str = "VMHARNESS_ARCH";
/// Environment variable: the download mirror prefix (see
/// [`ResolveOptions::mirror`](crate::artifact::ResolveOptions::mirror)).
#[cfg(feature = "artifacts")]
pub(crate) const MIRROR_ENV: &str = "VMHARNESS_ARTIFACT_MIRROR";

/// The default deadline of the KVM probe guest (`VMHARNESS_KVM_PROBE_TIMEOUT`).
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The default cap of one console log (`VMHARNESS_CONSOLE_LOG_LIMIT`): 64 MiB.
pub const DEFAULT_LOG_LIMIT: u64 = 64 << 20;

/// A variable with a value vmharness cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}=`{value}`: {expected}")]
pub struct BadVariable {
    /// The variable.
    pub var: String,
    /// Its value.
    pub value: String,
    /// What it must be.
    pub expected: String,
}

/// Every variable with an unusable value (all of them, so one run shows every mistake).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid environment: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct SettingsError(pub Vec<BadVariable>);

/// How QEMU writes and reads a state, the best the version offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// `exec:cat` through a shell (every QEMU; the only one before 8.2).
    Exec,
    /// A `file:` URI (QEMU 8.2).
    File,
    /// `file:` with the `mapped-ram` capability: RAM pages at fixed offsets, a sparse file
    /// (QEMU 9.0).
    MappedRam,
    /// Guest RAM in a sparse file kept with the state, saved with `x-ignore-shared` (QEMU 4.0):
    /// the stream holds device state only, and every restore maps the file copy-on-write.
    Template,
}

impl Method {
    /// Its name in reports and `meta.toml`.
    pub fn name(self) -> &'static str {
        match self {
            Method::Exec => "exec",
            Method::File => "file",
            Method::MappedRam => "mapped-ram",
            Method::Template => "template",
        }
    }
}

impl std::str::FromStr for Method {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        [
            Method::Exec,
            Method::File,
            Method::MappedRam,
            Method::Template,
        ]
        .into_iter()
        .find(|method| method.name() == text.trim())
        .ok_or_else(|| format!("unknown method `{text}` (exec, file, mapped-ram or template)"))
    }
}

/// A host reached over OpenSSH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// `user@host` or `host` (or an alias from `~/.ssh/config`).
    pub destination: String,
    /// The ssh port, when not the default.
    pub port: Option<u16>,
    /// An identity file (`ssh -i`).
    pub identity: Option<PathBuf>,
    /// Extra `ssh -o` options, e.g. `UserKnownHostsFile=/path`.
    pub ssh_options: Vec<String>,
}

impl Remote {
    /// Parses `user@host[:port]`.
    pub fn parse(spec: &str) -> Result<Remote, InvalidRemote> {
        let invalid = |reason: &str| InvalidRemote {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        let (destination, port) = match spec.rsplit_once(':') {
            Some((host, port)) => {
                let port: u16 = port
                    .parse()
                    .map_err(|_| invalid("the port is not a number"))?;
                (host, Some(port))
            }
            None => (spec, None),
        };
        if destination.is_empty() || destination.ends_with('@') {
            return Err(invalid("no host"));
        }
        if destination.starts_with('-') || destination.chars().any(char::is_whitespace) {
            return Err(invalid("a host cannot start with `-` or contain spaces"));
        }
        Ok(Remote {
            destination: destination.to_string(),
            port,
            identity: None,
            ssh_options: Vec::new(),
        })
    }
}

/// A `user@host[:port]` text that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid remote `{spec}`: {reason} (expected user@host[:port])")]
pub struct InvalidRemote {
    /// The text as given.
    pub spec: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Everything the environment decides.
#[derive(Debug, Clone)]
// Non-exhaustive: `artifacts` exists with the `artifacts` feature; build with `defaults` or `from_env`, and features must stay additive.
#[non_exhaustive]
pub struct Settings {
    /// The workspace root.
    pub root: PathBuf,
    /// The cargo target directory.
    pub target_dir: PathBuf,
    /// Overrides every config's `accel` (a frontend's own option still wins).
    pub accel: Option<AccelChoice>,
    /// Only configs for this arch become trials.
    pub arch: Option<Arch>,
    /// Multiplies every deadline.
    pub timeout_scale: f64,
    /// How often an infrastructure failure is retried.
    pub infra_retries: u32,
    /// The KVM probe guest's deadline.
    pub kvm_probe_timeout: Duration,
    /// Run QEMU on this host.
    pub remote: Option<Remote>,
    /// The ssh identity file for remote hosts.
    pub remote_identity: Option<PathBuf>,
    /// Extra `ssh -o` options for remote hosts.
    pub remote_ssh_options: Vec<String>,
    /// Unavailable inputs fail (INFRA) instead of skipping.
    pub require_artifacts: bool,
    /// How artifacts are resolved (cache, lock mode, network, mirrors, limits).
    #[cfg(feature = "artifacts")]
    pub artifacts: ResolveOptions,
    /// File timestamps on built disks (seconds since the epoch).
    pub source_date_epoch: Option<u64>,
    /// Running under nextest.
    pub nextest: bool,
    /// The cap of one `console.log` in bytes.
    pub console_log_limit: u64,
    /// Whether `[[case]]`s may start from saved states (`VMHARNESS_SAVED_STATES`).
    pub saved_states: bool,
    /// How states are saved, instead of the best the QEMU version offers.
    pub state_method: Option<Method>,
    /// Whether the next case's QEMU may start while a case runs (`VMHARNESS_SPARE_QEMU`).
    pub spare_qemu: bool,
    vars: BTreeMap<String, OsString>,
}

impl Settings {
    /// Settings for `root` with every default and an empty variable snapshot.
    pub fn defaults(root: impl Into<PathBuf>) -> Settings {
        let root = root.into();
        let target_dir = root.join("target");
        #[cfg(feature = "artifacts")]
        let cache = target_dir.join("vmharness").join("cache");
        Settings {
            root,
            target_dir,
            accel: None,
            arch: None,
            timeout_scale: 1.0,
            infra_retries: 1,
            kvm_probe_timeout: DEFAULT_PROBE_TIMEOUT,
            remote: None,
            remote_identity: None,
            remote_ssh_options: Vec::new(),
            require_artifacts: false,
            #[cfg(feature = "artifacts")]
            artifacts: ResolveOptions::new(cache),
            source_date_epoch: None,
            nextest: false,
            console_log_limit: DEFAULT_LOG_LIMIT,
            saved_states: true,
            state_method: None,
            spare_qemu: true,
            vars: BTreeMap::new(),
        }
    }

    /// Reads the process environment.
    pub fn from_env() -> Result<Settings, SettingsError> {
        let vars: BTreeMap<String, OsString> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v)))
            .collect();
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        let exe = std::env::current_exe().ok();
        Settings::from_vars_at(vars, &cwd, exe.as_deref())
    }

    /// Settings from a variable snapshot; relative paths are taken against `cwd`.
    pub fn from_vars(
        vars: BTreeMap<String, OsString>,
        cwd: &Path,
    ) -> Result<Settings, SettingsError> {
        Settings::from_vars_at(vars, cwd, None)
    }

    /// Settings from a variable snapshot for a program at `exe`: without `VMHARNESS_ROOT` and
    /// `CARGO_MANIFEST_DIR` (a test binary run by hand, from anywhere) the root is the nearest
    /// ancestor of `exe` that holds `vm-configs/`, and without `CARGO_TARGET_DIR` the target
    /// dir is the cargo target dir `exe` was built into (so logs go where cargo builds, also
    /// when `.cargo/config.toml` moves it).
    pub fn from_vars_at(
        vars: BTreeMap<String, OsString>,
        cwd: &Path,
        exe: Option<&Path>,
    ) -> Result<Settings, SettingsError> {
        let mut reader = Reader {
            vars: &vars,
            bad: Vec::new(),
        };
        let explicit_root = reader.text("VMHARNESS_ROOT");
        let root = match &explicit_root {
            Some(root) => cwd.join(root),
            None => find_root(
                reader.text("CARGO_MANIFEST_DIR").map(PathBuf::from),
                exe,
                cwd,
            ),
        };
        let mut settings = Settings::defaults(&root);
        match reader.text("CARGO_TARGET_DIR") {
            Some(target) => settings.target_dir = root.join(target),
            // A root named by hand keeps `<root>/target`, and so does a binary nextest runs
            // from an archive (extracted outside the workspace, into a dir that goes away).
            None if explicit_root.is_none() => {
                let under_nextest = ["NEXTEST", "NEXTEST_RUN_ID"]
                    .iter()
                    .any(|var| vars.contains_key(*var));
                let archived = under_nextest && exe.is_some_and(|exe| !exe.starts_with(&root));
                if let Some(target) = exe.and_then(cargo_target_dir).filter(|_| !archived) {
                    settings.target_dir = target;
                }
            }
            None => {}
        }
        #[cfg(feature = "artifacts")]
        {
            let cache = match reader.text("VMHARNESS_CACHE") {
                Some(cache) => root.join(cache),
                None => settings.state_dir().join("cache"),
            };
            settings.artifacts = ResolveOptions::new(cache);
        }
        settings.accel = reader.parse(ACCEL_ENV, "auto, kvm or tcg");
        settings.arch = reader.parse(ARCH_ENV, "x86_64, aarch64 or riscv64");
        if let Some(scale) = reader.parse::<f64>("VMHARNESS_TIMEOUT_SCALE", "a positive number") {
            match scale.is_finite() && scale > 0.0 && scale <= MAX_SCALE {
                true => settings.timeout_scale = scale,
                false => reader.reject(
                    "VMHARNESS_TIMEOUT_SCALE",
                    &format!("a positive number up to {MAX_SCALE}"),
                ),
            }
        }
        let retries_expected = format!("a whole number from 0 to {MAX_INFRA_RETRIES}");
        match reader.parse::<u32>("VMHARNESS_INFRA_RETRIES", &retries_expected) {
            Some(retries) if retries <= MAX_INFRA_RETRIES => settings.infra_retries = retries,
            Some(_) => reader.reject("VMHARNESS_INFRA_RETRIES", &retries_expected),
            None => {}
        }
        if let Some(secs) = reader.parse::<f64>("VMHARNESS_KVM_PROBE_TIMEOUT", "seconds") {
            match Duration::try_from_secs_f64(secs) {
                Ok(timeout) if secs > 0.0 => settings.kvm_probe_timeout = timeout,
                _ => reader.reject(
                    "VMHARNESS_KVM_PROBE_TIMEOUT",
                    "a positive number of seconds",
                ),
            }
        }
        settings.remote_identity = reader.text("VMHARNESS_REMOTE_IDENTITY").map(PathBuf::from);
        if let Some(options) = reader.text("VMHARNESS_REMOTE_SSH_OPTIONS") {
            match shell_words::split(&options) {
                Ok(options) => settings.remote_ssh_options = options,
                Err(_) => reader.reject("VMHARNESS_REMOTE_SSH_OPTIONS", "shell words"),
            }
        }
        if let Some(spec) = reader.text("VMHARNESS_REMOTE") {
            match settings.remote_at(&spec) {
                Ok(remote) => settings.remote = Some(remote),
                Err(_) => reader.reject("VMHARNESS_REMOTE", "user@host[:port]"),
            }
        }
        settings.require_artifacts = reader.flag("VMHARNESS_REQUIRE_ARTIFACTS");
        #[cfg(feature = "artifacts")]
        reader.artifacts(&mut settings.artifacts);
        settings.source_date_epoch = reader.parse("SOURCE_DATE_EPOCH", "seconds since 1970");
        if let Some(text) = reader.text("VMHARNESS_CONSOLE_LOG_LIMIT") {
            match parse_bytes(&text) {
                Some(limit) if limit >= MIN_LOG_LIMIT => settings.console_log_limit = limit,
                _ => reader.reject(
                    "VMHARNESS_CONSOLE_LOG_LIMIT",
                    "a size of at least 64K, e.g. 256M",
                ),
            }
        }
        match reader.text("VMHARNESS_SAVED_STATES").as_deref() {
            None | Some("auto") => {}
            Some("off") => settings.saved_states = false,
            Some(method) => match method.parse() {
                Ok(method) => settings.state_method = Some(method),
                Err(_) => reader.reject(
                    "VMHARNESS_SAVED_STATES",
                    "auto, off, exec, file, mapped-ram or template",
                ),
            },
        }
        match reader.text("VMHARNESS_SPARE_QEMU").as_deref() {
            None | Some("on") => {}
            Some("off") => settings.spare_qemu = false,
            Some(_) => reader.reject("VMHARNESS_SPARE_QEMU", "on or off"),
        }
        settings.nextest = ["NEXTEST", "NEXTEST_RUN_ID"]
            .iter()
            .any(|var| vars.contains_key(*var));
        if !reader.bad.is_empty() {
            return Err(SettingsError(reader.bad));
        }
        settings.vars = vars;
        Ok(settings)
    }

    /// Sets one variable of the snapshot `env:` references read (for frontends and tests).
    pub fn set_var(&mut self, name: &str, value: impl Into<OsString>) {
        self.vars.insert(name.to_string(), value.into());
    }

    /// A variable of the snapshot, if set and not empty.
    pub fn var(&self, name: &str) -> Option<&OsString> {
        self.vars.get(name).filter(|value| !value.is_empty())
    }

    /// A remote host `user@host[:port]` with this environment's identity and ssh options.
    pub fn remote_at(&self, spec: &str) -> Result<Remote, InvalidRemote> {
        let mut remote = Remote::parse(spec)?;
        remote.identity = self.remote_identity.clone();
        remote.ssh_options = self.remote_ssh_options.clone();
        Ok(remote)
    }

    /// vmharness's own state: `<target>/vmharness`.
    pub fn state_dir(&self) -> PathBuf {
        self.target_dir.join("vmharness")
    }

    /// Saved guest states for `[[case]]`s: `<target>/vmharness/states`.
    pub fn states_dir(&self) -> PathBuf {
        self.state_dir().join("states")
    }

    /// Where every test's runs are logged: `<target>/vmharness/logs` (each run in
    /// `logs/<test>/<run>`, the newest at `logs/<test>/latest`).
    pub fn logs_dir(&self) -> PathBuf {
        self.state_dir().join("logs")
    }

    /// The guest catalog directory: `<root>/guests`.
    pub fn guests_dir(&self) -> PathBuf {
        self.root.join("guests")
    }

    /// The VM config directory: `<root>/vm-configs`.
    pub fn configs_dir(&self) -> PathBuf {
        self.root.join("vm-configs")
    }
}

/// The smallest console log cap accepted.
pub(crate) const MIN_LOG_LIMIT: u64 = 64 << 10;

/// Bytes with an optional `K`, `M` or `G` suffix (binary units).
fn parse_bytes(text: &str) -> Option<u64> {
    let (number, unit) = match text.char_indices().last()? {
        (at, 'K' | 'k') => (&text[..at], 1u64 << 10),
        (at, 'M' | 'm') => (&text[..at], 1 << 20),
        (at, 'G' | 'g') => (&text[..at], 1 << 30),
        _ => (text, 1),
    };
    number.trim().parse::<u64>().ok()?.checked_mul(unit)
}

/// The most retries of an infrastructure failure (`VMHARNESS_INFRA_RETRIES`): each is a whole
/// run, and a machine that fails eleven times in a row will not pass the twelfth.
pub(crate) const MAX_INFRA_RETRIES: u32 = 10;

/// The largest timeout scale accepted: a week for a one-second step is plenty.
pub(crate) const MAX_SCALE: f64 = 1e6;

/// The nearest ancestor of `manifest_dir` or `cwd` that holds `vm-configs/`, else `cwd`.
fn find_root(manifest_dir: Option<PathBuf>, exe: Option<&Path>, cwd: &Path) -> PathBuf {
    [
        manifest_dir,
        exe.and_then(Path::parent).map(Path::to_path_buf),
        Some(cwd.to_path_buf()),
    ]
    .into_iter()
    .flatten()
    .find_map(|start| {
        start
            .ancestors()
            .find(|dir| dir.join("vm-configs").is_dir())
            .map(Path::to_path_buf)
    })
    .unwrap_or_else(|| cwd.to_path_buf())
}

/// The cargo target dir a program at `exe` was built into: the nearest ancestor holding the
/// `CACHEDIR.TAG` cargo writes there (`<target>/debug/deps/<test>`, `<target>/debug/xtask`).
fn cargo_target_dir(exe: &Path) -> Option<PathBuf> {
    exe.ancestors()
        .skip(1)
        .take(4)
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .map(Path::to_path_buf)
}

struct Reader<'a> {
    vars: &'a BTreeMap<String, OsString>,
    bad: Vec<BadVariable>,
}

impl Reader<'_> {
    /// A set, non-blank variable as text (a non-UTF-8 value is rejected).
    fn text(&mut self, name: &str) -> Option<String> {
        let value = self.vars.get(name)?;
        match value.to_str() {
            Some(text) if text.trim().is_empty() => None,
            Some(text) => Some(text.trim().to_string()),
            None => {
                self.bad.push(BadVariable {
                    var: name.into(),
                    value: value.to_string_lossy().into_owned(),
                    expected: "UTF-8 text".into(),
                });
                None
            }
        }
    }

    fn reject(&mut self, name: &str, expected: &str) {
        let value = self
            .vars
            .get(name)
            .map(|v| v.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.bad.push(BadVariable {
            var: name.into(),
            value,
            expected: format!("expected {expected}"),
        });
    }

    fn parse<T: std::str::FromStr>(&mut self, name: &str, expected: &str) -> Option<T> {
        let text = self.text(name)?;
        let parsed = text.parse().ok();
        if parsed.is_none() {
            self.reject(name, expected);
        }
        parsed
    }

    #[cfg(feature = "artifacts")]
    fn duration(&mut self, name: &str) -> Option<Duration> {
        let text = self.text(name)?;
        let parsed = humantime::parse_duration(&text).ok();
        if parsed.is_none() {
            self.reject(name, "a duration such as 30s, 20m or 1h");
        }
        parsed
    }

    /// `1` is on; unset, empty or `0` is off; anything else is a mistake.
    fn flag(&mut self, name: &str) -> bool {
        match self.text(name).as_deref() {
            None | Some("0") => false,
            Some("1") => true,
            Some(_) => {
                self.reject(name, "1 or 0");
                false
            }
        }
    }

    /// `VMHARNESS_LOCK_FIRST_USE`: on unless `0`.
    #[cfg(feature = "artifacts")]
    fn first_use(&mut self) -> bool {
        match self.text(FIRST_USE_ENV).as_deref() {
            None | Some("1") => true,
            Some("0") => false,
            Some(_) => {
                self.reject(FIRST_USE_ENV, "1 or 0");
                true
            }
        }
    }

    #[cfg(feature = "artifacts")]
    fn artifacts(&mut self, options: &mut ResolveOptions) {
        let ci = self.text("CI").is_some_and(|v| v == "true");
        options.lock_mode = match self.text("VMHARNESS_LOCKED").as_deref() {
            Some("strict") => LockMode::Strict,
            Some("1") => LockMode::Locked,
            None | Some("0") if ci => LockMode::Locked,
            None | Some("0") if self.first_use() => LockMode::FirstUse,
            None | Some("0") => LockMode::Lenient,
            Some(_) => {
                self.reject("VMHARNESS_LOCKED", "strict, 1 or 0");
                LockMode::Lenient
            }
        };
        if self.flag("VMHARNESS_OFFLINE") {
            options.network = Network::Offline;
        }
        options.cli = self
            .text(CLI_ENV)
            .filter(|cli| !cli.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_CLI.to_string());
        let mirror = self.text(MIRROR_ENV);
        options.mirror = match mirror.as_deref().map(crate::artifact::fetch::mirror_prefix) {
            Some(Err(why)) => {
                let expected = format!("an absolute http(s) URL prefix ({why})");
                self.reject(MIRROR_ENV, &expected);
                None
            }
            prefix => prefix.and_then(Result::ok),
        };
        if let Some(mirror) = self.text("VMHARNESS_DEBIAN_MIRROR") {
            options.debian.mirror = mirror;
        }
        if let Some(mirror) = self.text("VMHARNESS_DEBIAN_SECURITY_MIRROR") {
            options.debian.security_mirror = mirror;
        }
        if let Some(age) = self.duration("VMHARNESS_APT_MAX_AGE") {
            options.debian.max_age = age;
        }
        if let Some(deadline) = self.duration("VMHARNESS_DOWNLOAD_TIMEOUT") {
            options.download.deadline = deadline;
        }
        if let Some(bytes) = self.parse("VMHARNESS_DOWNLOAD_MAX_BYTES", "a number of bytes") {
            options.download.max_bytes = bytes;
        }
    }
}

// They build artifact options and errors.
#[cfg(test)]
#[cfg(feature = "artifacts")]
mod tests {
    use super::*;

    fn from(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let vars = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        Settings::from_vars(vars, Path::new("/w"))
    }

    /// A test binary run by hand from elsewhere: the workspace is found above the program and
    /// logs go to the target dir it was built into, wherever that is.
    #[test]
    fn a_program_run_from_anywhere_finds_its_workspace_and_target_dir() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        std::fs::create_dir_all(root.join("vm-configs")).unwrap();
        // Built into the workspace's target dir, and into one `.cargo/config.toml` moved away.
        let inside = root.join("target");
        let elsewhere = dir.path().join("build");
        for target in [&inside, &elsewhere] {
            std::fs::create_dir_all(target.join("debug/deps")).unwrap();
            std::fs::write(
                target.join("CACHEDIR.TAG"),
                "Signature: 8a477f597d28d172789f06886806bc55",
            )
            .unwrap();
        }
        let elsewhere_exe = elsewhere.join("debug/deps/vm-0123");
        let somewhere = dir.path().join("somewhere");
        let at = |exe: &Path, vars: &[(&str, &str)]| {
            let vars = vars
                .iter()
                .map(|(k, v)| (k.to_string(), OsString::from(v)))
                .collect();
            Settings::from_vars_at(vars, &somewhere, Some(exe)).unwrap()
        };
        let settings = at(&inside.join("debug/deps/vm-0123"), &[]);
        assert_eq!(settings.root, root);
        assert_eq!(settings.target_dir, inside);
        #[cfg(feature = "artifacts")]
        assert_eq!(settings.artifacts.cache_dir, inside.join("vmharness/cache"));
        // The program lives outside the workspace: found from cargo's variable, target from
        // the program.
        let manifest = root.display().to_string();
        let settings = at(&elsewhere_exe, &[("CARGO_MANIFEST_DIR", &manifest)]);
        assert_eq!(settings.root, root);
        assert_eq!(settings.target_dir, elsewhere);
        // Named by hand, the root keeps `<root>/target`; CARGO_TARGET_DIR always wins.
        let settings = at(&elsewhere_exe, &[("VMHARNESS_ROOT", &manifest)]);
        assert_eq!(settings.target_dir, root.join("target"));
        let settings = at(
            &elsewhere_exe,
            &[
                ("CARGO_MANIFEST_DIR", &manifest),
                ("CARGO_TARGET_DIR", "/t"),
            ],
        );
        assert_eq!(settings.target_dir, Path::new("/t"));
        // nextest running an archive extracted elsewhere: the workspace's own target dir.
        let settings = at(
            &elsewhere_exe,
            &[("CARGO_MANIFEST_DIR", &manifest), ("NEXTEST", "1")],
        );
        assert_eq!(settings.target_dir, root.join("target"));
        // Nothing holds vm-configs/: the current directory, as before.
        let stray = dir.path().join("stray/deps/x");
        assert_eq!(at(&stray, &[]).root, somewhere);
    }

    #[test]
    fn defaults_when_nothing_is_set() {
        let settings = from(&[("VMHARNESS_ROOT", "/w")]).unwrap();
        assert_eq!(settings.root, Path::new("/w"));
        assert_eq!(settings.state_dir(), Path::new("/w/target/vmharness"));
        assert_eq!(
            settings.artifacts.cache_dir,
            Path::new("/w/target/vmharness/cache")
        );
        assert_eq!(settings.timeout_scale, 1.0);
        assert_eq!(settings.infra_retries, 1);
        assert_eq!(settings.artifacts.lock_mode, LockMode::FirstUse);
        assert_eq!(settings.artifacts.cli, DEFAULT_CLI);
        assert!(settings.remote.is_none() && !settings.require_artifacts);
    }

    /// Recording on first use is for local runs, and can be turned off; CI still pins.
    #[test]
    fn lock_modes_follow_ci_and_first_use() {
        let mode = |pairs: &[(&str, &str)]| {
            let mut vars = vec![("VMHARNESS_ROOT", "/w")];
            vars.extend_from_slice(pairs);
            from(&vars).unwrap().artifacts.lock_mode
        };
        assert_eq!(mode(&[(FIRST_USE_ENV, "0")]), LockMode::Lenient);
        assert_eq!(mode(&[(FIRST_USE_ENV, "1")]), LockMode::FirstUse);
        assert_eq!(mode(&[("CI", "true")]), LockMode::Locked);
        assert_eq!(
            mode(&[("CI", "true"), (FIRST_USE_ENV, "0")]),
            LockMode::Locked
        );
        assert_eq!(mode(&[("VMHARNESS_LOCKED", "strict")]), LockMode::Strict);
        let named = from(&[("VMHARNESS_ROOT", "/w"), (CLI_ENV, "cargo xtask")]).unwrap();
        assert_eq!(named.artifacts.cli, "cargo xtask");
    }

    #[test]
    fn values_are_typed() {
        let settings = from(&[
            ("VMHARNESS_ROOT", "/w"),
            ("CARGO_TARGET_DIR", "/t"),
            ("VMHARNESS_ACCEL", "tcg"),
            ("VMHARNESS_ARCH", "arm64"),
            ("VMHARNESS_TIMEOUT_SCALE", "2.5"),
            ("VMHARNESS_REMOTE", "root@kvm:2222"),
            ("VMHARNESS_REMOTE_SSH_OPTIONS", "ConnectTimeout=5 'X=a b'"),
            ("CI", "true"),
            ("VMHARNESS_OFFLINE", "1"),
            ("MY_KERNEL", "k.elf"),
        ])
        .unwrap();
        assert_eq!(settings.logs_dir(), Path::new("/t/vmharness/logs"));
        assert_eq!(settings.accel, Some(AccelChoice::Tcg));
        assert_eq!(settings.arch, Some(Arch::Aarch64));
        assert_eq!(settings.timeout_scale, 2.5);
        let remote = settings.remote.as_ref().unwrap();
        assert_eq!(remote.port, Some(2222));
        assert_eq!(remote.ssh_options, ["ConnectTimeout=5", "X=a b"]);
        assert_eq!(settings.artifacts.lock_mode, LockMode::Locked);
        assert_eq!(settings.artifacts.network, Network::Offline);
        assert_eq!(settings.var("MY_KERNEL").unwrap(), "k.elf");
    }

    #[test]
    fn every_bad_value_is_reported_at_once() {
        let err = from(&[
            ("VMHARNESS_ACCEL", "kmv"),
            ("VMHARNESS_TIMEOUT_SCALE", "inf"),
            ("VMHARNESS_INFRA_RETRIES", "-1"),
            ("VMHARNESS_REQUIRE_ARTIFACTS", "yes"),
            ("VMHARNESS_APT_MAX_AGE", "soon"),
        ])
        .unwrap_err();
        let vars: Vec<&str> = err.0.iter().map(|b| b.var.as_str()).collect();
        assert_eq!(
            vars,
            [
                "VMHARNESS_ACCEL",
                "VMHARNESS_TIMEOUT_SCALE",
                "VMHARNESS_INFRA_RETRIES",
                "VMHARNESS_REQUIRE_ARTIFACTS",
                "VMHARNESS_APT_MAX_AGE"
            ]
        );
        assert!(
            err.to_string()
                .contains("VMHARNESS_ACCEL=`kmv`: expected auto, kvm or tcg"),
            "{err}"
        );
    }

    #[test]
    fn spare_qemu_is_on_unless_turned_off() {
        assert!(from(&[]).unwrap().spare_qemu);
        assert!(from(&[("VMHARNESS_SPARE_QEMU", "on")]).unwrap().spare_qemu);
        assert!(!from(&[("VMHARNESS_SPARE_QEMU", "off")]).unwrap().spare_qemu);
        let err = from(&[("VMHARNESS_SPARE_QEMU", "maybe")]).unwrap_err();
        assert!(err.to_string().contains("expected on or off"), "{err}");
    }

    #[test]
    fn saved_states_take_auto_off_or_a_method() {
        use crate::states::Method;
        let auto = from(&[("VMHARNESS_SAVED_STATES", "auto")]).unwrap();
        assert!(auto.saved_states && auto.state_method.is_none());
        assert!(
            !from(&[("VMHARNESS_SAVED_STATES", "off")])
                .unwrap()
                .saved_states
        );
        let file = from(&[("VMHARNESS_SAVED_STATES", "file")]).unwrap();
        assert_eq!(file.state_method, Some(Method::File));
        let err = from(&[("VMHARNESS_SAVED_STATES", "sometimes")]).unwrap_err();
        assert!(
            err.to_string()
                .contains("expected auto, off, exec, file, mapped-ram or template"),
            "{err}"
        );
    }

    /// Each retry is a whole run: `100000` used to be accepted.
    #[test]
    fn infra_retries_are_bounded() {
        for value in ["0", "1", "10"] {
            let settings = from(&[("VMHARNESS_INFRA_RETRIES", value)]).unwrap();
            assert_eq!(settings.infra_retries.to_string(), value);
        }
        for value in ["11", "100000", "4294967296", "-1", "1.5", "many"] {
            let err = from(&[("VMHARNESS_INFRA_RETRIES", value)]).unwrap_err();
            assert!(
                err.to_string()
                    .contains("expected a whole number from 0 to 10"),
                "{value}: {err}"
            );
        }
    }

    #[test]
    fn the_mirror_must_be_an_absolute_http_url_prefix() {
        let mirror = |value: &str| from(&[(MIRROR_ENV, value)]);
        for bad in [
            "notaurl",
            "mirror.example/prefix",
            "/srv/mirror",
            "ftp://mirror.example/x",
            "file:///srv/mirror",
            "https://",
            "https://user:pw@mirror.example/x",
            "https://mirror.example\\x",
            "https://mirror.example/x?token=1",
            "https://mirror.example/x#frag",
        ] {
            let err = mirror(bad).expect_err(bad);
            assert!(
                err.to_string().contains("VMHARNESS_ARTIFACT_MIRROR"),
                "{bad}: {err}"
            );
        }
        let good = mirror("https://mirror.example/prefix/").unwrap();
        assert_eq!(
            good.artifacts.mirror.as_deref(),
            Some("https://mirror.example/prefix")
        );
    }

    #[test]
    fn huge_and_non_finite_scales_are_rejected() {
        for value in ["0", "-1", "nan", "inf", "1e300"] {
            assert!(
                from(&[("VMHARNESS_TIMEOUT_SCALE", value)]).is_err(),
                "{value}"
            );
        }
    }
}
