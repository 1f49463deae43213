//! Debian packages a command recipe consumes, resolved and downloaded through a private apt
//! configuration: its own sources, lists, state and cache under the artifact cache, verified
//! with Debian's archive keyring. The host's `/etc/apt` sources, preferences and dpkg
//! architectures are never read or changed, so it needs no root and gives the same answer on
//! any Debian-family host (Ubuntu included). apt's own settings (`apt.conf.d`: proxies) apply.
//!
//! ```text
//! <cache>/apt/<arch>-<hash of the sources>/    sources.list, lists, pkgcache, .updated stamp
//! <cache>/objects/<sha256>                     downloaded .debs, named by their content
//! ```
//!
//! A package is pinned by what the archive's signed index says: name, version and sha256 of the
//! `.deb`. Those go into the recipe key, so a package that moved is a new key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::SystemTime;

use super::cache::ObjectCheck;
use super::cache::{create_dir_all, Cache};
use super::error::ArtifactError;
use super::key::sha256_file;
use super::options::Network;

pub use super::package::{DebianArchive, Keyring, PackageSpec, ResolvedPackage, DEBIAN_KEYRING};

/// When the lists are refreshed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refresh {
    /// When older than [`DebianArchive::max_age`] (and online).
    IfStale,
    /// Now (a package the lists name vanished from the archive).
    Force,
    /// Never: use the lists at hand, or report the package unavailable (listing-time checks).
    Never,
}

/// A private apt root for one architecture and one set of sources.
#[derive(Debug, Clone)]
pub(crate) struct AptRoot {
    dir: PathBuf,
    arch: String,
    sources: String,
    archive: DebianArchive,
}

const STAMP: &str = ".updated";

impl AptRoot {
    /// The root for `spec`'s architecture and suites inside `cache`.
    pub(crate) fn for_spec(
        cache: &Cache,
        archive: &DebianArchive,
        spec: &PackageSpec,
    ) -> Result<AptRoot, ArtifactError> {
        let options = match &archive.keyring {
            Keyring::File(path) => format!("signed-by={}", path.display()),
            Keyring::TrustedLocal => "trusted=yes".to_string(),
        };
        let mut sources = String::new();
        for suite in &spec.suites {
            let mirror = if suite.ends_with("-security") {
                &archive.security_mirror
            } else {
                &archive.mirror
            };
            if archive.keyring == Keyring::TrustedLocal && !mirror.starts_with("file:") {
                return Err(ArtifactError::Recipe {
                    file: PathBuf::new(),
                    message: format!(
                        "an unverified package source is only allowed for file: mirrors, not {mirror}"
                    ),
                });
            }
            sources.push_str(&format!(
                "deb [arch={} {options}] {mirror} {suite} {}\n",
                spec.arch, spec.component
            ));
        }
        let digest = super::key::sha256_bytes(sources.as_bytes());
        let dir = cache
            .root()
            .join("apt")
            .join(format!("{}-{}", spec.arch, &digest[..16]));
        Ok(AptRoot {
            dir,
            arch: spec.arch.clone(),
            sources,
            archive: archive.clone(),
        })
    }

