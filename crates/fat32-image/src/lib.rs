#![doc = include_str!("../README.md")]

mod boot;
mod geometry;
mod layout;
mod names;
mod options;
mod tree;
mod writer;

use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use options::{DiskSize, Layout};

use geometry::{Geometry, GeometryError};
use layout::{DosTime, Plan};
use tree::Tree;

/// Timestamp used when the builder sets none: 1980-01-01.
const DEFAULT_EPOCH: u64 = 315_532_800;
/// Label written to the boot sector when the volume has none.
const NO_LABEL: [u8; 11] = *b"NO NAME    ";

/// Errors from building an image. Entry numbers in messages are 1-based, in the order the
/// entries were added.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A size string could not be parsed.
    #[error("invalid disk size `{text}`: {reason}")]
    InvalidSize {
        /// The text as given.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The volume label cannot be stored.
    #[error("invalid volume label `{label}`: {reason}")]
    InvalidLabel {
        /// The label as given.
        label: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A destination path contains `..`.
    #[error("destination `{dest}` contains `..`; destinations cannot leave the image root")]
    PathEscapesRoot {
        /// The destination as given.
        dest: String,
    },
    /// A destination cannot be used for this kind of entry.
    #[error("invalid destination `{dest}`: {reason}")]
    InvalidDest {
        /// The destination as given.
        dest: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A file or directory name cannot be stored in FAT.
    #[error("`{path}`: FAT cannot hold the name `{name}`: {reason}")]
    InvalidName {
        /// Image path (or destination) the name appears in.
        path: String,
        /// The offending name.
        name: String,
        /// Why FAT cannot hold it.
        reason: &'static str,
    },
    /// Two entries put something at the same image path (FAT compares names case-insensitively).
    #[error("duplicate destination `{path}`: entry {} and entry {} both put something there (FAT names are case-insensitive)", first + 1, second + 1)]
    DuplicateDest {
        /// The image path.
        path: String,
        /// Index of the entry that got there first.
        first: usize,
        /// Index of the entry that collided.
        second: usize,
    },
    /// A source file or directory cannot be read (missing, permissions, ...).
    #[error("cannot read source `{}`: {source}", path.display())]
    Source {
        /// Host path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A source file's size changed between planning and copying.
    #[error("source `{}` changed while the image was built (expected {expected} bytes)", path.display())]
    SourceChanged {
        /// Host path.
        path: PathBuf,
        /// Size seen when planning.
        expected: u64,
    },
    /// A source is neither a regular file nor a directory.
    #[error("source `{}` is not a regular file or directory", path.display())]
    UnsupportedFileType {
        /// Host path.
        path: PathBuf,
    },
    /// A directory source contains a symlink to one of its ancestors.
    #[error("source `{}` is a symlink loop", path.display())]
    SymlinkLoop {
        /// Host path of the looping link.
        path: PathBuf,
    },
    /// A file exceeds FAT32's 4 GiB - 1 limit.
    #[error("`{path}` is {size} bytes; FAT32 files are at most 4294967295 bytes")]
    FileTooLarge {
        /// Image path.
        path: String,
        /// File size.
        size: u64,
    },
    /// A directory has more entries than FAT allows (65536, counting long-name entries).
    #[error("directory `{path}` needs {entries} entries; FAT allows 65536")]
    DirectoryTooLarge {
        /// Image path.
        path: String,
        /// Entries needed.
        entries: u64,
    },
    /// The content does not fit in the requested size.
    #[error("content needs {needed} bytes of clusters but a {size}-byte image has {available}; use size \"auto\" or at least {fitting} bytes ({} MiB)", fitting.div_ceil(1 << 20))]
    ContentTooLarge {
        /// Bytes of clusters the content needs.
        needed: u64,
        /// Bytes of clusters the image has.
        available: u64,
        /// Requested image size.
        size: u64,
        /// Smallest image size that fits the content.
        fitting: u64,
    },
    /// The requested size is below the FAT32 minimum (65525 clusters).
    #[error("a {requested}-byte image is too small for FAT32 with layout `{layout}`; it needs at least {minimum} bytes ({} MiB)", minimum >> 20)]
    BelowMinimum {
        /// Requested image size.
        requested: u64,
        /// Smallest valid image size.
        minimum: u64,
        /// Partition layout.
        layout: Layout,
    },
    /// The requested size (or the content) exceeds what FAT32 can address.
    #[error("a {requested}-byte image exceeds the FAT32 maximum of {maximum} bytes")]
    AboveMaximum {
        /// Requested (or needed) image size.
        requested: u64,
        /// Largest valid image size.
        maximum: u64,
    },
    /// Creating, sizing or renaming the output image failed.
    #[error("cannot create image `{}`: {source}", path.display())]
    Output {
        /// Output (or temporary) path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Writing the image's contents failed part way (a full disk, most often).
    #[error("write failed: image `{}`: {source}{}", path.display(), space_hint(source))]
    Write {
        /// The image being written.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A hint for a write error that means the file system (or a limit) is full: ` (disk full?)`.
fn space_hint(error: &std::io::Error) -> &'static str {
    match error.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => " (disk full?)",
        std::io::ErrorKind::FileTooLarge => " (file size limit?)",
        _ => "",
    }
}

/// One thing to put on the image.
#[derive(Debug, Clone)]
pub enum Entry {
    /// A host file (copied to `dest`; a `dest` ending in `/` keeps the file's name) or a host
    /// directory (its contents copied recursively into directory `dest`).
    Host {
        /// Path on the host.
        host: PathBuf,
        /// Path in the image, `/`-separated.
        dest: String,
    },
    /// Bytes given directly, written to file `dest`.
    Inline {
        /// File content.
        data: Arc<[u8]>,
        /// Path in the image, `/`-separated.
        dest: String,
    },
}

/// Builds one FAT32 image from entries and options.
#[derive(Debug, Clone, Default)]
pub struct ImageBuilder {
    entries: Vec<Entry>,
    size: DiskSize,
    label: Option<String>,
    layout: Layout,
    volume_id: Option<u32>,
    timestamp: Option<u64>,
}

/// A finished image and the facts about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    /// Where the image was written.
    pub path: PathBuf,
    /// Size of the image file in bytes.
    pub size_bytes: u64,
    /// Partition layout.
    pub layout: Layout,
    /// Byte offset of the FAT32 volume in the image.
    pub volume_offset: u64,
    /// Volume id (serial number) in the boot sector.
    pub volume_id: u32,
    /// Bytes per cluster.
    pub cluster_bytes: u64,
    /// Data clusters in the volume.
    pub clusters: u32,
    /// Clusters allocated to directories and files.
    pub used_clusters: u32,
}

impl ImageBuilder {
    /// An empty builder: size `auto`, no label, no partition table.
    pub fn new() -> ImageBuilder {
        ImageBuilder::default()
    }

    /// Adds an entry.
    pub fn entry(mut self, entry: Entry) -> ImageBuilder {
        self.entries.push(entry);
        self
    }

    /// Adds a host file or directory at `dest`.
    pub fn add_host(self, host: impl Into<PathBuf>, dest: impl Into<String>) -> ImageBuilder {
        self.entry(Entry::Host {
            host: host.into(),
            dest: dest.into(),
        })
    }

    /// Adds a file with the given content at `dest`.
    pub fn add_bytes(self, dest: impl Into<String>, data: impl Into<Arc<[u8]>>) -> ImageBuilder {
        self.entry(Entry::Inline {
            data: data.into(),
            dest: dest.into(),
        })
    }

    /// Sets the image size.
    pub fn size(mut self, size: DiskSize) -> ImageBuilder {
        self.size = size;
        self
    }

    /// Sets the volume label (up to 11 characters; letters are uppercased).
    pub fn label(mut self, label: impl Into<String>) -> ImageBuilder {
        self.label = Some(label.into());
        self
    }

    /// Sets the partition layout.
    pub fn layout(mut self, layout: Layout) -> ImageBuilder {
        self.layout = layout;
        self
    }

    /// Overrides the volume id (default: CRC32 of the volume content).
    pub fn volume_id(mut self, volume_id: u32) -> ImageBuilder {
        self.volume_id = Some(volume_id);
        self
    }

    /// Sets the timestamp (Unix seconds) of every entry, e.g. from `SOURCE_DATE_EPOCH`;
    /// default 1980-01-01.
    pub fn timestamp(mut self, unix_seconds: u64) -> ImageBuilder {
        self.timestamp = Some(unix_seconds);
        self
    }

    /// Checks every entry, then writes the image to `out` (atomically: nothing is left at `out`
    /// or beside it on error).
    pub fn build(&self, out: &Path) -> Result<BuiltImage, ImageError> {
        let label = match &self.label {
            Some(label) => {
                Some(
                    names::label_bytes(label).map_err(|reason| ImageError::InvalidLabel {
                        label: label.clone(),
                        reason,
                    })?,
                )
            }
            None => None,
        };
        let time = DosTime::from_unix(self.resolve_timestamp()?);
        let mut tree = Tree::default();
        for (index, entry) in self.entries.iter().enumerate() {
            tree.add(index, entry)?;
        }
        let mut plan = Plan::new(&tree, label.is_some())?;
        let (image_bytes, geometry) = choose_size(self.size, self.layout, &plan)?;
        plan.assign(&geometry);
        let volume_offset = self.layout.volume_offset();
        let params = writer::WriteParams {
            geometry: &geometry,
            volume_offset,
            image_bytes,
            label: label.unwrap_or(NO_LABEL),
            volume_id: self.volume_id,
            time,
        };
        // Write errors name the image, not its temporary file beside it.
        let volume_id = write_atomically(out, image_bytes, |file, _| {
            writer::write_image(file, out, &plan, &params)
        })?;
        Ok(BuiltImage {
            path: out.to_path_buf(),
            size_bytes: image_bytes,
            layout: self.layout,
            volume_offset,
            volume_id,
            cluster_bytes: geometry.cluster_bytes(),
            clusters: geometry.clusters,
            used_clusters: plan.used_clusters,
        })
    }

    fn resolve_timestamp(&self) -> Result<u64, ImageError> {
        Ok(self.timestamp.unwrap_or(DEFAULT_EPOCH))
    }
}

/// Smallest image size (whole MiB, FAT32-valid) for `plan`, with or without headroom
/// (a quarter of the content plus 1 MiB).
fn auto_size(plan: &Plan, layout: Layout, headroom: bool) -> Result<(u64, Geometry), ImageError> {
    let offset = layout.volume_offset();
    let mut volume = Geometry::minimum_volume_bytes();
    loop {
        let geometry = Geometry::for_volume(volume).map_err(|_| ImageError::AboveMaximum {
            requested: volume + offset,
            maximum: geometry::MAX_VOLUME_BYTES + offset,
        })?;
        let cluster_bytes = geometry.cluster_bytes();
        let needed = plan.clusters_needed(cluster_bytes);
        let wanted = if headroom {
            needed + needed / 4 + (1 << 20) / cluster_bytes
        } else {
            needed
        };
        if geometry.clusters as u64 >= wanted {
            return Ok((volume + offset, geometry));
        }
        volume = (volume + (wanted - geometry.clusters as u64) * cluster_bytes)
            .next_multiple_of(1 << 20);
    }
}

/// The image size and volume geometry for the requested size, or why it cannot work.
fn choose_size(size: DiskSize, layout: Layout, plan: &Plan) -> Result<(u64, Geometry), ImageError> {
    let requested = match size {
        DiskSize::Auto => return auto_size(plan, layout, true),
        DiskSize::Bytes(bytes) => bytes,
    };
    let offset = layout.volume_offset();
    let geometry = match Geometry::for_volume(requested.saturating_sub(offset)) {
        Ok(geometry) => geometry,
        Err(GeometryError::TooSmall) => {
            return Err(ImageError::BelowMinimum {
                requested,
                minimum: Geometry::minimum_volume_bytes() + offset,
                layout,
            })
        }
        Err(GeometryError::TooLarge) => {
            return Err(ImageError::AboveMaximum {
                requested,
                maximum: geometry::MAX_VOLUME_BYTES + offset,
            })
        }
    };
    let cluster_bytes = geometry.cluster_bytes();
    let needed = plan.clusters_needed(cluster_bytes);
    if needed > geometry.clusters as u64 {
        return Err(ImageError::ContentTooLarge {
            needed: needed * cluster_bytes,
            available: geometry.clusters as u64 * cluster_bytes,
            size: requested,
            fitting: auto_size(plan, layout, false)?.0,
        });
    }
    Ok((requested, geometry))
}

/// Creates a sized temporary file beside `out`, lets `write` fill it, and renames it to `out`.
/// On any error the temporary file is removed.
fn write_atomically<T>(
    out: &Path,
    size: u64,
    write: impl FnOnce(&std::fs::File, &Path) -> Result<T, ImageError>,
) -> Result<T, ImageError> {
    let output_error = |source| ImageError::Output {
        path: out.to_path_buf(),
        source,
    };
    let dir = match out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let temp = tempfile::Builder::new()
        .prefix(".vmharness-disk-")
        .suffix(".tmp")
        // Owner-only: an image may carry a guest's secrets; `chmod` it to share it.
        .permissions(Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(output_error)?;
    temp.as_file().set_len(size).map_err(output_error)?;
    let result = write(temp.as_file(), temp.path())?;
    temp.persist(out)
        .map_err(|error| output_error(error.error))?;
    Ok(result)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn full_disks_and_file_size_limits_get_a_hint() {
        // Linux errno values: ENOSPC, EDQUOT, EFBIG, EIO.
        let hint = |errno| space_hint(&std::io::Error::from_raw_os_error(errno));
        assert_eq!(hint(28), " (disk full?)");
        assert_eq!(hint(122), " (disk full?)");
        assert_eq!(hint(27), " (file size limit?)");
        assert_eq!(hint(5), "");
    }
}
