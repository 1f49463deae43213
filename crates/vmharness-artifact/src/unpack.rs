//! Safe archive extraction: nothing is written outside the target directory, and the total
//! unpacked size is capped.
//!
//! Entry names with `..` or a root are rejected; nothing is ever written through a symlink
//! (symlinks are created last, and every parent directory is checked); every symlink is then
//! resolved inside the target like `openat2(RESOLVE_BENEATH)` would, and one that leads out is
//! rejected. Hard links must name a regular file already extracted.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

/// Archive formats `kind = "url"` can unpack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ArchiveFormat {
    /// `.zip`
    #[serde(rename = "zip")]
    Zip,
    /// `.tar.gz`
    #[serde(rename = "tar.gz")]
    TarGz,
    /// `.tar.xz`
    #[serde(rename = "tar.xz")]
    TarXz,
}

impl ArchiveFormat {
    /// The name used in recipes.
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveFormat::Zip => "zip",
            ArchiveFormat::TarGz => "tar.gz",
            ArchiveFormat::TarXz => "tar.xz",
        }
    }
}

/// The default cap on the total bytes an archive may unpack to: 4 GiB.
pub(crate) const DEFAULT_MAX_UNPACKED: u64 = 4 << 30;

/// Limits applied while unpacking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Maximum total bytes of file contents written.
    pub max_total_bytes: u64,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        UnpackLimits {
            max_total_bytes: DEFAULT_MAX_UNPACKED,
        }
    }
}

/// Why an archive could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The archive is not a valid archive of the declared format.
    #[error("corrupt {format} archive: {message}")]
    Corrupt {
        /// The declared format.
        format: &'static str,
        /// The decoder's message.
        message: String,
    },
    /// An entry name is absolute or contains `..`.
    #[error("entry `{entry}` has an unsafe path: {reason}")]
    UnsafePath {
        /// The entry name as stored in the archive.
        entry: String,
        /// What is unsafe about it.
        reason: &'static str,
    },
    /// A symlink or hard link would point outside the target directory.
    #[error("entry `{entry}` links to `{target}`, which is outside the target directory")]
    LinkEscapes {
        /// The link entry.
        entry: String,
        /// Its target as stored.
        target: String,
    },
    /// An entry's path would pass through a symlink or a non-directory.
    #[error("entry `{entry}` would be written through `{through}`, which is not a directory")]
    ThroughLink {
        /// The entry name.
        entry: String,
        /// The offending parent path, relative to the target.
        through: String,
    },
    /// A link entry would replace a directory created by earlier entries.
    #[error("entry `{entry}` would replace a directory")]
    Conflict {
        /// The link entry.
        entry: String,
    },
    /// The archive unpacks to more than the allowed total size.
    #[error("entry `{entry}` exceeds the unpack size cap of {limit} bytes")]
    SizeCap {
        /// The entry being written when the cap was reached.
        entry: String,
        /// The cap.
        limit: u64,
    },
    /// An entry type we do not extract (device node, fifo, ...).
    #[error("entry `{entry}` has unsupported type {kind}")]
    Unsupported {
        /// The entry name.
        entry: String,
        /// The type.
        kind: String,
    },
    /// Reading the archive or writing the target failed.
    #[error("entry `{entry}`: {source}")]
    Io {
        /// The entry being processed (or the archive itself).
        entry: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// What an archive unpacked to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UnpackSummary {
    /// Number of entries processed.
    pub entries: usize,
    /// Total bytes of file contents written.
    pub bytes: u64,
}

/// Unpacks `archive` into the directory `dest` (created if missing).
pub fn unpack(
    archive: &Path,
    format: ArchiveFormat,
    dest: &Path,
    limits: &UnpackLimits,
) -> Result<UnpackSummary, UnpackError> {
    let io = |source| UnpackError::Io {
        entry: archive.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dest).map_err(io)?;
    let file = File::open(archive).map_err(io)?;
    let mut extractor = Extractor::new(dest, limits);
    match format {
        ArchiveFormat::Zip => unpack_zip(file, &mut extractor)?,
        ArchiveFormat::TarGz => unpack_tar(
            flate2::read::GzDecoder::new(BufReader::new(file)),
            &mut extractor,
        )?,
        ArchiveFormat::TarXz => unpack_tar(
            xz2::read::XzDecoder::new(BufReader::new(file)),
            &mut extractor,
        )?,
    }
    extractor.finish()
}