    fn command(&self, program: &str) -> Command {
        let d = &self.dir;
        let mut command = Command::new(program);
        let set = |command: &mut Command, key: &str, value: &str| {
            command.arg("-o").arg(format!("{key}={value}"));
        };
        let path = |p: &str| d.join(p).to_string_lossy().into_owned();
        set(&mut command, "Dir::Etc::SourceList", &path("sources.list"));
        set(&mut command, "Dir::Etc::SourceParts", &path("empty.d"));
        set(&mut command, "Dir::Etc::Preferences", &path("preferences"));
        set(&mut command, "Dir::Etc::PreferencesParts", &path("empty.d"));
        set(&mut command, "Dir::Etc::TrustedParts", &path("empty.d"));
        set(&mut command, "Dir::Etc::Trusted", &path("trusted.gpg"));
        set(&mut command, "Dir::State", &path("state"));
        set(&mut command, "Dir::State::Lists", &path("state/lists"));
        set(&mut command, "Dir::State::status", &path("status"));
        set(&mut command, "Dir::Cache", &path("cache"));
        set(
            &mut command,
            "Dir::Cache::archives",
            &path("cache/archives"),
        );
        set(
            &mut command,
            "Dir::Cache::pkgcache",
            &path("cache/pkgcache.bin"),
        );
        set(
            &mut command,
            "Dir::Cache::srcpkgcache",
            &path("cache/srcpkgcache.bin"),
        );
        set(&mut command, "APT::Architecture", &self.arch);
        set(&mut command, "APT::Architectures", &self.arch);
        set(&mut command, "Acquire::Languages", "none");
        set(
            &mut command,
            "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled",
            "false",
        );
        set(
            &mut command,
            "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled",
            "false",
        );
        set(
            &mut command,
            "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled",
            "false",
        );
        set(
            &mut command,
            "Acquire::IndexTargets::deb::CNF::DefaultEnabled",
            "false",
        );
        if nix::unistd::geteuid().is_root() {
            // As root apt downloads as `_apt`, which cannot write into our private dirs.
            set(&mut command, "APT::Sandbox::User", "root");
        }
        command
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    fn prepare_dirs(&self) -> Result<(), ArtifactError> {
        for sub in ["empty.d", "state/lists/partial", "cache/archives/partial"] {
            create_dir_all(&self.dir.join(sub))?;
        }
        for (file, text) in [
            ("sources.list", self.sources.as_str()),
            ("status", ""),
            ("preferences", ""),
        ] {
            let path = self.dir.join(file);
            let current = std::fs::read_to_string(&path).ok();
            if current.as_deref() != Some(text) {
                std::fs::write(&path, text).map_err(|e| ArtifactError::io("write", &path, e))?;
            }
        }
        Ok(())
    }

    fn has_lists(&self) -> bool {
        self.dir.join(STAMP).is_file()
    }

    fn is_fresh(&self) -> bool {
        std::fs::metadata(self.dir.join(STAMP))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age < self.archive.max_age)
    }

    /// Makes sure package lists are at hand, refreshing them as `refresh` says.
    pub(crate) fn ensure_lists(
        &self,
        artifact: &str,
        network: Network,
        refresh: Refresh,
    ) -> Result<(), ArtifactError> {
        self.prepare_dirs()?;
        let wanted = match refresh {
            Refresh::Never => false,
            Refresh::Force => true,
            Refresh::IfStale => !self.is_fresh(),
        };
        if !wanted || network == Network::Offline {
            return if self.has_lists() {
                Ok(())
            } else {
                Err(ArtifactError::Unavailable {
                    artifact: artifact.to_string(),
                    reason: format!(
                        "no Debian package lists in {} yet and {}",
                        self.dir.display(),
                        if network == Network::Offline {
                            "offline (VMHARNESS_OFFLINE=1)"
                        } else {
                            "not allowed to fetch them now"
                        }
                    ),
                })
            };
        }
        let output = run(self.command("apt-get").args(["update", "-q"]), artifact)?;
        let text = output_text(&output);
        if signature_problem(&text) {
            return Err(ArtifactError::Apt {
                artifact: artifact.to_string(),
                action: "verify the package index".into(),
                detail: text,
            });
        }
        let failed = !output.status.success() || text.lines().any(|l| l.starts_with("Err:"));
        if failed {
            if self.has_lists() {
                eprintln!(
                    "warning: artifact `{artifact}`: refreshing Debian package lists failed, using the lists from before: {}",
                    last_lines(&text, 3)
                );
                return Ok(());
            }
            return Err(ArtifactError::Unavailable {
                artifact: artifact.to_string(),
                reason: format!(
                    "cannot fetch Debian package lists: {}",
                    last_lines(&text, 5)
                ),
            });
        }
        let stamp = self.dir.join(STAMP);
        std::fs::write(&stamp, "").map_err(|e| ArtifactError::io("write", &stamp, e))
    }

    /// The candidate record of one package: its fields from the index. Remembered per package
    /// until the lists are refreshed: `apt-cache` loads the whole index (a quarter second of
    /// CPU each time), and listing trials asks for every package of every config.
    fn show(
        &self,
        artifact: &str,
        package: &str,
    ) -> Result<BTreeMap<String, String>, ArtifactError> {
        let memo = self.dir.join("shown").join(format!("{package}.txt"));
        if let Some(text) = fresh_memo(&memo, &self.dir.join(STAMP)) {
            let record = parse_record(&text);
            if record.contains_key("Package") {
                return Ok(record);
            }
        }
        let output = run(
            self.command("apt-cache")
                .args(["show", "--no-all-versions"])
                .arg(package),
            artifact,
        )?;
        let record = parse_record(&String::from_utf8_lossy(&output.stdout));
        if !output.status.success() || !record.contains_key("Package") {
            return Err(ArtifactError::Apt {
                artifact: artifact.to_string(),
                action: format!("find package `{package}` ({})", self.arch),
                detail: format!(
                    "the archive has no such package; sources:\n{}{}",
                    self.sources,
                    last_lines(&output_text(&output), 3)
                ),
            });
        }
        remember(&memo, &output.stdout);
        Ok(record)
    }

