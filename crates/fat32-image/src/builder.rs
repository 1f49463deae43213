//! The builder: checks every entry, sizes and lays out the volume, and writes it atomically.

use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::ImageError;
use crate::geometry::{self, Geometry, GeometryError};
use crate::layout::{DosTime, Plan};
use crate::names;
use crate::options::{DiskSize, Layout};
use crate::tree::{Entry, Tree};
use crate::writer;

/// Timestamp used when the builder sets none: 1980-01-01.
const DEFAULT_EPOCH: u64 = 315_532_800;
/// Label written to the boot sector when the volume has none.
const NO_LABEL: [u8; 11] = *b"NO NAME    ";

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