fn unpack_zip(file: File, extractor: &mut Extractor) -> Result<(), UnpackError> {
    let corrupt = |e: zip::result::ZipError| UnpackError::Corrupt {
        format: "zip",
        message: e.to_string(),
    };
    let mut zip = zip::ZipArchive::new(BufReader::new(file)).map_err(corrupt)?;
    for index in 0..zip.len() {
        let mut entry = zip.by_index(index).map_err(corrupt)?;
        let name = String::from_utf8_lossy(entry.name_raw()).into_owned();
        let is_symlink = entry.unix_mode().is_some_and(|m| m & 0o170000 == 0o120000);
        if entry.is_dir() {
            extractor.dir(&name)?;
        } else if is_symlink {
            let mut target = String::new();
            entry
                .read_to_string(&mut target)
                .map_err(|source| UnpackError::Io {
                    entry: name.clone(),
                    source,
                })?;
            extractor.symlink(&name, &target)?;
        } else {
            extractor.file(&name, &mut entry)?;
        }
    }
    Ok(())
}

fn unpack_tar(reader: impl Read, extractor: &mut Extractor) -> Result<(), UnpackError> {
    let corrupt = |e: std::io::Error| UnpackError::Corrupt {
        format: "tar",
        message: e.to_string(),
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let link = entry
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned());
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                extractor.file(&name, &mut entry)?
            }
            tar::EntryType::Directory => extractor.dir(&name)?,
            tar::EntryType::Symlink => extractor.symlink(&name, &link.unwrap_or_default())?,
            tar::EntryType::Link => extractor.hardlink(&name, &link.unwrap_or_default())?,
            tar::EntryType::XGlobalHeader => {}
            other => {
                return Err(UnpackError::Unsupported {
                    entry: name,
                    kind: format!("{other:?}"),
                })
            }
        }
    }
    Ok(())
}

/// A relative path made only of normal components, or an error naming the entry.
fn safe_relative(entry: &str) -> Result<PathBuf, UnpackError> {
    let unsafe_path = |reason| UnpackError::UnsafePath {
        entry: entry.to_string(),
        reason,
    };
    let mut clean = PathBuf::new();
    for component in Path::new(entry).components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err(unsafe_path("contains `..`")),
            Component::RootDir | Component::Prefix(_) => return Err(unsafe_path("is absolute")),
        }
    }
    Ok(clean)
}

struct Extractor<'a> {
    dest: &'a Path,
    limit: u64,
    summary: UnpackSummary,
    /// Deferred symlinks: (entry, relative path, target).
    symlinks: Vec<(String, PathBuf, String)>,
    /// Deferred hard links: (entry, relative path, relative source, source as stored).
    hardlinks: Vec<(String, PathBuf, PathBuf, String)>,
}

impl<'a> Extractor<'a> {
    fn new(dest: &'a Path, limits: &UnpackLimits) -> Self {
        Extractor {
            dest,
            limit: limits.max_total_bytes,
            summary: UnpackSummary::default(),
            symlinks: Vec::new(),
            hardlinks: Vec::new(),
        }
    }