    /// Resolves a declared package to the concrete one the index names.
    pub(crate) fn resolve(
        &self,
        artifact: &str,
        role: &str,
        spec: &PackageSpec,
    ) -> Result<ResolvedPackage, ArtifactError> {
        let mut record = self.show(artifact, &spec.name)?;
        if let Some(pattern) = &spec.via_depends {
            let regex = regex::Regex::new(pattern).map_err(|e| ArtifactError::Recipe {
                file: PathBuf::new(),
                message: format!("artifact `{artifact}`: package `{role}`: via_depends: {e}"),
            })?;
            let depends = record.get("Depends").cloned().unwrap_or_default();
            let target = depends
                .split([',', '|'])
                .filter_map(|alt| alt.split_whitespace().next())
                .map(|name| name.split(':').next().unwrap_or(name))
                .find(|name| regex.is_match(name))
                .ok_or_else(|| ArtifactError::Apt {
                    artifact: artifact.to_string(),
                    action: format!("resolve `{}` through its Depends", spec.name),
                    detail: format!("no dependency matches `{pattern}` in `{depends}`"),
                })?
                .to_string();
            record = self.show(artifact, &target)?;
        }
        let field = |name: &str| {
            record.get(name).cloned().ok_or_else(|| ArtifactError::Apt {
                artifact: artifact.to_string(),
                action: format!("read the index record of `{}`", spec.name),
                detail: format!("no `{name}` field"),
            })
        };
        Ok(ResolvedPackage {
            role: role.to_string(),
            name: field("Package")?,
            version: field("Version")?,
            arch: field("Architecture")?,
            sha256: field("SHA256")?,
        })
    }

    /// Downloads the `.deb` (apt checks it against the signed index) into the object store, or
    /// reuses the object already there. Returns its path.
    pub(crate) fn download(
        &self,
        artifact: &str,
        package: &ResolvedPackage,
        cache: &Cache,
        network: Network,
    ) -> Result<PathBuf, ArtifactError> {
        let corrupt = match super::cache::check_object(
            cache,
            artifact,
            &package.sha256,
            &format!("downloading package {package} again"),
        )? {
            ObjectCheck::Valid(object) => return Ok(object),
            ObjectCheck::Corrupt(quarantined) => Some(quarantined),
            ObjectCheck::Absent => None,
        };
        // A corrupt package that cannot be fetched again is reported as such, not as missing.
        let unrepaired = |error: ArtifactError| match corrupt.clone() {
            Some(quarantined) if error.is_unavailable() => {
                quarantined.into_error(error.to_string())
            }
            _ => error,
        };
        if network == Network::Offline {
            return Err(unrepaired(ArtifactError::Unavailable {
                artifact: artifact.to_string(),
                reason: format!(
                    "offline (VMHARNESS_OFFLINE=1) and package {package} is not cached"
                ),
            }));
        }
        let objects = cache.objects_dir();
        create_dir_all(&objects)?;
        let staging = tempfile::Builder::new()
            .prefix(".tmp-deb-")
            .tempdir_in(&objects)
            .map_err(|e| ArtifactError::io("create temp dir in", &objects, e))?;
        let output = run(
            self.command("apt-get")
                .current_dir(staging.path())
                .args(["download", "-q"])
                .arg(format!("{}={}", package.name, package.version)),
            artifact,
        )
        .map_err(unrepaired)?;
        let deb = std::fs::read_dir(staging.path())
            .map_err(|e| ArtifactError::io("list", staging.path(), e))?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "deb"));
        let Some(deb) = deb.filter(|_| output.status.success()) else {
            return Err(unrepaired(ArtifactError::Unavailable {
                artifact: artifact.to_string(),
                reason: format!(
                    "apt-get download {}={} failed: {}",
                    package.name,
                    package.version,
                    last_lines(&output_text(&output), 4)
                ),
            }));
        };
        let actual = sha256_file(&deb)?;
        if actual != package.sha256 {
            return Err(ArtifactError::Mismatch {
                artifact: artifact.to_string(),
                what: format!("package {package}"),
                expected: package.sha256.clone(),
                actual,
                inputs: String::new(),
            });
        }
        cache.store_object(&deb, &package.sha256)
    }
}