    fn io(entry: &str) -> impl Fn(std::io::Error) -> UnpackError + '_ {
        move |source| UnpackError::Io {
            entry: entry.to_string(),
            source,
        }
    }

    /// Creates the parent directories of `relative`, refusing to pass through anything that is
    /// not a real directory.
    fn prepare_parents(&self, entry: &str, relative: &Path) -> Result<(), UnpackError> {
        let mut current = self.dest.to_path_buf();
        let parents: Vec<_> = relative
            .parent()
            .into_iter()
            .flat_map(Path::components)
            .collect();
        for part in parents {
            current.push(part);
            match std::fs::symlink_metadata(&current) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    return Err(UnpackError::ThroughLink {
                        entry: entry.to_string(),
                        through: current
                            .strip_prefix(self.dest)
                            .unwrap_or(&current)
                            .display()
                            .to_string(),
                    })
                }
                Err(_) => std::fs::create_dir(&current).map_err(Self::io(entry))?,
            }
        }
        Ok(())
    }

    fn dir(&mut self, entry: &str) -> Result<(), UnpackError> {
        self.summary.entries += 1;
        let relative = safe_relative(entry)?;
        if relative.as_os_str().is_empty() {
            return Ok(());
        }
        self.prepare_parents(entry, &relative.join("x"))
    }

    fn file(&mut self, entry: &str, contents: &mut dyn Read) -> Result<(), UnpackError> {
        self.summary.entries += 1;
        let relative = safe_relative(entry)?;
        self.prepare_parents(entry, &relative)?;
        let path = self.dest.join(&relative);
        if std::fs::symlink_metadata(&path).is_ok_and(|m| !m.is_file()) {
            return Err(UnpackError::ThroughLink {
                entry: entry.to_string(),
                through: relative.display().to_string(),
            });
        }
        let mut out = File::create(&path).map_err(Self::io(entry))?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = contents.read(&mut buf).map_err(Self::io(entry))?;
            if n == 0 {
                return Ok(());
            }
            self.summary.bytes += n as u64;
            if self.summary.bytes > self.limit {
                return Err(UnpackError::SizeCap {
                    entry: entry.to_string(),
                    limit: self.limit,
                });
            }
            std::io::Write::write_all(&mut out, &buf[..n]).map_err(Self::io(entry))?;
        }
    }

    fn symlink(&mut self, entry: &str, target: &str) -> Result<(), UnpackError> {
        self.summary.entries += 1;
        let relative = safe_relative(entry)?;
        if target.is_empty() || Path::new(target).has_root() {
            return Err(UnpackError::LinkEscapes {
                entry: entry.to_string(),
                target: target.to_string(),
            });
        }
        self.symlinks
            .push((entry.to_string(), relative, target.to_string()));
        Ok(())
    }

    fn hardlink(&mut self, entry: &str, source: &str) -> Result<(), UnpackError> {
        self.summary.entries += 1;
        let relative = safe_relative(entry)?;
        let source_relative = safe_relative(source).map_err(|_| UnpackError::LinkEscapes {
            entry: entry.to_string(),
            target: source.to_string(),
        })?;
        self.hardlinks.push((
            entry.to_string(),
            relative,
            source_relative,
            source.to_string(),
        ));
        Ok(())
    }

    /// Creates the deferred links, then checks that every symlink resolves inside `dest`.
    fn finish(mut self) -> Result<UnpackSummary, UnpackError> {
        for (entry, relative, source, stored) in std::mem::take(&mut self.hardlinks) {
            self.prepare_parents(&entry, &relative)?;
            self.prepare_parents(&entry, &source)?;
            let source_path = self.dest.join(&source);
            if !std::fs::symlink_metadata(&source_path).is_ok_and(|m| m.is_file()) {
                return Err(UnpackError::LinkEscapes {
                    entry,
                    target: stored,
                });
            }
            let path = self.dest.join(&relative);
            match std::fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => return Err(UnpackError::Conflict { entry }),
                Ok(_) => std::fs::remove_file(&path).map_err(Self::io(&entry))?,
                Err(_) => {}
            }
            std::fs::hard_link(&source_path, &path).map_err(Self::io(&entry))?;
        }
        let symlinks = std::mem::take(&mut self.symlinks);
        for (entry, relative, target) in &symlinks {
            self.prepare_parents(entry, relative)?;
            let path = self.dest.join(relative);
            match std::fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => {
                    return Err(UnpackError::Conflict {
                        entry: entry.clone(),
                    })
                }
                Ok(_) => std::fs::remove_file(&path).map_err(Self::io(entry))?,
                Err(_) => {}
            }
            std::os::unix::fs::symlink(target, &path).map_err(Self::io(entry))?;
        }
        for (entry, relative, target) in &symlinks {
            if !resolves_beneath(self.dest, relative) {
                return Err(UnpackError::LinkEscapes {
                    entry: entry.clone(),
                    target: target.clone(),
                });
            }
        }
        Ok(self.summary)
    }
}

/// Follows `relative` (which may contain symlinks) component by component inside `root`, and
/// reports whether it stays inside. Missing components are taken literally.
pub(crate) fn resolves_beneath(root: &Path, relative: &Path) -> bool {
    const MAX_HOPS: usize = 40;
    let mut inside: Vec<OsString> = Vec::new();
    let mut pending: VecDeque<Step> = steps(relative);
    let mut hops = 0;
    while let Some(step) = pending.pop_front() {
        match step {
            Step::Escape => return false,
            Step::Up => {
                if inside.pop().is_none() {
                    return false;
                }
            }
            Step::Name(part) => {
                inside.push(part);
                let path: PathBuf = std::iter::once(root.as_os_str().to_os_string())
                    .chain(inside.iter().cloned())
                    .collect();
                if let Ok(target) = std::fs::read_link(&path) {
                    hops += 1;
                    if hops > MAX_HOPS {
                        return false;
                    }
                    inside.pop();
                    for step in steps(&target).into_iter().rev() {
                        pending.push_front(step);
                    }
                }
            }
        }
    }
    true
}

enum Step {
    Name(OsString),
    Up,
    Escape,
}

fn steps(path: &Path) -> VecDeque<Step> {
    path.components()
        .filter_map(|component| match component {
            Component::Normal(part) => Some(Step::Name(part.to_os_string())),
            Component::ParentDir => Some(Step::Up),
            Component::CurDir => None,
            Component::RootDir | Component::Prefix(_) => Some(Step::Escape),
        })
        .collect()
}