fn run(command: &mut Command, artifact: &str) -> Result<Output, ArtifactError> {
    let program = command.get_program().to_string_lossy().into_owned();
    command.output().map_err(|e| ArtifactError::Unavailable {
        artifact: artifact.to_string(),
        reason: format!("cannot run {program} (install apt): {e}"),
    })
}

fn output_text(output: &Output) -> String {
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    text
}

fn last_lines(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(count)..].join(" / ")
}

/// Whether apt's output says an index failed its signature check: an attacker on the network
/// must not be able to turn that into "unavailable".
fn signature_problem(text: &str) -> bool {
    [
        "NO_PUBKEY",
        "BADSIG",
        "GPG error",
        "is not signed",
        "signature could not be verified",
        "Hash Sum mismatch",
        "File has unexpected size",
    ]
    .iter()
    .any(|marker| text.contains(marker))
}

/// Parses the first stanza of a deb822 record (`Field: value`, continuation lines folded).
fn parse_record(text: &str) -> BTreeMap<String, String> {
    let mut record = BTreeMap::new();
    let mut last: Option<String> = None;
    for line in text.lines() {
        if line.is_empty() {
            if !record.is_empty() {
                break;
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(value) = last.as_ref().and_then(|k| record.get_mut(k)) {
                let value: &mut String = value;
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((key, value)) = line.split_once(':') {
            record.insert(key.trim().to_string(), value.trim().to_string());
            last = Some(key.trim().to_string());
        }
    }
    record
}

/// The memo's text if it was written after the lists' stamp (the lists have not changed).
fn fresh_memo(memo: &Path, stamp: &Path) -> Option<String> {
    let written = std::fs::metadata(memo).and_then(|m| m.modified()).ok()?;
    let lists = std::fs::metadata(stamp).and_then(|m| m.modified()).ok()?;
    (written > lists).then(|| std::fs::read_to_string(memo).ok())?
}

/// Writes a memo atomically (best effort: without it, apt-cache simply runs again).
fn remember(memo: &Path, bytes: &[u8]) {
    let Some(dir) = memo.parent() else {
        return;
    };
    let temp = memo.with_extension(format!("tmp{}", std::process::id()));
    if std::fs::create_dir_all(dir).is_ok() && std::fs::write(&temp, bytes).is_ok() {
        let _ = std::fs::rename(&temp, memo);
    }
}

/// Resolves every declared package of a recipe, sorted by role. Holds the apt root's lock so
/// concurrent processes refresh the lists once.
pub(crate) fn resolve_all(
    artifact: &str,
    packages: &BTreeMap<String, PackageSpec>,
    cache: &Cache,
    archive: &DebianArchive,
    network: Network,
    refresh: Refresh,
) -> Result<Vec<(ResolvedPackage, AptRoot)>, ArtifactError> {
    let mut resolved = Vec::with_capacity(packages.len());
    for (role, spec) in packages {
        let root = AptRoot::for_spec(cache, archive, spec)?;
        let lock_name = format!(
            "apt-{}",
            root.dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        let _lock = cache.lock(&lock_name)?;
        root.ensure_lists(artifact, network, refresh)?;
        resolved.push((root.resolve(artifact, role, spec)?, root));
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_fold_continuations_and_stop_at_the_first_stanza() {
        let record = parse_record(
            "Package: a\nVersion: 1\nDescription: x\n more\n\nPackage: b\nVersion: 2\n",
        );
        assert_eq!(record["Package"], "a");
        assert_eq!(record["Description"], "x more");
        assert_eq!(record.len(), 3);
    }

    #[test]
    fn signature_failures_are_recognised() {
        assert!(signature_problem(
            "W: GPG error: http://x bookworm InRelease: NO_PUBKEY 1234"
        ));
        assert!(!signature_problem(
            "Err:1 http://x bookworm InRelease\n Could not resolve"
        ));
    }
}
